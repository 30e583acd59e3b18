"""Event broadcast and the message pipeline.

Broadcasts call every handler of an event: pluggy stops a hook call at the first raising
implementation, so clawhost dispatches itself, with a guard per handler; one failing
handler is logged (its traceback at DEBUG) and the others still run. Pipeline stages run
in a defined order (``order``, then name), and each may transform or drop the message.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from contextvars import Context, copy_context
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clawhost.core import telemetry as _telemetry
from clawhost.core.telemetry import RECHECK_SECS as _RECHECK_SECS
from clawhost.core.telemetry import TRACING as _TRACING
from clawhost.core.telemetry import State as _TELEMETRY
from clawhost.errors import NotRegistered
from clawhost.runtime.guard import GuardCell, Withdrawn
from clawhost.sandbox.limits import await_result, current_slot, failed_call, timed_out
from clawhost.sandbox.scope import _CURRENT as _SCOPE
from clawhost.sandbox.watchdog import Interrupt, claim, local_slots

if TYPE_CHECKING:
    from clawhost.core.messages import Message
    from clawhost.runtime.guard import Guard

__all__ = ["DispatchReport", "EventBus", "HandlerFailure", "Pipeline", "PipelineResult"]

logger = logging.getLogger("clawhost.events")
_NO_KWARGS: dict[str, Any] = {}

#: The payload of each standard event, in order; the first is what one-argument callbacks get.
EVENT_PAYLOADS: dict[str, tuple[str, ...]] = {
    "on_message_received": ("message",),
    "on_response_sent": ("response",),
    "on_tool_called": ("tool", "arguments", "result", "error", "duration"),
    "on_plugin_activated": ("plugin", "version"),
    "on_plugin_deactivated": ("plugin",),
}


@dataclass(frozen=True, slots=True)
class HandlerFailure:
    """One handler that raised during a broadcast."""

    plugin: str
    event: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What a broadcast did: how many handlers ran, and which failed."""

    event: str
    handlers: int
    failures: tuple[HandlerFailure, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every handler ran without raising."""
        return not self.failures


# How a handler takes the payload: ``None``, the first payload value, positionally; a
# name, that field positionally (a pluggy hookimpl of one argument); a tuple, those
# fields by keyword.
_Convention = str | tuple[str, ...] | None
# (owner, callable, convention, is async, the owner's inline target: gate, deadline, scope)
_Handler = tuple[str, Callable[..., Any], _Convention, bool, Any]


class _Unguarded:
    """The inline target of a handler whose guard has none: no scope, no deadline."""

    __slots__ = ()
    scope = None
    timeout = None


_UNGUARDED = _Unguarded()


@dataclass(frozen=True, slots=True)
class _Plan:
    """One event's handlers, compiled when they change (never per dispatch)."""

    handlers: tuple[_Handler, ...]
    owners: frozenset[str]
    #: Every handler is a plain function: the whole broadcast can run inline.
    inline: bool
    #: Some handler takes "the first payload value" (convention ``None``).
    primary: bool
    #: The report of a broadcast in which nothing failed (reports are immutable).
    done: DispatchReport
    #: The contexts the handlers run in on the inline path.
    contexts: _Contexts

    @classmethod
    def of(cls, event: str, handlers: tuple[_Handler, ...]) -> _Plan:
        return cls(
            handlers,
            frozenset(handler[0] for handler in handlers),
            not any(handler[3] for handler in handlers),
            any(handler[2] is None for handler in handlers),
            DispatchReport(event, len(handlers)),
            _Contexts(len(handlers)),
        )


class _Contexts:
    """The contexts one plan's handlers run in on the inline path, as ``asyncio`` runs a
    callback: each a copy of the dispatching context with the plugin's sandbox scope set.

    Setting a context variable per handler (and resetting it) allocates, and cost more
    than a trivial handler; entering a ready context does not. So the copies are kept
    while the dispatching context holds the same variables (compared once a broadcast,
    at once when nothing changed), and a handler that sets a variable in its copy gets a
    fresh one next time: each call sees the dispatcher's variables and its own scope,
    and what it sets stays its own. Used from one thread only (``thread``); a broadcast
    from another takes the guarded path.
    """

    __slots__ = ("base", "cells", "thread")

    def __init__(self, handlers: int) -> None:
        self.thread: int | None = None
        #: The dispatching context the copies were made from.
        self.base: Context | None = None
        #: Per handler: [its context's ``run`` or None, the context as made, the context].
        self.cells: tuple[list[Any], ...] = tuple([None, None, None] for _ in range(handlers))

    def renew(self, base: Context) -> None:
        self.base = base
        for cell in self.cells:
            cell[0] = None


def _scoped_copy(cell: list[Any], base: Context, scope: Any) -> Callable[..., Any]:
    """Fill ``cell`` with a copy of ``base`` holding ``scope``; returns its ``run``. (A
    plugin's scope is set before it subscribes, and stays until it is unsubscribed.)"""
    context = base.copy()
    context.run(_SCOPE.set, scope)
    cell[0], cell[1], cell[2] = context.run, context.copy(), context
    return cell[0]  # type: ignore[no-any-return]


# A broadcast's watchdog record has no deadline of its own (each handler is timed as a
# step); this far in the future, a call nested in a handler always arms its own.
_BROADCAST_RECORD = 1e9

# The reports of broadcasts nobody listened to, by event: creating one costs more than
# the rest of such a dispatch.
_UNHEARD: dict[str, DispatchReport] = {}


def _unheard(event: str) -> DispatchReport:
    report = _UNHEARD.get(event)
    if report is None:
        if len(_UNHEARD) >= 1024:
            _UNHEARD.clear()
        report = _UNHEARD[event] = DispatchReport(event, 0)
    return report


def _takes_one_positional(callback: Callable[..., Any]) -> bool:
    """Whether a function (or bound method) takes its first argument positionally; read
    from its code object, which is cheap (``inspect.signature`` is not)."""
    function = getattr(callback, "__func__", callback)
    code = getattr(function, "__code__", None)
    bound = 1 if function is not callback else 0
    return code is not None and code.co_argcount - bound >= 1


def _calling_convention(
    event: str, callback: Callable[..., Any], argnames: tuple[str, ...] | None
) -> _Convention:
    """How to call a handler (see ``_Convention``). pluggy hookimpls come with their
    ``argnames``, which pluggy itself passes positionally."""
    if argnames is not None:
        return argnames[0] if len(argnames) == 1 and _takes_one_positional(callback) else argnames
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: give them the payload
        return None
    names = tuple(p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    if len(names) == 1:
        return None
    payload = EVENT_PAYLOADS.get(event)
    if payload is None or set(names) <= set(payload):
        return names
    raise TypeError(
        f"a handler of {event} takes one argument (the {payload[0]}) or keyword arguments "
        f"among {', '.join(payload)}; this one takes ({', '.join(names)})"
    )


class EventBus:
    """Handlers by event, each owned by a plugin; ``dispatch`` broadcasts to all of them.

    Each event's handlers are compiled into a plan when they change. A broadcast to plain
    (sync) handlers, with no plugin reloading, no call monitor and no tracer, runs them in
    one loop on the event loop thread: each in its plugin's sandbox scope and under its
    deadline, with nothing allocated for a broadcast in which nothing fails. Anything else
    (async handlers, a reload in progress, monitors, tracing) takes the guarded path,
    which awaits each handler through the plugin's guard.
    """

    def __init__(self, guard: Callable[[], Guard]) -> None:
        self._guard = guard
        # A HostContext's cell: dispatch reads its attribute instead of calling it.
        self._cell = guard if isinstance(guard, GuardCell) else None
        # Replaced, never mutated in place: dispatch reads a tuple without locking.
        self._handlers: dict[str, tuple[_Handler, ...]] = {}
        self._plans: dict[str, _Plan] = {}
        # owner -> the events it handles (one entry per handler)
        self._by_owner: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def _replace(self, event: str, handlers: tuple[_Handler, ...]) -> None:
        if handlers:
            self._handlers[event] = handlers
            self._plans[event] = _Plan.of(event, handlers)
        else:
            self._plans.pop(event, None)
            self._handlers.pop(event, None)

    def subscribe(
        self,
        owner: str,
        event: str,
        callback: Callable[..., Any],
        *,
        argnames: tuple[str, ...] | None = None,
    ) -> None:
        """Add ``callback`` (sync or async) as a handler of ``event``, owned by ``owner``."""
        if not event.isidentifier():
            raise ValueError(f"event names are identifiers, not {event!r}")
        convention = _calling_convention(event, callback, argnames)
        is_async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - objects with an async __call__
        )
        target = self._guard().inline_target(owner) or _UNGUARDED
        entry: _Handler = (owner, callback, convention, is_async, target)
        with self._lock:
            self._replace(event, (*self._handlers.get(event, ()), entry))
            self._by_owner.setdefault(owner, []).append(event)

    def has_handlers(self, event: str) -> bool:
        """Whether anything listens to ``event`` (so callers can skip building a payload)."""
        return event in self._plans

    def handlers(self, event: str) -> list[str]:
        """The owners of ``event``'s handlers, in call order."""
        return [handler[0] for handler in self._handlers.get(event, ())]

    def events(self) -> list[str]:
        """Every event with at least one handler."""
        return sorted(self._handlers)

    def owned_by(self, owner: str) -> list[str]:
        """The events ``owner`` handles (one entry per handler)."""
        return sorted(self._by_owner.get(owner, ()))

    def _remove_owner(self, owner: str) -> list[str]:
        with self._lock:
            removed = sorted(self._by_owner.pop(owner, ()))
            for event in set(removed):
                kept = tuple(handler for handler in self._handlers[event] if handler[0] != owner)
                self._replace(event, kept)
        return removed

    async def dispatch(  # noqa: PLR0915 - the hot path, inlined on purpose
        self, event: str, /, *args: Any, **payload: Any
    ) -> DispatchReport:
        """Call every handler of ``event``; a failing handler never stops the others.

        The payload is passed by keyword (``dispatch("on_message_received", message=m)``);
        one positional argument stands for the event's first payload field.
        """
        plan = self._plans.get(event)
        if plan is None:
            return _unheard(event)
        if args:
            fields = EVENT_PAYLOADS.get(event, ("payload",))
            payload = {**dict(zip(fields, args, strict=False)), **payload}
        holder = self._cell
        guard = holder.guard if holder is not None else self._guard()
        now = time.monotonic()
        state = _TELEMETRY
        if now - state.checked_at < _RECHECK_SECS:  # observing(now), inlined
            observed = state.flags
        else:
            observed = _telemetry.observing(now)
        if not plan.inline or guard.monitored or guard.reloading or observed & _TRACING:
            return await self._dispatch_guarded(event, payload, guard)
        # The inline broadcast. Reloads close a plugin's gate only after adding it to
        # ``guard.reloading`` (checked above), and nothing else runs on this thread while
        # a sync handler does, so the gates need no per-handler check or count here.
        primary = next(iter(payload.values()), None) if plan.primary else None
        try:
            slot = local_slots.slot
        except AttributeError:
            slot = current_slot()
        if slot.armed is not None:  # inside a watched call: each handler under both limits
            return await self._dispatch_guarded(event, payload, guard)
        # Each handler runs in its plugin's scope, as a step of its own under the watchdog
        # (``sandbox.watchdog``: one record for the broadcast, no clock read per handler),
        # in a copy of this context with the scope set (``_Contexts``).
        contexts = plan.contexts
        if contexts.thread != slot.ident:
            if contexts.thread is not None:  # another thread's: not shared, never entered twice
                return await self._dispatch_guarded(event, payload, guard)
            contexts.thread = slot.ident
        base = copy_context()
        if contexts.base != base:  # the same variables: the same contexts, else anew
            contexts.renew(base)
        handlers = plan.handlers
        failures: list[HandlerFailure] | None = None
        record: float = now + _BROADCAST_RECORD
        slot.stepped = slot.armed = record
        try:
            for entry, cell in zip(handlers, contexts.cells):  # noqa: B905 - made alike
                owner, callback, names, _, target = entry
                run = cell[0]
                if run is None:
                    run = _scoped_copy(cell, base, target.scope)
                try:
                    timeout = target.timeout
                    if timeout is not None:
                        slot.limit = timeout
                        slot.step = entry
                    try:
                        try:
                            if names is None:
                                result = run(callback, primary)
                            elif names.__class__ is str:
                                result = run(callback, payload[names])
                            else:
                                result = run(callback, **{name: payload[name] for name in names})
                        finally:
                            slot.step = None
                    except Interrupt:
                        timed_out(
                            slot,
                            record,
                            previous=None,
                            plugin=owner,
                            operation=event,
                            limit=timeout or 0.0,
                        )
                    except BaseException:
                        if slot.pending is not None:  # fired as it raised: its error stands
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
                except Exception as exc:
                    failures = _failed(failures, owner, event, exc)
                    continue
                except (SystemExit, KeyboardInterrupt, GeneratorExit) as exc:
                    failures = _failed(failures, owner, event, failed_call(owner, event, exc))
                    continue
                finally:
                    if cell[2] != cell[1]:  # it set a variable: a fresh copy next time
                        cell[0] = None
                if result is not None and inspect.isawaitable(result):
                    slot.stepped = slot.armed = None  # other tasks run while this awaits
                    try:  # still the plugin's code: its scope, its deadline
                        await await_result(
                            result,
                            plugin=owner,
                            operation=event,
                            timeout=target.timeout,
                            scope=target.scope,
                        )
                    except Exception as exc:
                        failures = _failed(failures, owner, event, exc)
                    if guard.monitored or guard.reloading or slot.armed is not None:
                        rest = handlers[next(i for i, e in enumerate(handlers) if e is entry) + 1 :]
                        failures = await self._deliver(event, rest, payload, guard, failures)
                        break
                    record = time.monotonic() + _BROADCAST_RECORD
                    slot.stepped = slot.armed = record
        finally:
            if slot.stepped is record:
                slot.stepped = slot.armed = None
        if observed:
            _telemetry.record_dispatch(event, len(failures or ()))
        if failures is None:
            return plan.done
        return DispatchReport(event, len(handlers), tuple(failures))

    async def _dispatch_guarded(
        self, event: str, payload: dict[str, Any], guard: Guard
    ) -> DispatchReport:
        """The broadcast that awaits every handler through the plugin's guard."""
        handlers = self._handlers.get(event, ())
        if guard.reloading:  # a plugin is reloading: deliver to its new version, not the old
            for owner in sorted({handler[0] for handler in handlers} & set(guard.reloading)):
                await guard.ready(owner)
            handlers = self._handlers.get(event, ())
        with _telemetry.span(
            "clawhost.dispatch", {"clawhost.event": event, "clawhost.handlers": len(handlers)}
        ):
            failures = await self._deliver(event, handlers, payload, guard, None)
        _telemetry.record_dispatch(event, len(failures or ()))
        return DispatchReport(event, len(handlers), tuple(failures or ()))

    async def _deliver(
        self,
        event: str,
        handlers: tuple[_Handler, ...],
        payload: dict[str, Any],
        guard: Guard,
        failures: list[HandlerFailure] | None,
    ) -> list[HandlerFailure] | None:
        primary = next(iter(payload.values()), None)
        args: tuple[Any, ...]
        for owner, callback, names, _, _ in handlers:
            if names is None:
                args, kwargs = (primary,), _NO_KWARGS
            elif isinstance(names, str):
                args, kwargs = (payload[names],), _NO_KWARGS
            else:
                args, kwargs = (), {name: payload[name] for name in names}
            try:
                if guard.reloading and owner in guard.reloading:
                    # reloading: wait, then deliver to what is current
                    await guard.ready(owner)
                    for current in self._handlers.get(event, ()):
                        if current[0] == owner:
                            await guard.call(
                                owner, current[1], *args, operation=event, inline=True, **kwargs
                            )
                    continue
                await guard.call(owner, callback, *args, operation=event, inline=True, **kwargs)
            except Withdrawn:
                continue
            except Exception as exc:
                failures = _failed(failures, owner, event, exc)
        return failures


def _failed(
    failures: list[HandlerFailure] | None, owner: str, event: str, error: BaseException
) -> list[HandlerFailure]:
    """Log one handler's failure and add it to the broadcast's list."""
    logger.error("plugin %r: %s handler failed: %s: %s", owner, event, type(error).__name__, error)
    logger.debug("traceback of the failed %s handler of %r", event, owner, exc_info=error)
    if failures is None:
        failures = []
    failures.append(HandlerFailure(owner, event, error))
    return failures


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """What the pipeline made of a message: the result, or who dropped it and why."""

    message: Message | None
    dropped_by: str | None = None
    error: BaseException | None = None


OnError = Literal["drop", "skip"]


@dataclass(frozen=True, slots=True)
class _Stage:
    order: int
    name: str
    owner: str
    process: Callable[..., Any]
    on_error: OnError


class Pipeline:
    """Ordered message stages. A stage returns the message (changed or not), or ``None`` to
    drop it. When a stage raises, ``on_error`` decides: ``"drop"`` (the default: a failing
    filter must not wave messages through) or ``"skip"`` (pass the message on unchanged)."""

    kind = "pipeline stage"

    def __init__(self, guard: Callable[[], Guard]) -> None:
        self._guard = guard
        # A HostContext's cell: dispatch reads its attribute instead of calling it.
        self._cell = guard if isinstance(guard, GuardCell) else None
        # Replaced, never mutated in place: a message being processed keeps its list.
        self._stages: list[_Stage] = []
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return any(stage.name == name for stage in self._stages)

    def __len__(self) -> int:
        return len(self._stages)

    def has(self, name: str) -> bool:
        """Whether a stage named ``name`` is registered."""
        return name in self

    def names(self) -> list[str]:
        """Stage names in the order they run."""
        return [stage.name for stage in self._stages]

    def owner_of(self, name: str) -> str | None:
        """The plugin that registered stage ``name``."""
        return next((stage.owner for stage in self._stages if stage.name == name), None)

    def owned_by(self, owner: str) -> list[str]:
        """The stages ``owner`` registered."""
        return sorted(stage.name for stage in self._stages if stage.owner == owner)

    def get(self, name: str) -> Callable[..., Any]:
        """The callable behind stage ``name``."""
        for stage in self._stages:
            if stage.name == name:
                return stage.process
        raise NotRegistered(self.kind, name, tuple(self.names()))

    def _add(self, owner: str, name: str, stage: Any, order: int, on_error: OnError) -> None:
        if on_error not in ("drop", "skip"):
            raise ValueError(f"on_error must be 'drop' or 'skip', not {on_error!r}")
        process = getattr(stage, "process", None)
        if not callable(process):
            if not callable(stage):
                raise TypeError(
                    f"pipeline stage {name!r} must be callable or have a process() method"
                )
            process = stage
        self._stages.append(_Stage(order, name, owner, process, on_error))
        self._stages.sort(key=lambda item: (item.order, item.name))

    def _remove_owner(self, owner: str) -> list[str]:
        with self._lock:
            removed = self.owned_by(owner)
            self._stages = [stage for stage in self._stages if stage.owner != owner]
        return removed

    def _current_process(self, name: str) -> Callable[..., Any] | None:
        return next((stage.process for stage in self._stages if stage.name == name), None)

    async def process(self, message: Message) -> PipelineResult:
        """Run every stage over ``message``; say what came out, or who dropped it."""
        guard = self._guard()
        current = message
        for stage in list(self._stages):
            try:
                result = await guard.call(
                    stage.owner,
                    stage.process,
                    current,
                    operation=f"stage {stage.name}",
                    current=functools.partial(self._current_process, stage.name),
                )
            except Withdrawn:
                continue
            except Exception as exc:
                logger.error(
                    "pipeline stage %r (plugin %r) failed: %s: %s; %s",
                    stage.name,
                    stage.owner,
                    type(exc).__name__,
                    exc,
                    "message dropped" if stage.on_error == "drop" else "stage skipped",
                )
                logger.debug("traceback of stage %r", stage.name, exc_info=exc)
                if stage.on_error == "drop":
                    return PipelineResult(None, stage.name, exc)
                continue
            if result is None:
                logger.info("pipeline stage %r dropped message %s", stage.name, current.id)
                return PipelineResult(None, stage.name)
            current = result
        return PipelineResult(current)

    async def run(self, message: Message) -> Message | None:
        """The message after every stage, or ``None`` if a stage dropped it."""
        return (await self.process(message)).message
