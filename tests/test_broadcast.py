"""Event broadcasts: every sync handler in its own plugin's scope, under its own deadline.

Plain handlers run one after another on the event loop thread; the watchdog times each
one as a step of the broadcast (``clawhost.sandbox.watchdog``). These tests use real
busy loops and real blocking calls, with short limits and generous slack.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginHost, hookimpl
from clawhost.errors import PluginTimeout
from clawhost.sandbox.permissions import current_scope
from clawhost.sandbox.watchdog import (
    current_slot,
    fire,
)

pytestmark = pytest.mark.anyio

LIMIT = 0.3
SLACK = 0.3


def spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def host_with(*plugins: tuple[str, object], limit: float = LIMIT) -> PluginHost:
    table: dict[str, Any] = {"sandbox": {"max_wall_time_secs": limit}}
    config = HostConfig.from_mapping({"plugins": table})
    return PluginHost.test_instance(*plugins, config=config)


class Spinner:
    def __init__(self, seconds: float, seen: list[str], name: str) -> None:
        self.seconds, self.seen, self.name = seconds, seen, name

    @hookimpl
    def on_message_received(self, message: object) -> None:
        self.seen.append(self.name)
        spin(self.seconds)


async def test_a_busy_handler_is_stopped_at_its_deadline_and_the_others_still_run() -> None:
    seen: list[str] = []
    plugins = [
        ("a_first", Spinner(0, seen, "a_first")),
        ("b_busy", Spinner(60, seen, "b_busy")),
        ("c_last", Spinner(0, seen, "c_last")),
    ]
    async with host_with(*plugins) as host:
        started = time.monotonic()
        report = await host.events.dispatch("on_message_received", message="hi")
        elapsed = time.monotonic() - started
    assert seen == ["a_first", "b_busy", "c_last"]  # handlers run in activation order
    assert elapsed < LIMIT + SLACK
    [failure] = report.failures
    assert failure.plugin == "b_busy"
    assert isinstance(failure.error, PluginTimeout)
    assert failure.error.interrupted is True
    assert failure.error.limit == pytest.approx(LIMIT)
    assert "on_message_received" in str(failure.error)


async def test_each_handler_has_its_whole_budget_whatever_ran_before_it() -> None:
    # Together they take twice the limit; each alone stays well under it.
    seen: list[str] = []
    plugins = [(name, Spinner(LIMIT * 0.5, seen, name)) for name in ("a", "b", "c", "d")]
    async with host_with(*plugins) as host:
        report = await host.events.dispatch("on_message_received", message="hi")
    assert report.ok, report.failures
    assert seen == ["a", "b", "c", "d"]


async def test_back_to_back_broadcasts_give_the_same_handler_a_new_budget() -> None:
    seen: list[str] = []
    async with host_with(("only", Spinner(LIMIT * 0.5, seen, "only"))) as host:
        reports = [await host.events.dispatch("on_message_received", message=i) for i in range(4)]
    assert all(report.ok for report in reports), [r.failures for r in reports]
    assert len(seen) == 4


async def test_an_interrupt_never_lands_in_the_handler_after_the_one_it_was_meant_for() -> None:
    # The first handler ends around its deadline (a little before, a little after), again
    # and again: the watchdog may fire just as it returns. Whatever happens to it, the
    # handler after it must never pay.
    limit = 0.05
    seen: list[str] = []

    class Edge:
        calls = 0

        @hookimpl
        def on_message_received(self, message: object) -> None:
            Edge.calls += 1
            spin(limit * (0.9 + 1.1 * (Edge.calls % 9) / 8))  # 0.9x to 2x the limit

    plugins = [("a_edge", Edge()), ("b_after", Spinner(0, seen, "b_after"))]
    timed_out = 0
    async with host_with(*plugins, limit=limit) as host:
        for _ in range(60):
            report = await host.events.dispatch("on_message_received", message="hi")
            assert "b_after" not in [failure.plugin for failure in report.failures]
            timed_out += len(report.failures)
    assert seen.count("b_after") == 60
    assert 0 < timed_out < 60  # the edge was really straddled


def test_the_watchdog_never_fires_a_step_that_has_ended_into_the_next() -> None:
    slot = current_slot()
    record = time.monotonic() + 1e9
    ended, running = object(), object()
    slot.stepped = slot.armed = record
    slot.step = running
    try:
        assert fire(slot, record, step=ended) is False
        assert slot.pending is None
    finally:
        slot.step = slot.stepped = slot.armed = None


async def test_every_handler_runs_in_its_own_plugins_scope_and_tasks_it_starts_keep_it() -> None:
    scopes: dict[str, str | None] = {}
    later: list[asyncio.Task[None]] = []

    class Noting:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def on_message_received(self, message: object) -> None:
            scope = current_scope()
            scopes[self.name] = scope.plugin if scope else None

            async def afterwards() -> None:
                await asyncio.sleep(0.01)  # runs after the broadcast is over
                scope = current_scope()
                scopes[f"{self.name} task"] = scope.plugin if scope else None

            later.append(asyncio.get_running_loop().create_task(afterwards()))

    async with host_with(("one", Noting("one")), ("two", Noting("two"))) as host:
        report = await host.events.dispatch("on_message_received", message="hi")
        assert current_scope() is None  # back in host code
        await asyncio.gather(*later)
    assert report.ok
    assert scopes == {"one": "one", "two": "two", "one task": "one", "two task": "two"}


@pytest.mark.usefixtures("signal_interrupts")
async def test_signal_interrupts_break_a_handler_blocked_in_a_system_call() -> None:
    assert threading.current_thread() is threading.main_thread()

    class Sleeper:
        @hookimpl
        def on_message_received(self, message: object) -> None:
            time.sleep(5)

    seen: list[str] = []
    async with host_with(("a_sleeper", Sleeper()), ("b_next", Spinner(0, seen, "b_next"))) as host:
        started = time.monotonic()
        report = await host.events.dispatch("on_message_received", message="hi")
        elapsed = time.monotonic() - started
        await anyio.sleep(0.1)  # a late signal, if any, must find nothing to interrupt
        again = await host.events.dispatch("on_message_received", message="hi")
    assert elapsed < LIMIT + SLACK
    assert [failure.plugin for failure in report.failures] == ["a_sleeper"]
    assert seen == ["b_next", "b_next"]
    assert [failure.plugin for failure in again.failures] == ["a_sleeper"]


class _Monitor:
    def before(self, plugin: str, operation: str, args: Any, kwargs: Any) -> None:
        return None

    def after(
        self, token: None, plugin: str, operation: str, result: Any, error: BaseException | None
    ) -> None:
        return None


@pytest.mark.parametrize("path", ["inline", "guarded"])
async def test_an_awaitable_a_sync_handler_returns_runs_in_its_scope_and_under_its_deadline(
    path: str,
) -> None:
    """A plain function may hand back a coroutine (a wrapper, a partial of an async
    function): awaiting it is still that plugin's code, with its rights and its limit.
    A call monitor sends the broadcast down the guarded path."""
    scopes: dict[str, str | None] = {}

    class Returning:
        def __init__(self, name: str, forever: bool = False) -> None:
            self.name, self.forever = name, forever

        @hookimpl
        def on_message_received(self, message: object) -> Any:
            async def body() -> None:
                await asyncio.sleep(0)
                scope = current_scope()
                scopes[self.name] = scope.plugin if scope else None
                if self.forever:
                    await asyncio.sleep(3600)

            return body()

    plugins = [
        ("a_returns", Returning("a_returns")),
        ("b_waits", Returning("b_waits", forever=True)),
        ("c_returns", Returning("c_returns")),
    ]
    async with host_with(*plugins) as host:
        if path == "guarded":
            host.add_call_monitor(_Monitor())
        started = time.monotonic()
        with anyio.fail_after(LIMIT + SLACK + 2):
            report = await host.events.dispatch("on_message_received", message="hi")
        elapsed = time.monotonic() - started
        assert current_scope() is None
    assert scopes == {"a_returns": "a_returns", "b_waits": "b_waits", "c_returns": "c_returns"}
    assert [failure.plugin for failure in report.failures] == ["b_waits"]
    assert isinstance(report.failures[0].error, PluginTimeout)
    assert elapsed < LIMIT + SLACK + 0.5


REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="-")
OWN: contextvars.ContextVar[int] = contextvars.ContextVar("own", default=0)


async def test_handlers_see_the_callers_context_variables_and_keep_their_own_to_themselves() -> (
    None
):
    """Each sync handler runs in a copy of the dispatching context holding its plugin's
    scope: it sees the caller's variables as they are at each broadcast, and what it sets
    reaches neither the caller, nor the next handler, nor its own next call."""
    seen: list[tuple[str, str, int]] = []

    class Reading:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def on_message_received(self, message: object) -> None:
            seen.append((self.name, REQUEST.get(), OWN.get()))
            OWN.set(OWN.get() + 1)
            REQUEST.set("changed by " + self.name)

    async with host_with(("one", Reading("one")), ("two", Reading("two"))) as host:
        for request in ("first", "first", "second"):
            REQUEST.set(request)
            report = await host.events.dispatch("on_message_received", message="hi")
            assert report.ok
            assert (REQUEST.get(), OWN.get()) == (request, 0)  # nothing leaked back
            assert current_scope() is None
    assert seen == [
        ("one", "first", 0),
        ("two", "first", 0),
        ("one", "first", 0),
        ("two", "first", 0),
        ("one", "second", 0),
        ("two", "second", 0),
    ]
