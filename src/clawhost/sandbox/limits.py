"""Calling into plugin code under its limits: time, concurrency, and its sandbox scope.

``call_plugin`` is the one way the host calls plugin code:

* synchronous functions run on a clawhost worker thread (the event loop stays free); at
  the deadline the call raises ``PluginTimeout`` and the thread's Python code is
  interrupted (``interrupted=False`` when it is blocked in C and runs on);
* with ``sync_in_thread=False`` (cheap event handlers) they run inline on the loop thread
  (``call_inline``), watched by the watchdog;
* coroutine functions, and anything returning an awaitable, are awaited under
  ``anyio.move_on_after`` (which acts when the coroutine yields) and the watchdog (which
  acts when it does not: a busy loop, ``time.sleep`` in async code).

``SystemExit``, ``GeneratorExit`` (and ``KeyboardInterrupt`` raised in a worker thread)
coming out of plugin code become ``PluginFailed``; cancellation propagates; any other
exception propagates unchanged for the host to wrap.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from contextvars import ContextVar
from types import GeneratorType
from typing import Any, NoReturn

import anyio

from clawhost.errors import PluginFailed, PluginTimeout
from clawhost.sandbox import permissions as _permissions  # noqa: F401 (installs the audit hook's installer)
from clawhost.sandbox.handoff import Finish, loop_handoff
from clawhost.sandbox.scope import _CURRENT, SandboxScope
from clawhost.sandbox.watchdog import Deadline, Interrupt, Slot, claim, current_slot, local_slots
from clawhost.sandbox.workers import Job, submit

__all__ = [
    "INTERRUPT_GRACE",
    "await_result",
    "call_inline",
    "call_plugin",
    "current_slot",
    "failed_call",
    "loop_notifier",
    "plugin_limiter",
    "run_inline",
    "timed_out",
]

#: After a worker call's deadline, how long to wait for its thread to stop before saying
#: it could not be interrupted (and raising ``PluginTimeout(interrupted=False)``).
INTERRUPT_GRACE = 0.05

_EMPTY: Mapping[str, Any] = {}
# Limiters held by the calls this context is inside: a plugin calling back into itself
# must not wait for a token its own outer call holds (a deadlock at max_concurrency = 1).
_HELD: ContextVar[tuple[anyio.CapacityLimiter, ...]] = ContextVar("clawhost_held", default=())


def plugin_limiter(max_concurrency: int) -> anyio.CapacityLimiter:
    """A plugin's concurrency limit: at most ``max_concurrency`` of its calls at once.

    Create one per plugin (it may be created before the event loop runs) and pass it to
    every ``call_plugin`` for that plugin; calls beyond the limit wait their turn.
    """
    if max_concurrency < 1:
        raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
    return anyio.CapacityLimiter(max_concurrency)


def failed_call(plugin: str, operation: str, exc: BaseException) -> PluginFailed:
    """What ``SystemExit``, ``KeyboardInterrupt`` or ``GeneratorExit`` out of plugin code
    becomes: ``PluginFailed``, naming the plugin and the operation."""
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else repr(exc.code)
        return PluginFailed(plugin, operation, f"called sys.exit({code})")
    return PluginFailed(plugin, operation, f"raised {type(exc).__name__}")


def timed_out(
    slot: Slot,
    record: Deadline,
    *,
    previous: Deadline | None,
    plugin: str,
    operation: str,
    limit: float,
) -> NoReturn:
    """Turn an ``Interrupt`` caught after a step into ``PluginTimeout``, or pass it on."""
    try:
        owner = claim(slot, record)
    except Interrupt:
        owner = claim(slot, record)
    if owner is record or (owner is None and previous is None):
        raise PluginTimeout(plugin, operation, limit, interrupted=True) from None
    raise Interrupt  # an enclosing call's deadline: let that call report it


def call_inline(
    fn: Callable[..., Any],
    /,
    *args: Any,
    plugin: str,
    operation: str,
    timeout: float | None,
    scope: SandboxScope | None = None,
    kwargs: Mapping[str, Any] = _EMPTY,
) -> Any:
    """Call a synchronous plugin function on this thread, in ``scope``, under the watchdog.

    For event handlers, which must be cheap: no thread hop, no limiter, about half a
    microsecond of overhead. A handler that overruns ``timeout`` without returning is
    interrupted (``PluginTimeout``), but it holds this thread until then.
    """
    return run_inline(fn, args, kwargs, plugin, operation, timeout, scope, None)


def run_inline(  # noqa: PLR0917 - positional on purpose: the per-handler path of dispatch
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    plugin: str,
    operation: str,
    timeout: float | None,
    scope: SandboxScope | None,
    slot: Slot | None,
) -> Any:
    """``call_inline`` with positional parameters: the per-handler path of event dispatch,
    where keyword-argument handling alone would cost a fifth of the guard. ``slot`` is
    this thread's watchdog slot when the caller has it at hand (``None``: look it up)."""
    token = _CURRENT.set(scope)
    try:
        if timeout is None:
            return fn(*args, **kwargs)
        if slot is None:
            try:
                slot = local_slots.slot
            except AttributeError:
                slot = current_slot()
        record: Deadline = time.monotonic() + timeout  # a new float: this call's token
        previous = slot.armed
        slot.armed = record if previous is None or record <= previous else previous
        try:
            try:
                result = fn(*args, **kwargs)
            finally:
                slot.armed = previous
        except Interrupt:
            timed_out(
                slot, record, previous=previous, plugin=plugin, operation=operation, limit=timeout
            )
        except BaseException:
            if slot.pending is not None:  # fired as it raised: its own error stands
                try:
                    claim(slot, record)
                except Interrupt:
                    claim(slot, record)
            raise
        if slot.pending is not None:  # fired as it returned: the result stands
            try:
                claim(slot, record)
            except Interrupt:
                claim(slot, record)
        return result
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        raise failed_call(plugin, operation, exc) from exc
    finally:
        _CURRENT.reset(token)


class _Watched:
    """Await a coroutine one step at a time, with its deadline armed only while it runs.

    A step is the code between two yields to the event loop; the deadline is armed before
    each and disarmed after, so the watchdog interrupts a coroutine that overruns without
    yielding and never one that is merely waiting.
    """

    __slots__ = ("awaitable", "call", "record")

    def __init__(self, awaitable: Awaitable[Any], call: _Call, record: Deadline) -> None:
        self.awaitable = awaitable
        self.call = call
        self.record = record

    def __await__(self) -> Generator[Any, Any, Any]:
        steps = self.awaitable.__await__()
        slot, record, call = current_slot(), self.record, self.call
        value: Any = None
        error: BaseException | None = None
        give_up = record + _grace(call.limit)
        while True:
            if time.monotonic() > give_up:
                # Past the deadline and its grace the coroutine is still asking to be
                # resumed: it swallowed the cancellation. Stop driving it.
                _abandon(steps)
                raise call.timed_out(interrupted=True)
            previous = slot.armed
            slot.armed = record if previous is None or record <= previous else previous
            try:
                try:
                    yielded = steps.send(value) if error is None else steps.throw(error)
                finally:
                    slot.armed = previous
            except StopIteration as stop:
                if slot.pending is not None:
                    try:
                        claim(slot, record)
                    except Interrupt:
                        claim(slot, record)
                return stop.value
            except Interrupt:
                timed_out(
                    slot,
                    record,
                    previous=previous,
                    plugin=call.plugin,
                    operation=call.operation,
                    limit=call.limit,
                )
            except BaseException:  # the plugin's own error, or cancellation, stands
                if slot.pending is not None:
                    try:
                        claim(slot, record)
                    except Interrupt:
                        claim(slot, record)
                raise
            if slot.pending is not None:
                try:
                    claim(slot, record)
                except Interrupt:
                    claim(slot, record)
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # cancellation and the like go to the plugin
                value, error = None, exc


#: Coroutines that swallowed both their cancellation and ``close()``: nothing drives them
#: any more, and holding them keeps the garbage collector from reporting them.
_ABANDONED: list[Any] = []


def _grace(limit: float) -> float:
    """How long after its deadline a cancelled coroutine may run its cleanup (``except
    CancelledError: await ...; raise``) before the host stops driving it."""
    return min(max(limit * 0.2, 0.05), 1.0)


def _abandon(steps: Generator[Any, Any, Any]) -> None:
    try:
        steps.close()
    except RuntimeError:  # it ignored GeneratorExit too
        _ABANDONED.append(steps)
        del _ABANDONED[:-100]
    except BaseException:
        pass


class _Call:
    """What one call into plugin code is: whose, which operation, its limit and scope."""

    __slots__ = ("deadline", "limit", "operation", "plugin", "scope")

    def __init__(
        self, plugin: str, operation: str, limit: float | None, scope: SandboxScope | None
    ) -> None:
        self.plugin = plugin
        self.operation = operation
        self.limit = limit or 0.0
        self.scope = scope
        self.deadline = None if limit is None else time.monotonic() + limit

    def timed_out(self, *, interrupted: bool) -> PluginTimeout:
        return PluginTimeout(self.plugin, self.operation, self.limit, interrupted=interrupted)

    def failed(self, exc: BaseException) -> PluginFailed:
        return failed_call(self.plugin, self.operation, exc)


async def _await_plugin(awaitable: Awaitable[Any], call: _Call) -> Any:
    token = _CURRENT.set(call.scope)
    try:
        if call.deadline is None:
            return await awaitable
        with anyio.move_on_after(max(call.deadline - time.monotonic(), 0.0)):
            return await _Watched(awaitable, call, call.deadline)
        # Only the deadline's own cancellation, caught by the scope, gets here.
        raise call.timed_out(interrupted=True)
    except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
        raise call.failed(exc) from exc
    finally:
        _CURRENT.reset(token)


def loop_notifier() -> Callable[[Callable[[], object]], object]:
    """A thread-safe "run this soon on the event loop" for the running loop."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        import trio  # type: ignore[import-not-found]  # anyio's only other backend

        notify: Callable[[Callable[[], object]], object]
        notify = trio.lowlevel.current_trio_token().run_sync_soon
        return notify


async def _run_in_worker(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], call: _Call
) -> Any:
    handoff = loop_handoff()
    if handoff is None:
        return await _run_in_worker_anyio(fn, args, kwargs, call)
    finish = Finish(handoff.loop)
    job = _job(fn, args, kwargs, call, functools.partial(handoff.on_done, finish.set))
    handoff.submit(job)
    try:
        finished = await finish.wait(None if call.deadline is None else call.limit)
    except BaseException:  # cancelled: nobody wants the result, stop the plugin code
        job.abandon()
        raise
    if not finished:
        job.abandon()
        await finish.wait(INTERRUPT_GRACE)
        raise call.timed_out(interrupted=not job.leave_running())
    return _outcome(job, call)


async def _run_in_worker_anyio(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any], call: _Call
) -> Any:
    """``_run_in_worker`` on an event loop other than asyncio's (trio)."""
    done = anyio.Event()
    job = _job(fn, args, kwargs, call, functools.partial(loop_notifier(), done.set))
    submit(job)
    try:
        with anyio.move_on_after(None if call.deadline is None else call.limit):
            await done.wait()
    except BaseException:  # cancelled: nobody wants the result, stop the plugin code
        job.abandon()
        raise
    if not done.is_set():
        job.abandon()
        with anyio.move_on_after(INTERRUPT_GRACE):
            await done.wait()
        raise call.timed_out(interrupted=not job.leave_running())
    return _outcome(job, call)


def _job(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    call: _Call,
    on_done: Callable[[], object],
) -> Job:
    """The worker thread's job for ``call``: its scope, and its deadline as the record."""
    return Job(
        fn,
        args,
        kwargs,
        plugin=call.plugin,
        operation=call.operation,
        scope=call.scope,
        record=call.deadline,
        on_done=on_done,
    )


def _outcome(job: Job, call: _Call) -> Any:
    """What a finished worker call returns (or raises) to its caller."""
    if job.outcome == "interrupted":  # fired just as it finished, after the deadline
        raise call.timed_out(interrupted=True)
    if job.outcome == "error":
        error = job.error
        assert error is not None
        if isinstance(error, SystemExit | GeneratorExit | KeyboardInterrupt):
            raise call.failed(error) from error
        raise error
    return job.value


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 (instances with an async __call__)
    )


async def call_plugin(
    fn: Callable[..., Any],
    /,
    *args: Any,
    plugin: str,
    operation: str,
    timeout: float | None,  # noqa: ASYNC109 (enforced inside, by two mechanisms)
    scope: SandboxScope | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    sync_in_thread: bool = True,
    kwargs: Mapping[str, Any] = _EMPTY,
) -> Any:
    """Call plugin code ``fn(*args, **kwargs)`` under the plugin's limits and permissions.

    ``operation`` names the call in errors (``"activate"``, ``"tool get_weather"``);
    ``timeout`` is in seconds (``None``: none), counted from when the call gets a
    ``limiter`` token; ``scope`` is the plugin's ``SandboxScope``. Keyword arguments for
    ``fn`` go in ``kwargs``, so they can never collide with these parameters.

    Raises ``PluginTimeout`` at the deadline, ``PluginFailed`` for ``sys.exit()`` and the
    like, and whatever else the plugin raised, unchanged.
    """
    held = _HELD.get()
    if limiter is None or limiter in held:
        return await _call(
            fn, args, kwargs, _Call(plugin, operation, timeout, scope), sync_in_thread
        )
    borrower = object()  # one token per call, even for several calls of one task
    try:
        limiter.acquire_on_behalf_of_nowait(borrower)
    except anyio.WouldBlock:  # only then wait: acquiring always yields to the loop otherwise
        await limiter.acquire_on_behalf_of(borrower)
    held_token = _HELD.set((*held, limiter))
    try:
        return await _call(
            fn, args, kwargs, _Call(plugin, operation, timeout, scope), sync_in_thread
        )
    finally:
        _HELD.reset(held_token)
        limiter.release_on_behalf_of(borrower)


async def _call(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    call: _Call,
    sync_in_thread: bool,
) -> Any:
    if not sync_in_thread or _is_async(fn):
        # Calling a coroutine function only creates the coroutine; a plain function runs.
        result = call_inline(
            fn,
            *args,
            plugin=call.plugin,
            operation=call.operation,
            timeout=None if call.deadline is None else call.limit,
            scope=call.scope,
            kwargs=kwargs,
        )
    else:
        result = await _run_in_worker(fn, args, kwargs, call)
    if _is_awaitable(result):
        return await _await_plugin(result, call)
    return result


async def await_result(
    awaitable: Awaitable[Any],
    *,
    plugin: str,
    operation: str,
    timeout: float | None,  # noqa: ASYNC109 (enforced inside, as by call_plugin)
    scope: SandboxScope | None,
) -> Any:
    """Await what plugin code called inline returned (a coroutine, a future) as the
    plugin's code still: in its scope and under its deadline."""
    return await call_plugin(
        _awaited, awaitable, plugin=plugin, operation=operation, timeout=timeout, scope=scope
    )


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _is_awaitable(value: object) -> bool:
    # inspect.isawaitable goes through an ABC check that costs more than the rest of an
    # inline call; the type's __await__ answers for all but generator-based coroutines.
    return hasattr(type(value), "__await__") or (
        isinstance(value, GeneratorType) and inspect.isawaitable(value)
    )
