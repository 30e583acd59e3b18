"""A host's warm start: load and resolve remembered, and every change still noticed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import DiscoveryCache, HostConfig, PluginHost, PluginState

from ._site import SiteDir, age, manifest

S = PluginState
WARM = "from the warm start"

CODE = """
from clawhost import hookimpl, tool


@tool
def {name}_echo(text: str) -> str:
    \"\"\"Echo.\"\"\"
    return "{name}:" + text


class Plugin:
    @hookimpl
    def activate(self, ctx):
        ctx.register_tool({name}_echo)
"""


def plugin_toml(name: str, *, minimum: str = "0.1.0", extra: str = "") -> str:
    return manifest(
        name,
        caps=f'[plugin.capabilities]\ntools = ["{name}_echo"]',
        perms='[plugin.permissions]\nnetwork = ["api.example.com:443"]',
        extra=extra,
    ).replace("[plugin]\n", f'[plugin]\nmin_clawdesk_version = "{minimum}"\n', 1)


def install(site: SiteDir, name: str, **options: Any) -> None:
    site.add_plugin(
        name,
        module=f"warm_{name}",
        plugin_toml=plugin_toml(name, **options),
        code=CODE.format(name=name),
    )
    (site.root / f"clawdesk_plugin_{name}-1.0.0.dist-info" / "entry_points.txt").write_text(
        f"[clawdesk.plugins]\n{name} = warm_{name}:Plugin\n", "utf-8"
    )


def lazy_host(
    site: SiteDir,
    cache: DiscoveryCache | bool,
    *,
    net: tuple[str, ...] = ("api.example.com:443",),
    host_version: str = "1.0.0",
) -> PluginHost:
    """A lazy host of ``site``'s plugins, granting them ``net``."""
    config = HostConfig.from_mapping({"plugins": {"sandbox": {"net_allowed": list(net)}}})
    return PluginHost(
        config=config, path=[str(site)], cache=cache, lazy=True, host_version=host_version
    )


def started(host: PluginHost, caplog: pytest.LogCaptureFixture) -> bool:
    """Start ``host``; whether its resolve came from the warm start."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="clawhost.lifecycle"):
        anyio.run(host.start)
    return any(WARM in record.getMessage() for record in caplog.records)


def start(
    site: SiteDir, cache: DiscoveryCache | bool, caplog: pytest.LogCaptureFixture, **options: Any
) -> tuple[PluginHost, bool]:
    """Start a lazy host; returns it and whether its resolve came from the warm start."""
    host = lazy_host(site, cache, **options)
    return host, started(host, caplog)


def summary(host: PluginHost) -> dict[str, Any]:
    return {
        "states": {name: record.state for name, record in host.plugins.items()},
        "versions": {name: str(record.version) for name, record in host.plugins.items()},
        "levels": host.plan.levels,
        "tools": [(info.name, info.plugin) for info in host.tools.list()],
        "failures": {name: str(r.failure) for name, r in host.plugins.items() if r.failure},
    }


@pytest.fixture
def two(site: SiteDir) -> SiteDir:
    install(site, "alpha")
    install(site, "beta", extra='[plugin.dependencies]\nalpha = ">=1.0"')
    age(site.root)
    return site


def test_a_second_start_resolves_from_the_warm_start_as_the_first_did(
    two: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    cold, cold_warm = start(two, cache, caplog)
    warm, warm_warm = start(two, cache, caplog)

    assert not cold_warm
    assert warm_warm
    assert summary(warm) == summary(cold)
    assert summary(warm)["states"] == {"alpha": S.RESOLVED, "beta": S.RESOLVED}
    assert summary(warm)["levels"] == (("alpha",), ("beta",))

    async def call() -> Any:
        return await warm.tools.invoke("beta_echo", {"text": "hi"})

    assert anyio.run(call) == "beta:hi"  # activated on first use: manifest, grants, code
    assert warm.plugins["beta"].state is S.ACTIVE
    assert warm.plugins["beta"].permissions is not None


def test_a_config_change_takes_the_full_path_and_reports_a_refusal(
    two: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    start(two, cache, caplog)
    host, warm = start(two, cache, caplog, net=())

    assert not warm
    assert host.plugins["alpha"].state is S.FAILED
    assert host.plugins["alpha"].failure is not None
    assert host.plugins["alpha"].failure.stage == "load"
    assert host.plugins["beta"].state is S.FAILED  # its dependency failed


def test_a_host_version_change_takes_the_full_path(
    site: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    install(site, "modern", minimum="2.0.0")
    age(site.root)
    start(site, cache, caplog, host_version="3.0.0")
    assert start(site, cache, caplog, host_version="3.0.0")[1]

    host, warm = start(site, cache, caplog, host_version="1.0.0")

    assert not warm
    assert host.plugins["modern"].state is S.FAILED
    assert host.plugins["modern"].failure is not None
    assert host.plugins["modern"].failure.stage == "resolve"


def test_installing_a_plugin_takes_the_full_path(
    two: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    start(two, cache, caplog)
    install(two, "gamma", extra='[plugin.dependencies]\nmissing = ">=1.0"')
    age(two.root)

    host, warm = start(two, cache, caplog)

    assert not warm
    assert host.plugins["gamma"].state is S.FAILED
    assert summary(host)["states"]["beta"] is S.RESOLVED


def test_a_broken_plugin_is_diagnosed_on_every_start_and_nothing_is_remembered(
    two: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    two.add_plugin("broken", plugin_toml=manifest("broken") + "[plugin.capabilities]\ntools = 3\n")
    age(two.root)

    for _ in range(3):
        host, warm = start(two, cache, caplog)
        assert not warm
        assert "broken" not in host.plugins
        assert any(item.plugin == "broken" for item in host.diagnostics)
        assert host.plugins["beta"].state is S.RESOLVED
    assert not list(cache.directory.glob("start-*"))


def test_with_the_cache_off_nothing_is_remembered(
    two: SiteDir, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first, _ = start(two, False, caplog)
    second, warm = start(two, False, caplog)

    assert not warm
    assert summary(first) == summary(second)
    assert not list(tmp_path.rglob("start-*.bin"))


def test_invalidating_the_cache_forgets_the_warm_start(
    two: SiteDir, cache: DiscoveryCache, caplog: pytest.LogCaptureFixture
) -> None:
    start(two, cache, caplog)
    assert list(cache.directory.glob("start-*"))

    cache.invalidate()

    assert not list(cache.directory.glob("start-*"))
    assert not start(two, cache, caplog)[1]
