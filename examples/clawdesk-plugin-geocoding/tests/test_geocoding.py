"""The geocoding plugin: its tool, its provider, its config, and its conformance."""

from __future__ import annotations

from pathlib import Path

import pytest
from clawdesk_plugin_geocoding import PlaceNotFound

from clawhost.errors import ToolFailed
from clawhost.testing import is_error

PROJECT = Path(__file__).resolve().parents[1]


async def test_geocode_finds_a_place_by_name(clawhost_host) -> None:
    host = await clawhost_host(PROJECT)

    place = await host.tools.invoke("geocode", {"place": "  paris "})

    assert place == {"name": "Paris", "latitude": 48.8566, "longitude": 2.3522, "country": "FR"}


async def test_a_country_that_does_not_match_is_an_error(clawhost_host) -> None:
    host = await clawhost_host(PROJECT)

    with pytest.raises(ToolFailed) as caught:
        await host.tools.invoke("geocode", {"place": "London, FR"})

    # the plugin's own error, in-process or (as a WorkerError) from a worker process
    assert is_error(caught.value.__cause__, PlaceNotFound)


async def test_extra_places_come_from_config(clawhost_host) -> None:
    host = await clawhost_host(
        PROJECT, config={"geocoding": {"extra_places": {"Timbuktu": [16.77, -3.01]}}}
    )

    place = await host.tools.invoke("geocode", {"place": "timbuktu"})

    assert (place["latitude"], place["longitude"]) == (16.77, -3.01)


async def test_the_geocoder_provider_serves_other_plugins(clawhost_host) -> None:
    host = await clawhost_host(PROJECT)

    geocoder = host.providers.get("geocoder")  # a proxy when the plugin runs in a worker
    place = await geocoder.geocode("Tokyo")

    assert (place.name, place.country) == ("Tokyo", "JP")


async def test_the_plugin_conforms(clawhost_check) -> None:
    report = await clawhost_check(PROJECT)

    assert report.ok, report
