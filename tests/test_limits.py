"""Calling plugin code under limits: deadlines, interruption, concurrency, sys.exit, scopes.

Real threads and real blocking calls; deadlines are short (0.2 s) to keep the file fast,
and every timing assertion leaves generous room for a loaded machine.
"""

from __future__ import annotations

import functools
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from clawhost.discovery.manifest import Permissions
from clawhost.errors import PermissionDenied, PluginFailed, PluginTimeout
from clawhost.sandbox.limits import call_inline, call_plugin, plugin_limiter
from clawhost.sandbox.permissions import SandboxScope, current_scope, grant_permissions
from clawhost.sandbox.watchdog import (
    current_slot,
    enable_signal_interrupts,
    fire,
)
from clawhost.sandbox.workers import background_calls

# Marked here, at collection, so anyio's plugin sees it together with parametrize.
pytestmark = pytest.mark.anyio

LIMIT = 0.2
# Deadline + watchdog poll + GIL hand-over + a loaded CI machine.
SLACK = 0.25


def spin(seconds: float = 60.0) -> int:
    """Busy Python code: interruptible at any bytecode."""
    end = time.monotonic() + seconds
    count = 0
    while time.monotonic() < end:
        count += 1
    return count


async def spin_async(seconds: float = 60.0) -> int:
    return spin(seconds)


async def sleep_blocking_async(seconds: float) -> None:
    time.sleep(seconds)  # noqa: ASYNC251 (the mistake under test)


async def call(fn: Callable[..., Any], *args: Any, **options: Any) -> Any:
    options.setdefault("plugin", "demo")
    options.setdefault("operation", "test")
    options.setdefault("timeout", LIMIT)
    return await call_plugin(fn, *args, **options)


async def timed_out(
    fn: Callable[..., Any], *args: Any, **options: Any
) -> tuple[PluginTimeout, float]:
    started = time.monotonic()
    with pytest.raises(PluginTimeout) as caught:
        await call(fn, *args, **options)
    return caught.value, time.monotonic() - started


# -- results and errors -----------------------------------------------------------------------


async def test_sync_and_async_results_come_back() -> None:
    async def double(value: int) -> int:
        await anyio.lowlevel.checkpoint()
        return value * 2

    assert await call(lambda a, b=0: a + b, 1, kwargs={"b": 2}) == 3
    assert await call(double, 4) == 8
    assert await call(lambda: double(5)) == 10  # a sync callable returning an awaitable
    assert await call(lambda: 7, sync_in_thread=False) == 7


async def test_keyword_arguments_never_collide_with_call_options() -> None:
    def tool(timeout: int, operation: str) -> str:
        return f"{timeout} {operation}"

    assert await call(tool, kwargs={"timeout": 5, "operation": "x"}) == "5 x"


@pytest.mark.parametrize("inline", [False, True])
async def test_ordinary_exceptions_propagate_unchanged(inline: bool) -> None:
    error = ValueError("boom")

    def fail() -> None:
        raise error

    with pytest.raises(ValueError, match="boom") as caught:
        await call(fail, sync_in_thread=not inline)
    assert caught.value is error


async def raise_exit_async() -> None:
    sys.exit(3)


@pytest.mark.parametrize(
    ("fn", "options"),
    [
        (lambda: sys.exit(3), {}),
        (lambda: sys.exit(3), {"sync_in_thread": False}),
        (raise_exit_async, {}),
        (raise_exit_async, {"timeout": None}),
    ],
    ids=["thread", "inline", "async", "async-no-timeout"],
)
async def test_sys_exit_becomes_plugin_failed(
    fn: Callable[[], Any], options: dict[str, Any]
) -> None:
    with pytest.raises(PluginFailed) as caught:
        await call(fn, operation="activate", **options)
    assert (caught.value.plugin, caught.value.stage) == ("demo", "activate")
    assert caught.value.reason == "called sys.exit(3)"
    assert isinstance(caught.value.__cause__, SystemExit)


async def test_keyboard_interrupt_from_a_worker_thread_becomes_plugin_failed() -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    with pytest.raises(PluginFailed, match="raised KeyboardInterrupt"):
        await call(interrupt)


# -- deadlines --------------------------------------------------------------------------------


async def test_a_busy_sync_call_is_interrupted_at_its_deadline() -> None:
    error, elapsed = await timed_out(spin)
    assert error.interrupted is True
    assert (error.plugin, error.operation, error.limit) == ("demo", "test", LIMIT)
    assert LIMIT <= elapsed < LIMIT + SLACK


async def test_a_blocked_sync_call_times_out_and_runs_on_in_the_background() -> None:
    error, elapsed = await timed_out(time.sleep, 1.0, plugin="sleepy")
    assert error.interrupted is False
    assert LIMIT <= elapsed < LIMIT + SLACK
    assert background_calls("sleepy") == 1
    with anyio.fail_after(5):
        while background_calls("sleepy"):  # noqa: ASYNC110 (a counter another thread updates)
            await anyio.sleep(0.05)


async def test_a_busy_coroutine_is_interrupted_at_its_deadline() -> None:
    error, elapsed = await timed_out(spin_async)
    assert error.interrupted is True
    assert elapsed < LIMIT + SLACK


async def test_a_busy_inline_handler_is_interrupted_at_its_deadline() -> None:
    error, elapsed = await timed_out(spin, sync_in_thread=False)
    assert error.interrupted is True
    assert elapsed < LIMIT + SLACK


async def test_a_waiting_coroutine_is_cancelled_at_its_deadline() -> None:
    cleaned_up = threading.Event()

    async def wait_forever() -> None:
        try:
            await anyio.sleep(60)
        finally:
            cleaned_up.set()

    error, elapsed = await timed_out(wait_forever)
    assert error.interrupted is True
    assert elapsed < LIMIT + SLACK
    assert cleaned_up.is_set()


async def test_a_coroutine_blocking_the_loop_is_stopped_when_the_call_returns() -> None:
    # Without signal interrupts the injected exception waits for time.sleep to return.
    error, elapsed = await timed_out(sleep_blocking_async, 0.6)
    assert error.interrupted is True
    assert 0.6 <= elapsed < 0.6 + SLACK


@pytest.mark.usefixtures("signal_interrupts")
async def test_signal_interrupts_break_a_blocking_call_on_the_loop_thread() -> None:
    assert threading.current_thread() is threading.main_thread()
    error, elapsed = await timed_out(sleep_blocking_async, 5.0)
    assert error.interrupted is True
    assert elapsed < LIMIT + SLACK
    error, elapsed = await timed_out(spin, sync_in_thread=False)
    assert elapsed < LIMIT + SLACK
    await anyio.sleep(0.1)  # a late signal, if any, must find nothing to interrupt


async def test_one_stuck_plugin_does_not_freeze_another_plugins_calls() -> None:
    latencies: list[float] = []

    async def quick() -> None:
        await anyio.sleep(0.005)

    async def other_plugin() -> None:
        for _ in range(20):
            started = time.monotonic()
            await call(quick, plugin="other", timeout=1.0)
            latencies.append(time.monotonic() - started)

    async with anyio.create_task_group() as group:
        group.start_soon(functools.partial(timed_out, spin, timeout=0.5))
        group.start_soon(functools.partial(timed_out, time.sleep, 1.0, timeout=0.5))
        group.start_soon(other_plugin)
    assert len(latencies) == 20
    assert max(latencies) < 0.2


async def test_a_coroutine_hogging_the_loop_stalls_others_only_until_its_deadline() -> None:
    async def hog() -> None:
        await anyio.sleep(0.01)
        spin()

    latencies: list[float] = []

    async def other_plugin() -> None:
        for _ in range(10):
            started = time.monotonic()
            await call(anyio.sleep, 0.01, plugin="other", timeout=2.0)
            latencies.append(time.monotonic() - started)

    async with anyio.create_task_group() as group:
        group.start_soon(timed_out, hog)
        group.start_soon(other_plugin)
    assert len(latencies) == 10
    assert max(latencies) < LIMIT + SLACK


async def test_an_inner_calls_deadline_is_its_own() -> None:
    async def outer() -> str:
        with pytest.raises(PluginTimeout) as caught:
            await call(spin, plugin="inner", sync_in_thread=False, timeout=0.1)
        return caught.value.plugin

    assert await call(outer, plugin="outer", timeout=5.0) == "inner"


async def test_an_outer_calls_deadline_passes_through_an_inner_call() -> None:
    async def outer() -> None:
        await call(spin_async, plugin="inner", timeout=30.0)

    error, elapsed = await timed_out(outer, plugin="outer", timeout=0.1)
    assert error.plugin == "outer"
    assert elapsed < 0.1 + SLACK


def test_an_interrupt_never_lands_after_the_call_returned() -> None:
    # Handlers that finish right around their deadline, over and over: an interrupt that
    # missed its call would surface here as a stray BaseException.
    outcomes = {"returned": 0, "timed out": 0}
    deadline = 0.004
    for index in range(300):
        try:
            # 0.5x to 3.5x the deadline: some right around it, some certain to overrun
            # even when the watchdog thread is scheduled late on a loaded machine
            call_inline(spin, deadline * (0.5 + index % 7 / 2), plugin="p", operation="o",
                        timeout=deadline)  # fmt: skip
            outcomes["returned"] += 1
        except PluginTimeout:
            outcomes["timed out"] += 1
        sum(range(2000))  # host code right after the call: where a stray would land
    assert sum(outcomes.values()) == 300
    assert outcomes["timed out"] > 0


# -- cancellation -----------------------------------------------------------------------------


async def test_cancellation_propagates_through_a_plugin_coroutine() -> None:
    cancelled = threading.Event()

    async def wait() -> None:
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    with anyio.move_on_after(0.05) as scope:
        await call(wait, timeout=30.0)
    assert scope.cancelled_caught
    assert cancelled.is_set()


async def test_cancelling_a_thread_call_interrupts_its_thread() -> None:
    stopped = threading.Event()

    def work() -> None:
        try:
            spin()
        finally:
            stopped.set()

    with anyio.move_on_after(0.05):
        await call(work, timeout=30.0)
    assert stopped.wait(1)


# -- concurrency ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["thread", "async"])
async def test_the_concurrency_limit_holds_under_100_calls(kind: str) -> None:
    limiter = plugin_limiter(4)
    lock = threading.Lock()
    state = {"now": 0, "max": 0, "done": 0}

    def enter() -> None:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])

    def leave() -> None:
        with lock:
            state["now"] -= 1
            state["done"] += 1

    def work_sync() -> None:
        enter()
        time.sleep(0.005)
        leave()

    async def work_async() -> None:
        enter()
        await anyio.sleep(0.005)
        leave()

    work = work_sync if kind == "thread" else work_async
    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(functools.partial(call, work, limiter=limiter, timeout=5.0))
    assert state == {"now": 0, "max": 4, "done": 100}


async def test_a_plugin_calling_back_into_itself_does_not_deadlock() -> None:
    limiter = plugin_limiter(1)

    async def inner() -> str:
        return "inner"

    async def outer() -> str:
        result: str = await call(inner, limiter=limiter)
        return result

    with anyio.fail_after(2):
        assert await call(outer, limiter=limiter) == "inner"


def test_a_limiter_needs_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plugin_limiter(0)


# -- the sandbox scope ------------------------------------------------------------------------


@pytest.fixture
def scope(tmp_path: Path) -> SandboxScope:
    permissions = grant_permissions(
        "demo",
        Permissions(),
        fs_allowed=[],
        net_allowed=[],
        allow_subprocess=False,
        package_dir=None,
    )
    return SandboxScope(permissions)


@pytest.mark.parametrize("kind", ["thread", "inline", "async"])
async def test_plugin_code_runs_in_its_scope(scope: SandboxScope, kind: str) -> None:
    async def seen_async() -> object:
        return current_scope()

    fn = seen_async if kind == "async" else current_scope
    assert await call(fn, scope=scope, sync_in_thread=kind != "inline") is scope
    assert current_scope() is None


async def test_plugin_code_is_checked_against_its_scope(scope: SandboxScope) -> None:
    with pytest.raises(PermissionDenied):
        await call(Path(sys.executable).read_bytes, scope=scope)


# -- the watchdog protocol --------------------------------------------------------------------


def test_firing_a_deadline_that_is_not_armed_does_nothing() -> None:
    slot = current_slot()
    assert fire(slot, time.monotonic() - 1.0) is False
    assert slot.pending is None


async def test_a_timed_out_call_leaves_its_thread_slot_clean() -> None:
    await timed_out(spin, sync_in_thread=False)
    slot = current_slot()
    assert (slot.armed, slot.pending) == (None, None)


def test_signal_interrupts_refuse_a_signal_that_is_in_use() -> None:
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    try:
        with pytest.raises(ValueError, match="already has a handler"):
            enable_signal_interrupts(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
