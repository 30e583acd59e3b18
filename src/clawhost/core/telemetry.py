"""OpenTelemetry spans and metrics that cost nothing when no SDK is configured.

clawhost depends on ``opentelemetry-api`` only; the application brings an SDK and an
exporter. Until it does (a real tracer or meter provider is set), every function here
returns a shared no-op without importing opentelemetry at all. Whether a real provider is
set is re-checked at most once a second, so one configured after the host started is
picked up.

Spans: ``clawhost.discover``, ``clawhost.resolve``, ``clawhost.activate``,
``clawhost.deactivate``, ``clawhost.tool``, ``clawhost.dispatch``, with ``clawhost.plugin``,
``clawhost.tool``, ``clawhost.event`` attributes. Metrics: ``clawhost.tool.calls`` and
``clawhost.tool.duration`` (seconds), ``clawhost.plugin.lifecycle`` and
``clawhost.plugin.lifecycle.duration`` (per stage and outcome), ``clawhost.event.dispatches``
and ``clawhost.event.handler_errors``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from clawhost._version import __version__

__all__ = [
    "METERING",
    "RECHECK_SECS",
    "TRACING",
    "State",
    "observing",
    "record_dispatch",
    "record_lifecycle",
    "record_tool_call",
    "span",
]

#: ``observing()`` flags: a real meter provider is set; a real tracer provider is set.
METERING, TRACING = 1, 2

_NOOP: AbstractContextManager[Any] = contextlib.nullcontext()
RECHECK_SECS = 1.0


class State:
    """What was found at the last check (``checked_at``, ``time.monotonic()``): the tracer,
    the instruments, and ``observing()``'s answer. A hot path may read ``flags`` itself
    while ``checked_at`` is less than ``RECHECK_SECS`` old, and call ``observing`` otherwise."""

    checked_at = -1e9
    tracer: Any = None
    instruments: dict[str, Any] | None = None
    #: ``observing()``'s answer as of ``checked_at``.
    flags = 0


def _refresh() -> None:
    now = time.monotonic()
    if now - State.checked_at < RECHECK_SECS:
        return
    State.checked_at = now
    try:
        _check_providers()
    finally:
        State.flags = (METERING if State.instruments is not None else 0) | (
            TRACING if State.tracer is not None else 0
        )


def _check_providers() -> None:
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        provider = trace.get_tracer_provider()
        real = not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
        State.tracer = provider.get_tracer("clawhost", __version__) if real else None
    else:
        State.tracer = None
    metrics = sys.modules.get("opentelemetry.metrics")
    if metrics is None:
        State.instruments = None
        return
    provider = metrics.get_meter_provider()
    proxy_or_noop = type(provider).__name__ in {"_ProxyMeterProvider", "NoOpMeterProvider"}
    if proxy_or_noop:
        State.instruments = None
    elif State.instruments is None or State.instruments.get("provider") is not provider:
        meter = provider.get_meter("clawhost", __version__)
        State.instruments = {
            "provider": provider,
            "tool_calls": meter.create_counter("clawhost.tool.calls", description="Tool calls"),
            "tool_duration": meter.create_histogram(
                "clawhost.tool.duration", unit="s", description="Tool call latency"
            ),
            "lifecycle": meter.create_counter(
                "clawhost.plugin.lifecycle", description="Lifecycle stages run, by outcome"
            ),
            "lifecycle_duration": meter.create_histogram(
                "clawhost.plugin.lifecycle.duration",
                unit="s",
                description="Lifecycle stage latency",
            ),
            "dispatches": meter.create_counter(
                "clawhost.event.dispatches", description="Event broadcasts"
            ),
            "handler_errors": meter.create_counter(
                "clawhost.event.handler_errors", description="Event handlers that raised"
            ),
        }


def refresh_now() -> None:
    """Re-check the providers immediately (tests, or right after configuring an SDK)."""
    State.checked_at = -1e9
    _refresh()


def observing(now: float) -> int:
    """What is recorded now: ``METERING`` and ``TRACING`` flags, ``0`` for nothing. Hot
    paths ask this once (passing ``time.monotonic()``, which they need anyway) and skip
    their span and metrics when nothing would see them."""
    if now - State.checked_at >= RECHECK_SECS:
        _refresh()
    return State.flags


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A span around a block, or a shared no-op when no tracer provider is configured."""
    _refresh()
    tracer = State.tracer
    if tracer is None:
        return _NOOP
    return tracer.start_as_current_span(name, attributes=dict(attributes or {}))  # type: ignore[no-any-return]


def record_tool_call(plugin: str, tool: str, duration: float, error: BaseException | None) -> None:
    instruments = State.instruments
    if instruments is None:
        return
    attributes = {
        "clawhost.plugin": plugin,
        "clawhost.tool": tool,
        "outcome": "error" if error else "ok",
    }
    instruments["tool_calls"].add(1, attributes)
    instruments["tool_duration"].record(duration, attributes)


def record_lifecycle(plugin: str, stage: str, duration: float, ok: bool) -> None:
    _refresh()
    instruments = State.instruments
    if instruments is None:
        return
    attributes = {"clawhost.plugin": plugin, "stage": stage, "outcome": "ok" if ok else "error"}
    instruments["lifecycle"].add(1, attributes)
    instruments["lifecycle_duration"].record(duration, attributes)


def record_dispatch(event: str, errors: int) -> None:
    instruments = State.instruments
    if instruments is None:
        return
    instruments["dispatches"].add(1, {"clawhost.event": event})
    if errors:
        instruments["handler_errors"].add(errors, {"clawhost.event": event})
