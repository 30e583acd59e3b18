"""Faults that are not one broken plugin: reload storms, a reload during activation, far
more calls than a plugin may run at once, registrations through a context kept past
deactivation, and switching plugins off and on while the host runs.

The purpose-built broken plugins are in tests/test_broken_plugins.py, random input in
tests/test_bad_input_properties.py, random lifecycles in tests/test_lifecycle_properties.py,
the soak in tests/test_soak.py; install-time attacks (option injection, archive traversal)
in tests/test_cli_install.py.
"""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginContext, PluginHost, PluginState, hookimpl, tool
from clawhost.errors import ContextClosed, IllegalTransition, MissingDependency

from .test_reload import Project

S = PluginState


def make_host(root: Path, **plugins: Any) -> PluginHost:
    config = HostConfig.from_mapping({"plugins": {**plugins}}, base_dir=root)
    return PluginHost(config=config, dirs=[root / "plugins"], path=[], cache=False, drain_timeout=5)


# -- hot reload -------------------------------------------------------------------------------


async def test_a_reload_storm_under_load_loses_no_call(tmp_path: Path) -> None:
    """Fifty reloads asked for at once, some of broken code, while ten callers call."""
    project = Project(tmp_path)
    project.write("v0", delay=0.001)
    errors: list[BaseException] = []
    answers: list[str] = []
    outcomes: list[bool] = []
    async with make_host(tmp_path) as host:
        stop = anyio.Event()

        async def caller() -> None:
            while not stop.is_set():
                try:
                    answers.append(await host.tools.invoke("answer"))
                except Exception as exc:
                    errors.append(exc)

        async def reload(index: int) -> None:
            await anyio.sleep(index * 0.003)  # edits keep coming while reloads queue up
            if index % 5 == 4:
                project.write("", raw_code="def broken(:\n")
            else:
                project.write(f"v{index}", delay=0.001)
            try:
                await host.reload("live")
                outcomes.append(True)
            except Exception:
                outcomes.append(False)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(caller)
            async with anyio.create_task_group() as storm:
                for index in range(50):
                    storm.start_soon(reload, index)
            project.write("final", delay=0.001)
            await host.reload("live")
            stop.set()
        assert host.plugins["live"].state is S.ACTIVE
        assert await host.tools.invoke("answer") == "final"
    assert errors == []
    assert len(outcomes) == 50
    assert any(outcomes)
    assert len(answers) > 100


LAZY = """
import time
from clawhost import hookimpl, tool

@tool
def answer() -> str:
    \"\"\"Which version answers.\"\"\"
    return {answer!r}

@hookimpl
def activate(ctx):
    time.sleep(0.3)
    ctx.register_tool(answer)
"""


async def test_a_reload_during_a_lazy_activation_waits_for_it(tmp_path: Path) -> None:
    from ._site import directory_plugin

    folder = directory_plugin(
        tmp_path / "plugins",
        "slowpoke",
        LAZY.format(answer="old"),
        sections={"c": '[plugin.capabilities]\ntools = ["answer"]'},
    )
    (source,) = folder.glob("dirplugin_*.py")
    async with make_host(tmp_path, lazy_activation=True) as host:
        assert host.plugins["slowpoke"].state is S.RESOLVED  # tools only: waits for a call
        results: list[Any] = []

        async def first_call() -> None:
            results.append(await host.tools.invoke("answer"))

        async with anyio.create_task_group() as group:
            group.start_soon(first_call)
            await anyio.sleep(0.1)
            assert host.plugins["slowpoke"].state is S.ACTIVATING
            source.write_text(textwrap.dedent(LAZY.format(answer="new")), "utf-8")
            os.utime(source, (time.time() + 5, time.time() + 5))
            event = await host.reload("slowpoke")
        assert event.ok
        assert results == ["old"]
        assert await host.tools.invoke("answer") == "new"


async def test_reloading_a_disabled_plugin_is_refused_clearly(tmp_path: Path) -> None:
    Project(tmp_path).write("old")
    async with make_host(tmp_path) as host:
        await host.disable("live")
        with pytest.raises(IllegalTransition, match="disabled; enable it first"):
            await host.reload("live")
        assert host.plugins["live"].state is S.DISABLED


# -- concurrency ------------------------------------------------------------------------------

BUSY = """
import threading, time
import anyio
from clawhost import hookimpl, tool

lock = threading.Lock()
running = [0]
peak = [0]

def _enter():
    with lock:
        running[0] += 1
        peak[0] = max(peak[0], running[0])

def _leave():
    with lock:
        running[0] -= 1

@tool
async def slow_async() -> int:
    \"\"\"Hold a slot for a moment.\"\"\"
    _enter()
    try:
        await anyio.sleep(0.002)
    finally:
        _leave()
    return peak[0]

@tool
def slow_sync() -> int:
    \"\"\"Hold a slot (a thread) for a moment.\"\"\"
    _enter()
    try:
        time.sleep(0.002)
    finally:
        _leave()
    return peak[0]

@hookimpl
def activate(ctx):
    ctx.register_tool(slow_async)
    ctx.register_tool(slow_sync)
"""


async def test_calls_far_beyond_max_concurrency_queue_and_others_stay_responsive(
    tmp_path: Path,
) -> None:
    from ._site import directory_plugin

    plugins = tmp_path / "plugins"
    directory_plugin(
        plugins,
        "busy",
        BUSY,
        sections={"c": '[plugin.capabilities]\ntools = ["slow_async", "slow_sync"]'},
    )
    directory_plugin(
        plugins,
        "quick",
        """
        from clawhost import hookimpl, tool

        @tool
        async def ping() -> str:
            \"\"\"Answer at once.\"\"\"
            return "pong"

        @hookimpl
        def activate(ctx):
            ctx.register_tool(ping)
        """,
        sections={"c": '[plugin.capabilities]\ntools = ["ping"]'},
    )
    host = make_host(tmp_path, busy={"sandbox": {"max_concurrency": 2}})
    peaks: list[int] = []
    pings: list[float] = []
    async with host:
        module = host.plugins["busy"].target

        async def flood(name: str) -> None:
            peaks.append(await host.tools.invoke(name))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for index in range(1000):
                    group.start_soon(flood, "slow_sync" if index % 4 == 0 else "slow_async")
                for _ in range(20):
                    started = time.perf_counter()
                    assert await host.tools.invoke("ping") == "pong"
                    pings.append(time.perf_counter() - started)
                    await anyio.sleep(0.01)
        assert getattr(module, "peak")[0] == 2  # noqa: B009 - the plugin module's own counter
    assert len(peaks) == 1000
    assert max(peaks) <= 2
    # The flood queues at busy's limit; the other plugin never waits behind it.
    assert sorted(pings)[len(pings) // 2] < 0.5


# -- registrations ----------------------------------------------------------------------------


class Hoarder:
    """Keeps its context, and registers through it after deactivation."""

    kept: PluginContext | None = None

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        Hoarder.kept = ctx

        @tool
        def first() -> str:
            """Registered in time."""
            return "first"

        ctx.register_tool(first)


async def test_a_context_kept_past_deactivation_registers_nothing() -> None:
    host = PluginHost.test_instance(("hoarder", Hoarder()))
    async with host:
        assert host.tools.names() == ["first"]
        await host.deactivate("hoarder")
        kept = Hoarder.kept
        assert kept is not None
        assert kept.closed

        @tool
        def late() -> str:
            """Too late."""
            return "late"

        with pytest.raises(ContextClosed, match="'hoarder' registered tool 'late' after it"):
            kept.register_tool(late)
        with pytest.raises(ContextClosed):
            kept.on_message_received(print)
        with pytest.raises(ContextClosed):
            kept.register_provider("p", object())
        assert host.tools.names() == []
        assert host.context.registrations("hoarder").is_empty()

        await host.activate("hoarder")  # a new activation gets a new, open context
        assert Hoarder.kept is not kept
        assert not Hoarder.kept.closed
        assert host.tools.names() == ["first"]


# -- switching plugins off and on -------------------------------------------------------------


async def test_disable_takes_dependents_down_and_enable_brings_them_back(tmp_path: Path) -> None:
    from .test_reload import add_dependent

    Project(tmp_path).write("base")
    add_dependent(tmp_path)
    async with make_host(tmp_path) as host:
        assert await host.tools.invoke("relayed") == "relayed base"

        await host.disable("live")
        live, relay = host.plugins["live"], host.plugins["relay"]
        assert live.state is S.DISABLED
        assert relay.state is S.FAILED
        assert relay.failure is not None
        assert isinstance(relay.failure.error, MissingDependency)
        assert "disabled" in relay.failure.reason
        assert host.tools.names() == []
        with pytest.raises(IllegalTransition, match="failed earlier"):
            await host.activate("relay")

        await host.enable("live")
        assert live.state is S.ACTIVE
        assert relay.state is S.ACTIVE
        assert await host.tools.invoke("relayed") == "relayed base"

        # Both are idempotent.
        assert (await host.enable("live")).state is S.ACTIVE
        await host.disable("relay")
        assert (await host.disable("relay")).state is S.DISABLED
