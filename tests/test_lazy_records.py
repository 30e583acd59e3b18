"""A warm lazy start builds each plugin's record on first use: a host of many plugins
builds only those it activates or is asked about, and every record, whenever built, is
the record a cold start makes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from clawhost import DiscoveryCache, PluginHost, PluginState
from clawhost.errors import ClawhostError
from clawhost.runtime.records import PluginRecord, is_pending, needs_eager_activation

from ._site import SiteDir, age
from .test_warmstart import install, lazy_host, plugin_toml, started

S = PluginState
TOOLS = ("t00", "t01", "t02", "t03", "t04", "t05")

HOOKS_ONLY = """
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    pass
"""

BROKEN = """
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    raise RuntimeError("no database")
"""


_HOSTS: list[PluginHost] = []


@pytest.fixture(autouse=True)
def _stop_hosts() -> Iterator[None]:
    yield
    while _HOSTS:
        anyio.run(_HOSTS.pop().stop)


def _host(site: SiteDir, cache: DiscoveryCache) -> PluginHost:
    host = lazy_host(site, cache)
    _HOSTS.append(host)  # stopped after the test
    return host


def _start(
    site: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> tuple[PluginHost, bool]:
    host = _host(site, cache)
    return host, started(host, caplog)


def _built(host: PluginHost) -> set[str]:
    return {name for name, record in host._records.items() if not is_pending(record)}


def _view(record: PluginRecord) -> dict[str, Any]:
    return {
        "state": record.state,
        "version": str(record.version),
        "candidates": [str(candidate.version) for candidate in record.candidates],
        "selected": str(record.selected.version) if record.selected else None,
        "source": str(record.plugin.source) if record.plugin else None,
        "manifest": record.manifest.name if record.manifest else None,
        "failure": str(record.failure) if record.failure else None,
        "diagnostics": list(record.diagnostics),
        "timings": sorted(record.timings),
        "eager": needs_eager_activation(record),
        "gate": (record.gate.is_open, record.gate.inflight),
        "runtime": (record.target is None, record.context is None, record.restarts),
        "hooks": sorted(record.hooks),
        "repr": repr(record),
        "dict": {**record.to_dict(), "timings": None},
        "type": type(record),  # read last: a pending record is a PluginRecord subclass
    }


@pytest.fixture
def many(site: SiteDir) -> SiteDir:
    for name in TOOLS:
        install(site, name)
    install(site, "top", extra='[plugin.dependencies]\nt00 = ">=1.0"\nt01 = ">=1.0"')
    site.add_plugin("hooks", module="warm_hooks", code=HOOKS_ONLY)  # no tools: eager
    age(site.root)
    return site


def test_a_warm_start_builds_only_the_eager_records_and_declares_every_tool(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    cold, _ = _start(many, cache, caplog)
    host, warm = _start(many, cache, caplog)

    assert warm
    assert len(host._records) == len(TOOLS) + 2
    assert _built(host) == {"hooks"}  # what start-up had to activate
    assert host.plugins["hooks"].state is S.ACTIVE
    listed = [(info.name, info.plugin, info.registered) for info in host.tools.list()]
    assert listed == [(info.name, info.plugin, info.registered) for info in cold.tools.list()]
    assert len(listed) == len(TOOLS) + 1
    assert _built(host) == {"hooks"}  # listing the tools built nothing
    assert list(host.plan.order) == list(cold.plan.order)
    assert _built(host) == {"hooks"}

    async def call() -> Any:
        return await host.tools.invoke("top_echo", {"text": "hi"})

    assert anyio.run(call) == "top:hi"  # activates it, and first its dependencies
    assert _built(host) == {"hooks", "top", "t00", "t01"}
    assert {name: host.plugins[name].state for name in ("top", "t00", "t01", "t02")} == {
        "top": S.ACTIVE,
        "t00": S.ACTIVE,
        "t01": S.ACTIVE,
        "t02": S.RESOLVED,
    }


def test_a_record_built_on_first_use_is_the_record_a_cold_start_makes(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    many.add_plugin(
        "multi",
        "1.0.0",
        module="warm_multi_a",
        plugin_toml=plugin_toml("multi"),
        distribution="acme-multi-old",
    )
    newer = plugin_toml("multi").replace('version = "1.0.0"', 'version = "2.0.0"')
    many.add_plugin(
        "multi", "2.0.0", module="warm_multi_b", plugin_toml=newer, distribution="acme-multi-new"
    )
    age(many.root)
    cold, warm_before = _start(many, cache, caplog)
    host, warm = _start(many, cache, caplog)

    assert not warm_before
    assert warm
    assert list(host.plugins) == list(cold.plugins)
    for name in cold.plugins:
        assert _view(host.plugins[name]) == _view(cold.plugins[name]), name
    assert _built(host) == set(cold.plugins)
    assert _view(host.plugins["multi"])["candidates"] == ["2.0.0", "1.0.0"]


def test_a_record_read_before_the_first_resolve_is_discovered_then_resolved(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    _start(many, cache, caplog)
    host = _host(many, cache)
    host.discover()

    assert host.plugins["t03"].state is S.DISCOVERED
    assert host.plugins["hooks"].state is S.DISCOVERED
    assert _built(host) == {"t03", "hooks"}
    assert started(host, caplog)
    assert host.plugins["t03"].state is S.RESOLVED  # built before the resolve
    assert host.plugins["t03"].selected is not None
    assert host.plugins["t04"].state is S.RESOLVED  # built after it
    assert host.plugins["hooks"].state is S.ACTIVE


def test_a_lazily_built_plugin_that_cannot_activate_fails_as_on_a_cold_start(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    many.add_plugin("broken", module="warm_broken", plugin_toml=plugin_toml("broken"), code=BROKEN)
    age(many.root)

    def call(host: PluginHost) -> BaseException:
        async def invoke() -> None:
            await host.tools.invoke("broken_echo", {"text": "hi"})

        with pytest.raises(ClawhostError) as caught:
            anyio.run(invoke)
        return caught.value

    cold, _ = _start(many, cache, caplog)
    host, warm = _start(many, cache, caplog)
    assert warm
    assert "broken" not in _built(host)

    cold_error, warm_error = call(cold), call(host)

    assert str(warm_error) == str(cold_error)
    assert "no database" in str(warm_error)
    assert host.plugins["broken"].state is S.FAILED
    assert str(host.plugins["broken"].failure) == str(cold.plugins["broken"].failure)
    assert _built(host) == {"hooks", "broken"}


def test_with_tools_only_a_warm_start_builds_no_record_and_decodes_no_plugin(
    site: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    for name in TOOLS:
        install(site, name)
    age(site.root)
    _start(site, cache, caplog)
    host, warm = _start(site, cache, caplog)

    assert warm
    assert _built(host) == set()
    assert host._discovery is not None
    assert host._discovery._plugins is None  # the discovered plugins are still encoded
    assert len(host.tools.list()) == len(TOOLS)
    assert host.plugins["t02"].state is S.RESOLVED  # building one decodes them, once
    assert host._discovery._plugins is not None
    assert _built(host) == {"t02"}


def test_stopping_a_warm_host_leaves_unbuilt_records_unbuilt(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    _start(many, cache, caplog)
    host, warm = _start(many, cache, caplog)

    async def use_and_stop() -> None:
        await host.tools.invoke("t05_echo", {"text": "x"})
        await host.stop()

    anyio.run(use_and_stop)

    assert warm
    assert _built(host) == {"hooks", "t05"}
    assert host.plugins["t05"].state is S.INACTIVE
    assert host.plugins["hooks"].state is S.INACTIVE


def test_a_plugin_disabled_before_the_first_resolve_takes_the_full_path(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    cold, _ = _start(many, cache, caplog)
    host = _host(many, cache)
    host.discover()
    anyio.run(host.disable, "t02")
    assert not started(host, caplog)
    assert host.plugins["t02"].state is S.DISABLED
    assert "t02" not in host.plan.order
    assert "t02_echo" not in {info.name for info in host.tools.list()}
    assert host.plugins["t03"].state is S.RESOLVED
    assert len(host.tools.list()) == len(cold.tools.list()) - 1


def test_records_are_right_when_the_cached_plugins_do_not_decode(
    many: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    cold, _ = _start(many, cache, caplog)
    (file,) = cache.directory.glob("discovery-*.bin")
    data = bytearray(file.read_bytes())
    header_end = len(b"clawhost-discovery\x00") + 8
    header_end += int.from_bytes(data[header_end - 8 : header_end], "little")
    data[header_end:] = b"\xff" * (len(data) - header_end)  # the records, garbled
    file.write_bytes(bytes(data))

    host, warm = _start(many, cache, caplog)  # the header still matches: warm start

    assert warm
    assert host._discovery is not None
    assert host._discovery.token is None  # building the first record found them afresh
    for name in cold.plugins:
        assert _view(host.plugins[name]) == _view(cold.plugins[name]), name
