"""What eager start-up does to stay cheap at thousands of plugins, without dropping a check:
pluggy still checks every plugin (and refuses one object under two names) but keeps
none in its per-hook lists; full garbage collections wait until start-up is done."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from clawhost import HostConfig, PluginHost, PluginState, hookimpl
from clawhost.host.activation import full_collections_paused

from ._site import directory_plugin

S = PluginState

RECORDS_THRESHOLD = """
import gc
from clawhost import hookimpl

SEEN = []

@hookimpl
def activate(ctx):
    SEEN.append(gc.get_threshold())
"""


def _host(tmp_path: Path) -> PluginHost:
    config = HostConfig.from_mapping({"plugins": {}}, base_dir=tmp_path)
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


async def test_full_collections_wait_while_plugins_start_and_thresholds_come_back(
    tmp_path: Path,
) -> None:
    directory_plugin(tmp_path / "plugins", "watcher", RECORDS_THRESHOLD)
    before = gc.get_threshold()
    async with _host(tmp_path) as host:
        assert host.plugins["watcher"].state is S.ACTIVE
        module = host.plugins["watcher"].target
        seen = module.SEEN  # type: ignore[union-attr]
        assert len(seen) == 1
        assert seen[0][:2] == before[:2]  # young generations are still collected
        assert seen[0][2] > 1_000_000  # no full collection during start-up
        assert gc.get_threshold() == before
    assert gc.get_threshold() == before


def test_a_threshold_the_application_sets_meanwhile_is_left_alone() -> None:
    before = gc.get_threshold()
    try:
        with full_collections_paused():
            with full_collections_paused():  # nested (two hosts starting): one pause
                assert gc.get_threshold()[2] > 1_000_000
            assert gc.get_threshold()[2] > 1_000_000
            gc.set_threshold(500, 5, 5)
        assert gc.get_threshold() == (500, 5, 5)
    finally:
        gc.set_threshold(*before)
    with full_collections_paused():
        pass
    assert gc.get_threshold() == before


class _Plugin:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def activate(self, ctx: object) -> None:
        self.calls += 1


async def test_pluggy_checks_each_plugin_but_keeps_none_in_its_hook_lists() -> None:
    plugins = [_Plugin() for _ in range(3)]
    host = PluginHost.test_instance(*((f"p{i}", plugin) for i, plugin in enumerate(plugins)))
    async with host:
        assert all(record.state is S.ACTIVE for record in host.plugins.values())
        assert [plugin.calls for plugin in plugins] == [1, 1, 1]
        manager = host._manager
        assert manager.hook.activate.get_hookimpls() == []
        await host.deactivate("p1")
        await host.activate("p1")  # registered again after it was forgotten
        assert plugins[1].calls == 2


async def test_one_object_under_two_names_is_still_refused() -> None:
    shared = _Plugin()
    host = PluginHost.test_instance(("first", shared), ("second", shared))
    async with host:
        states = {name: record.state for name, record in host.plugins.items()}
        assert sorted(states.values(), key=str) == sorted([S.ACTIVE, S.FAILED], key=str)
        failed = next(record for record in host.plugins.values() if record.state is S.FAILED)
        assert failed.failure is not None
        assert "already registered under a different name" in failed.failure.reason
        assert shared.calls == 1


@pytest.mark.parametrize("hook", ["activte", "on_mesage"])
async def test_an_unknown_hook_is_refused_and_the_name_stays_free(hook: str) -> None:
    class Typo:
        pass

    def misspelled(self: object, ctx: object) -> None:
        pass

    setattr(Typo, hook, hookimpl(misspelled))
    host = PluginHost.test_instance(("typo", Typo()), ("fine", _Plugin()))
    async with host:
        failure = host.plugins["typo"].failure
        assert failure is not None
        assert f"unknown hook {hook!r}" in failure.reason
        assert host.plugins["fine"].state is S.ACTIVE
        assert not host._manager.has_plugin("typo")
