"""What the host knows about each plugin: its state, versions, manifest, timings, failure."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.core.state import PluginState, check_transition
from clawhost.errors import ResolutionError

if TYPE_CHECKING:
    from packaging.version import Version

    from clawhost.discovery.discover import Diagnostic, DiscoveredPlugin
    from clawhost.discovery.manifest import Manifest
    from clawhost.runtime.context import PluginContext
    from clawhost.runtime.loader import Implementation

__all__ = [
    "CallGate",
    "Failure",
    "HealthReport",
    "PluginRecord",
    "complete_record",
    "is_pending",
    "needs_eager_activation",
    "pending_records",
    "retry_resolution_failures",
]

logger = logging.getLogger("clawhost.lifecycle")


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a plugin is FAILED: the stage that failed and the reason, with the error."""

    stage: str
    reason: str
    error: BaseException | None = None

    def __str__(self) -> str:
        return f"{self.stage}: {self.reason}"


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The outcome of one plugin's health check."""

    plugin: str
    healthy: bool
    reason: str | None
    duration: float


class CallGate:
    """Holds calls into a plugin while it hot-reloads, and counts the calls in flight.

    Open, it costs an attribute check and a counter. Closed, new calls wait (they do not
    fail) until it opens again; ``close`` waits for the calls in flight to finish.
    """

    __slots__ = (
        "_idle",
        "_inflight",
        "_open",
        "_opened",
        "first_wait",
        "held_since",
        "held_total",
        "longest_hold",
        "waiting",
    )

    def __init__(self) -> None:
        self._open = True
        self._opened: anyio.Event | None = None
        self._idle: anyio.Event | None = None
        self._inflight = 0
        self.waiting = 0
        self.held_since: float | None = None
        #: Calls held by the last (or current) closing, and the longest one waited.
        self.held_total = 0
        self.longest_hold = 0.0
        self.first_wait: float | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def inflight(self) -> int:
        return self._inflight

    async def wait_open(self) -> None:
        """Wait until the gate is open (returns at once when it is)."""
        if not self._open:
            self.held_total += 1
            if self.first_wait is None:
                self.first_wait = time.perf_counter()
        while not self._open:
            assert self._opened is not None
            self.waiting += 1
            try:
                await self._opened.wait()
            finally:
                self.waiting -= 1

    def enter(self) -> None:
        self._inflight += 1

    def exit(self) -> None:
        self._inflight -= 1
        if self._inflight == 0 and self._idle is not None:
            self._idle.set()

    async def close(self, drain_timeout: float) -> bool:
        """Stop admitting calls and wait up to ``drain_timeout`` for those in flight.

        Returns whether every call in flight finished.
        """
        if self._open:
            self._open = False
            self._opened = anyio.Event()
            self.held_since = time.perf_counter()
            self.held_total = 0
            self.longest_hold = 0.0
            self.first_wait = None
        if self._inflight:
            self._idle = anyio.Event()
            with anyio.move_on_after(drain_timeout):
                await self._idle.wait()
            self._idle = None
        return self._inflight == 0

    def open(self) -> None:
        """Admit calls again, releasing every held one."""
        if self._open:
            return
        self._open = True
        self.held_since = None
        if self.first_wait is not None:  # the first call held is the one held longest
            self.longest_hold = time.perf_counter() - self.first_wait
            self.first_wait = None
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.set()


class PluginRecord:
    """Everything the host knows about one plugin (``host.plugins[name]``).

    Read-only for applications: the host moves it through its states.
    """

    def __init__(
        self, name: str, candidates: list[DiscoveredPlugin], *, enabled: bool = True
    ) -> None:
        self.name = name
        # One version needs no sorting, nor its version parsed (a warm start does neither).
        self.candidates = (
            sorted(candidates, key=lambda plugin: plugin.version, reverse=True)
            if len(candidates) > 1
            else list(candidates)
        )
        self.selected: DiscoveredPlugin | None = None
        self.state = PluginState.DISCOVERED if enabled else PluginState.DISABLED
        self.failure: Failure | None = None
        self.timings: dict[str, float] = {}
        self.diagnostics: list[Diagnostic] = []
        # Runtime, owned by the host:
        self.target: object | None = None
        self.modules: frozenset[str] = frozenset()
        self.hooks: dict[str, list[Implementation]] = {}
        self.context: PluginContext | None = None
        self.config: Mapping[str, Any] | None = None
        self.permissions: Any = None
        self.scope: Any = None
        self.limiter: Any = None
        self.timeout: float | None = None
        self.gate = CallGate()
        self._lock: anyio.Lock | None = None
        self.activated_at: float | None = None
        #: How many times the host started it again after its worker died, and when
        #: (``time.time()``) it will try next, if it will (``restart = true``).
        self.restarts = 0
        self.restart_at: float | None = None

    def __repr__(self) -> str:
        version = self.version or "?"
        return f"<PluginRecord {self.name} {version} {self.state.name}>"

    @property
    def lock(self) -> anyio.Lock:
        """Held while the plugin activates, deactivates or reloads. Made on first use: a
        host may hold thousands of records whose plugins never activate."""
        lock = self._lock
        if lock is None:
            lock = self._lock = anyio.Lock()
        return lock

    @property
    def plugin(self) -> DiscoveredPlugin | None:
        """The version in use: the resolved one, else the newest candidate."""
        if self.selected is not None:
            return self.selected
        return self.candidates[0] if self.candidates else None

    @property
    def version(self) -> Version | None:
        plugin = self.plugin
        return plugin.version if plugin is not None else None

    @property
    def manifest(self) -> Manifest | None:
        plugin = self.plugin
        return plugin.manifest if plugin is not None else None

    @property
    def is_active(self) -> bool:
        return self.state is PluginState.ACTIVE

    def move(self, target: PluginState, failure: Failure | None = None) -> None:
        """Change state through the transition table (``IllegalTransition`` otherwise)."""
        check_transition(self.name, self.state, target)
        self.state = target
        self.failure = failure if target is PluginState.FAILED else None

    def fail(self, stage: str, reason: str, error: BaseException | None = None) -> None:
        """Move to FAILED(stage, reason), logging one line (the traceback at DEBUG)."""
        self.move(PluginState.FAILED, Failure(stage, reason, error))
        summary = getattr(error, "summary", None)
        logger.error(
            "Plugin %r failed to %s: %s",
            self.name,
            stage,
            summary() if callable(summary) else reason,
        )
        if error is not None and error.__traceback__ is not None:
            logger.debug("traceback of %r's %s failure", self.name, stage, exc_info=error)

    def time(self, stage: str, seconds: float) -> None:
        self.timings[stage] = seconds

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json``)."""
        plugin = self.plugin
        return {
            "name": self.name,
            "version": str(self.version) if self.version else None,
            "state": self.state.value,
            "source": str(plugin.source) if plugin else None,
            "error": str(self.failure) if self.failure else None,
            "timings": dict(self.timings),
        }


class _PendingRecord(PluginRecord):
    """A record built on first use (``pending_records``): only ``name`` is set, and
    reading any other attribute first has the class's ``_fill`` complete it."""

    __slots__ = ()
    _fill: Callable[[PluginRecord], None]

    def __getattr__(self, attribute: str) -> Any:
        fill = vars(type(self)).get("_fill")
        if fill is None:  # completed meanwhile (by another thread)
            return object.__getattribute__(self, attribute)
        fill.__func__(self)  # completes it, and makes it a plain PluginRecord
        return getattr(self, attribute)


def pending_records(
    names: Iterable[str], fill: Callable[[PluginRecord], None]
) -> dict[str, PluginRecord]:
    """One record per name, each built on first use by ``fill(record)``, which computes
    its fields and hands them to ``complete_record`` (a warm start makes thousands of
    these, most never read). A record is a ``PluginRecord`` from the start."""
    cls = type("PendingRecord", (_PendingRecord,), {"__slots__": (), "_fill": staticmethod(fill)})
    new = object.__new__
    records: dict[str, PluginRecord] = {}
    for name in names:
        record: PluginRecord = new(cls)
        record.name = name
        records[name] = record
    return records


def is_pending(record: PluginRecord) -> bool:
    """Whether ``record`` is still to be built (``pending_records``)."""
    return isinstance(record, _PendingRecord)


def complete_record(record: PluginRecord, fields: Mapping[str, Any]) -> None:
    """Complete a pending record with ``fields`` (keeping what was assigned before)."""
    own = record.__dict__
    for key, value in fields.items():
        own.setdefault(key, value)
    record.__class__ = PluginRecord


def needs_eager_activation(record: PluginRecord) -> bool:
    """Whether a plugin must be active from the start even with lazy activation: only
    tools can be activated on demand."""
    plugin = record.plugin
    known = plugin._known if plugin is not None else None
    if known is not None:  # a warm start remembered it (clawhost.host.warmstart)
        return known[1]
    manifest = record.manifest
    if manifest is None:
        return True
    capabilities = manifest.capabilities
    return (
        bool(capabilities.channels or capabilities.pipeline_stages or capabilities.providers)
        or capabilities.is_empty()
    )


def retry_resolution_failures(
    records: Mapping[str, PluginRecord], *, exclude: Collection[str] = ()
) -> list[PluginRecord]:
    """Put back to DISCOVERED the plugins that failed to resolve (a missing or disabled
    dependency, say), so the next ``resolve`` tries them again; returns them."""
    retried = []
    for name, record in records.items():
        failure = record.failure
        if (
            name not in exclude
            and record.state is PluginState.FAILED
            and failure is not None
            and failure.stage in ("resolve", "activate")
            and isinstance(failure.error, ResolutionError)
        ):
            record.move(PluginState.DISCOVERED)
            retried.append(record)
    return retried
