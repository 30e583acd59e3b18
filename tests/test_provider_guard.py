"""Calls on provider objects run under the providing plugin's guard.

``host.providers.get(name)`` (and ``ctx.providers.get`` in another plugin) hands out a
guarded provider: its plugin's sandbox scope, its deadline, errors that name it. Real
busy loops, a real file outside what the plugin may read, short limits.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginContext, PluginHost, hookimpl
from clawhost.errors import NotRegistered, PermissionDenied, PluginTimeout
from clawhost.sandbox.permissions import current_scope

pytestmark = pytest.mark.anyio

LIMIT = 0.3
SLACK = 0.4


class Geocoder:
    region = "eu"

    def lookup(self, place: str) -> str:
        scope = current_scope()
        return f"{place} in {scope.plugin if scope else 'host code'}"

    def broken(self) -> None:
        raise LookupError("no such place")

    def spin(self) -> None:
        while True:
            pass

    async def wait_forever(self) -> None:
        await anyio.sleep(60)

    async def alookup(self, place: str) -> str:
        scope = current_scope()
        return f"{place} (async) in {scope.plugin if scope else 'host code'}"

    def read(self, path: str) -> str:
        return Path(path).read_text()


class Geocoding:
    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        ctx.register_provider("geocoder", Geocoder())
        ctx.register_provider("shout", lambda text: text.upper())


class Weather:
    """Another plugin, using the provider from its own code."""

    answer: Any = None

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        self.ctx = ctx  # no declared dependency: the provider may not exist yet

    @hookimpl
    def on_message_received(self, message: object) -> None:
        Weather.answer = self.ctx.providers.get("geocoder").lookup(str(message))


def host(**sandbox: Any) -> PluginHost:
    table = {"sandbox": {"max_wall_time_secs": LIMIT, **sandbox}}
    return PluginHost.test_instance(
        ("geocoding", Geocoding()),
        ("weather", Weather()),
        config=HostConfig.from_mapping({"plugins": table}),
    )


async def test_a_provider_method_runs_in_its_own_plugins_scope_whoever_calls_it() -> None:
    async with host() as h:
        geocoder = h.providers.get("geocoder")
        assert geocoder.lookup("Paris") == "Paris in geocoding"  # called from host code
        await h.events.dispatch("on_message_received", message="Lyon")
        assert Weather.answer == "Lyon in geocoding"  # called from plugin weather's handler
        assert await geocoder.alookup("Nice") == "Nice (async) in geocoding"
        assert inspect.iscoroutinefunction(geocoder.alookup)
        assert not inspect.iscoroutinefunction(geocoder.lookup)
        assert geocoder.region == "eu"
        assert h.providers.get("shout")("hi") == "HI"
        assert isinstance(geocoder.__wrapped__, Geocoder)
        assert "lookup" in dir(geocoder)
        assert h.providers.get("geocoder") is geocoder


async def test_an_error_in_a_provider_method_keeps_its_type_and_names_the_plugin() -> None:
    async with host() as h:
        with pytest.raises(LookupError, match="no such place") as caught:
            h.providers.get("geocoder").broken()
    assert "raised in provider 'geocoder' (broken) of plugin 'geocoding'" in (
        caught.value.__notes__
    )


async def test_a_provider_method_that_never_returns_is_stopped_at_its_deadline() -> None:
    async with host() as h:
        geocoder = h.providers.get("geocoder")
        started = time.monotonic()
        with pytest.raises(PluginTimeout) as caught:
            geocoder.spin()
        assert time.monotonic() - started < LIMIT + SLACK
        assert caught.value.plugin == "geocoding"
        assert "provider geocoder.spin" in str(caught.value)
        assert geocoder.lookup("Rome") == "Rome in geocoding"  # and it still serves


async def test_a_coroutine_provider_method_that_waits_forever_is_cut_off() -> None:
    async with host() as h:
        started = time.monotonic()
        with pytest.raises(PluginTimeout) as caught:
            await h.providers.get("geocoder").wait_forever()
        assert time.monotonic() - started < LIMIT + SLACK
    assert caught.value.plugin == "geocoding"
    assert "provider geocoder.wait_forever" in str(caught.value)


async def test_a_provider_method_gets_its_plugins_permissions_not_the_callers(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host only")
    async with host() as h:
        assert secret.read_text() == "host only"  # host code may
        with pytest.raises(PermissionDenied) as caught:
            h.providers.get("geocoder").read(str(secret))
    assert caught.value.plugin == "geocoding"


async def test_a_provider_that_went_away_says_so() -> None:
    async with host() as h:
        geocoder = h.providers.get("geocoder")
        await h.disable("geocoding")
        with pytest.raises(NotRegistered):
            geocoder.lookup("Oslo")
