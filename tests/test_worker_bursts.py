"""Bursts of sync plugin calls: handed to the worker threads together, finished together.

Calls made in one pass of the event loop go to the threads at its end, and finished calls
wake the loop once for all of them (``clawhost.sandbox.limits._Handoff``); the threads
work through a burst's backlog, and one that stalls gets more threads
(``clawhost.sandbox.workers.submit_many``). Each call must still get its own result, error
and deadline, and calls that block must still overlap.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginHost, PluginState
from clawhost.errors import PluginTimeout
from clawhost.sandbox.limits import call_inline, call_plugin

from ._site import directory_plugin

pytestmark = pytest.mark.anyio


def answer(index: int) -> tuple[int, int]:
    if index % 7 == 3:
        raise ValueError(f"refused {index}")
    return index, threading.get_ident()


async def test_each_call_of_a_burst_gets_its_own_result_or_error() -> None:
    results: dict[int, Any] = {}

    async def one(index: int) -> None:
        try:
            results[index] = await call_plugin(
                answer, index, plugin=f"p{index}", operation="burst", timeout=5.0
            )
        except ValueError as exc:
            results[index] = str(exc)

    with anyio.fail_after(30):
        async with anyio.create_task_group() as group:
            for index in range(300):
                group.start_soon(one, index)

    assert len(results) == 300
    for index, result in results.items():
        if index % 7 == 3:
            assert result == f"refused {index}"
        else:
            assert result[0] == index
            assert result[1] != threading.get_ident()  # in a worker thread, not the loop


async def test_calls_of_a_burst_that_block_still_overlap() -> None:
    # Each call blocks (in C) until all of them are running: only overlapping calls return.
    count = 12
    barrier = threading.Barrier(count, timeout=10)

    async def one() -> None:
        await call_plugin(barrier.wait, plugin="demo", operation="burst", timeout=15.0)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
    assert not barrier.broken


async def test_a_blocked_call_of_a_burst_times_out_alone() -> None:
    release = threading.Event()
    outcomes: dict[str, Any] = {}

    async def one(plugin: str) -> None:
        function = release.wait if plugin == "stuck" else (lambda: plugin)
        try:
            outcomes[plugin] = await call_plugin(
                function, plugin=plugin, operation="activate", timeout=0.3
            )
        except PluginTimeout as exc:
            outcomes[plugin] = exc

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(one, "stuck")  # first: the others are queued behind it
                for index in range(50):
                    group.start_soon(one, f"p{index}")
    finally:
        release.set()

    stuck = outcomes.pop("stuck")
    assert isinstance(stuck, PluginTimeout)
    assert stuck.plugin == "stuck"
    assert not stuck.interrupted  # blocked in C: it ran on in the background
    assert outcomes == {f"p{index}": f"p{index}" for index in range(50)}


async def test_a_call_starts_while_the_loop_is_stuck_in_plugin_code() -> None:
    # The call is made in the same pass as the inline code that then holds the loop: it
    # is handed to its thread without waiting for the pass to end.
    started = threading.Event()

    def wait_on_the_loop() -> bool:
        return started.wait(5)  # the loop is stuck here until the call has started

    async def sync_call() -> None:
        await call_plugin(started.set, plugin="demo", operation="call", timeout=10.0)

    async def stuck() -> None:
        # Started second: runs in the same pass, after sync_call has made its call.
        assert call_inline(wait_on_the_loop, plugin="other", operation="import", timeout=10.0)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(sync_call)
            group.start_soon(stuck)


async def test_a_call_with_a_short_limit_starts_while_host_code_holds_the_loop() -> None:
    # Host code (no plugin call, nothing for the helper to see as stuck) holds the loop
    # past the call's whole limit: the call is handed over after a tenth of its limit, so
    # it runs and finishes in its thread meanwhile, rather than timing out unstarted.
    ran = threading.Event()

    def quick() -> str:
        end = time.monotonic() + 0.15  # Python code: interrupted if still running at 0.4 s
        while time.monotonic() < end:
            pass
        ran.set()
        return "done"

    async def sync_call() -> str:
        return await call_plugin(quick, plugin="demo", operation="call", timeout=0.4)

    async def hold_the_loop() -> None:
        ran.wait(2)  # plain host code: blocks the loop until the call has run
        time.sleep(0.5)  # noqa: ASYNC251 (and past the call's deadline: on purpose)

    results: list[str] = []

    async def call_and_keep() -> None:
        results.append(await sync_call())

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            group.start_soon(call_and_keep)
            group.start_soon(hold_the_loop)
    assert ran.is_set()
    assert results == ["done"]


async def test_a_blocked_sync_activate_among_many_is_abandoned_at_its_deadline(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    (tmp_path / "stuck_gate.py").write_text("import threading\nrelease = threading.Event()\n")
    sys.path.insert(0, str(tmp_path))
    directory_plugin(
        plugins,
        "blocked",
        """
        import stuck_gate
        from clawhost import hookimpl

        @hookimpl
        def activate(ctx):
            stuck_gate.release.wait(30)
        """,
    )
    names = [f"quick{index}" for index in range(40)]
    for name in names:
        directory_plugin(
            plugins,
            name,
            """
            from clawhost import hookimpl

            @hookimpl
            def activate(ctx):
                ctx.logger.debug("activated")
            """,
        )
    config = HostConfig.from_mapping(
        {"plugins": {"sandbox": {"max_cpu_time_secs": 0.5}}}, base_dir=tmp_path
    )
    host = PluginHost(config=config, dirs=[plugins], cache=False, lazy=False)
    try:
        with anyio.fail_after(20):
            async with host:
                stuck = host.plugins["blocked"]
                assert stuck.state is PluginState.FAILED
                assert stuck.failure is not None
                assert "did not finish within 0.5s" in stuck.failure.reason
                assert all(host.plugins[name].state is PluginState.ACTIVE for name in names)
    finally:
        import stuck_gate  # type: ignore[import-not-found]

        stuck_gate.release.set()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("stuck_gate", None)


def test_an_event_loops_handoff_does_not_outlive_it() -> None:
    from clawhost.sandbox import handoff

    async def one_call() -> None:
        await call_plugin(threading.get_ident, plugin="demo", operation="call", timeout=5.0)

    before = len(handoff._handoffs)
    for _ in range(5):
        anyio.run(one_call)
    gc.collect()
    assert len(handoff._handoffs) <= before
