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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from clawhost.core import telemetry as _telemetry
from clawhost.errors import NotRegistered
from clawhost.runtime.guard import Withdrawn
from clawhost.sandbox.limits import current_slot, run_inline

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


# (owner, callable, keyword names or None for "pass the first payload value", is async,
#  the owner's inline target: gate, deadline and scope, or None to call directly)
_Handler = tuple[str, Callable[..., Any], tuple[str, ...] | None, bool, Any]


def _calling_convention(
    event: str, callback: Callable[..., Any], argnames: tuple[str, ...] | None
) -> tuple[str, ...] | None:
    """How to call a handler: ``None`` means "the first payload field, positionally";
    a tuple means "these payload fields, by keyword" (pluggy hookimpls always get this)."""
    if argnames is not None:
        return argnames
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
    """Handlers by event, each owned by a plugin; ``dispatch`` broadcasts to all of them."""

    def __init__(self, guard: Callable[[], Guard]) -> None:
        self._guard = guard
        # Replaced, never mutated in place: dispatch reads a tuple without locking.
        self._handlers: dict[str, tuple[_Handler, ...]] = {}
        # owner -> the events it handles (one entry per handler)
        self._by_owner: dict[str, list[str]] = {}
        self._lock = threading.Lock()

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
        entry = (owner, callback, convention, is_async, self._guard().inline_target(owner))
        with self._lock:
            self._handlers[event] = (*self._handlers.get(event, ()), entry)
            self._by_owner.setdefault(owner, []).append(event)

    def has_handlers(self, event: str) -> bool:
        """Whether anything listens to ``event`` (so callers can skip building a payload)."""
        return event in self._handlers

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
                if kept:
                    self._handlers[event] = kept
                else:
                    del self._handlers[event]
        return removed

    async def dispatch(self, event: str, /, *args: Any, **payload: Any) -> DispatchReport:
        """Call every handler of ``event``; a failing handler never stops the others.

        The payload is passed by keyword (``dispatch("on_message_received", message=m)``);
        one positional argument stands for the event's first payload field.
        """
        handlers = self._handlers.get(event, ())
        if not handlers:
            return DispatchReport(event, 0)
        guard = self._guard()
        if guard.reloading:  # a plugin is reloading: deliver to its new version, not the old
            for owner in sorted({handler[0] for handler in handlers} & set(guard.reloading)):
                await guard.ready(owner)
            handlers = self._handlers.get(event, ())
        if args:
            fields = EVENT_PAYLOADS.get(event, ("payload",))
            payload = {**dict(zip(fields, args, strict=False)), **payload}
        primary = next(iter(payload.values()), None)
        failures: list[HandlerFailure] = []
        with _telemetry.span(
            "clawhost.dispatch", {"clawhost.event": event, "clawhost.handlers": len(handlers)}
        ):
            slot = current_slot()
            for owner, callback, names, is_async, target in handlers:
                if names is None:
                    args, kwargs = (primary,), _NO_KWARGS
                else:
                    args, kwargs = (), {name: payload[name] for name in names}
                try:
                    if is_async or guard.monitored:
                        await guard.call(
                            owner, callback, *args, operation=event, inline=True, **kwargs
                        )
                        continue
                    if target is None:
                        result = callback(*args, **kwargs)
                    elif target.gate._open:
                        gate = target.gate
                        gate._inflight += 1
                        try:
                            result = run_inline(
                                callback,
                                args,
                                kwargs,
                                owner,
                                event,
                                target.timeout,
                                target.scope,
                                slot,
                            )
                        finally:
                            gate._inflight -= 1
                            if gate._idle is not None and not gate._inflight:
                                gate._idle.set()
                    else:  # reloading: wait, then deliver to what is current
                        await guard.ready(owner)
                        for current in self._handlers.get(event, ()):
                            if current[0] == owner:
                                await guard.call(
                                    owner, current[1], *args, operation=event, inline=True, **kwargs
                                )
                        continue
                    if result is not None and inspect.isawaitable(result):
                        await result
                except Withdrawn:
                    continue
                except Exception as exc:
                    failures.append(HandlerFailure(owner, event, exc))
                    logger.error(
                        "plugin %r: %s handler failed: %s: %s",
                        owner,
                        event,
                        type(exc).__name__,
                        exc,
                    )
                    logger.debug(
                        "traceback of the failed %s handler of %r", event, owner, exc_info=exc
                    )
        _telemetry.record_dispatch(event, len(failures))
        return DispatchReport(event, len(handlers), tuple(failures))


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
