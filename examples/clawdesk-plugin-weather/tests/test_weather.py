"""The weather plugin against a local stand-in API: tools, cache, errors, health, conformance."""

from __future__ import annotations

from pathlib import Path

import pytest

from clawhost.errors import ToolArgumentsInvalid, ToolFailed

PROJECT = Path(__file__).resolve().parents[1]
GEOCODING = PROJECT.parent / "clawdesk-plugin-geocoding"


def config(api, **overrides):
    return {"weather": {"api_key": "test-key", "base_url": api.url, **overrides}}


async def test_get_weather_asks_the_api_with_the_geocoded_coordinates(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api))

    weather = await host.tools.invoke("get_weather", {"location": "London"})

    assert weather == {
        "location": "London",
        "temperature": 12.5,
        "humidity": 80,
        "conditions": "drizzle",
        "units": "metric",
    }
    (request,) = api.requests
    assert (request["lat"], request["lon"], request["units"]) == ("51.5072", "-0.1276", "metric")


async def test_units_default_to_config_and_can_be_asked_for(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api, units="imperial"))

    assert (await host.tools.invoke("get_weather", {"location": "Paris"}))["units"] == "imperial"
    assert (await host.tools.invoke("get_weather", {"location": "Paris", "units": "metric"}))[
        "units"
    ] == "metric"


async def test_answers_are_cached_for_cache_ttl_secs(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api))

    await host.tools.invoke("get_weather", {"location": "Rome"})
    await host.tools.invoke("get_weather", {"location": "Rome"})

    assert len(api.requests) == 1


async def test_a_zero_ttl_disables_the_cache(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api, cache_ttl_secs=0))

    await host.tools.invoke("get_weather", {"location": "Rome"})
    await host.tools.invoke("get_weather", {"location": "Rome"})

    assert len(api.requests) == 2


async def test_get_forecast_returns_one_entry_per_day(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api))

    forecast = await host.tools.invoke("get_forecast", {"location": "Lisbon", "days": 2})

    assert [day["date"] for day in forecast["days"]] == ["2026-01-01", "2026-01-02"]


async def test_bad_arguments_are_refused_before_any_request(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api))

    with pytest.raises(ToolArgumentsInvalid):
        await host.tools.invoke("get_forecast", {"location": "Lisbon", "days": "many"})
    with pytest.raises(ToolFailed, match="days must be between 1 and 7"):
        await host.tools.invoke("get_forecast", {"location": "Lisbon", "days": 9})

    assert api.requests == []


async def test_a_rejected_key_is_reported_without_showing_it(clawhost_host, api) -> None:
    host = await clawhost_host(PROJECT, GEOCODING, config=config(api, api_key="wrong-key"))

    with pytest.raises(ToolFailed) as caught:
        await host.tools.invoke("get_weather", {"location": "Berlin"})

    assert "answered 401" in str(caught.value)
    assert "wrong-key" not in str(caught.value)


async def test_the_health_check_fails_with_a_bad_key(clawhost_host, api) -> None:
    good = await clawhost_host(PROJECT, GEOCODING, config=config(api))
    bad = await clawhost_host(PROJECT, GEOCODING, config=config(api, api_key="wrong-key"))

    assert (await good.health_check("weather")).healthy
    report = await bad.health_check("weather")
    assert not report.healthy
    assert "401" in (report.reason or "")


async def test_the_api_key_is_required(clawhost_host, api) -> None:
    host = await clawhost_host(
        PROJECT, GEOCODING, config={"weather": {"base_url": api.url}}, start=False
    )

    await host.start()

    failure = host.plugins["weather"].failure
    assert failure is not None
    assert "api_key" in failure.reason


async def test_the_plugin_conforms(clawhost_check, api) -> None:
    report = await clawhost_check(PROJECT, dependencies=[GEOCODING], config=config(api)["weather"])

    assert report.ok, report
