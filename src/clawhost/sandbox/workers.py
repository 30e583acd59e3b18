"""Daemon threads that run synchronous plugin code off the event loop.

Not anyio's worker threads: those share one 40-token limiter (a few stuck plugin calls
would starve every other ``to_thread`` user) and are not daemon threads (a plugin stuck in
a blocking call would keep the process from exiting). Here a thread whose job overran its
deadline is simply not reused until the job returns; a new thread serves the next call.
Idle threads exit after a while.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Mapping
from queue import Empty, SimpleQueue
from typing import Any, Literal

from clawhost.sandbox.permissions import SandboxScope, enter_scope
from clawhost.sandbox.watchdog import (
    Deadline,
    Interrupt,
    Slot,
    claim,
    current_slot,
    fire,
    forget_slot,
)

__all__ = ["Job", "background_calls", "submit"]

logger = logging.getLogger("clawhost.limits")

#: Seconds an idle worker thread waits for work before it exits.
IDLE_SECONDS = 30.0

_background: dict[str, int] = {}
_background_lock = threading.Lock()

Outcome = Literal["queued", "running", "ok", "error", "interrupted", "skipped"]


class Job:
    """One call of a synchronous plugin function in a worker thread."""

    __slots__ = (
        "abandoned",
        "args",
        "context",
        "counted",
        "error",
        "fn",
        "kwargs",
        "lock",
        "on_done",
        "operation",
        "outcome",
        "plugin",
        "record",
        "scope",
        "slot",
        "value",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        plugin: str,
        operation: str,
        scope: SandboxScope | None,
        record: Deadline | None,
        on_done: Callable[[], object],
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.plugin = plugin
        self.operation = operation
        self.scope = scope
        self.record = record
        self.on_done = on_done
        # The caller's context (tracing spans and the like) follows the call into the thread.
        self.context = contextvars.copy_context()
        self.lock = threading.Lock()
        self.slot: Slot | None = None
        self.abandoned = False
        self.counted = False
        self.outcome: Outcome = "queued"
        self.value: Any = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        """Whether the plugin function is still executing."""
        return self.outcome == "running"

    def abandon(self) -> None:
        """Give up on the job (timed out or cancelled): interrupt it if it is running."""
        with self.lock:
            self.abandoned = True
            slot = self.slot
        if slot is not None and self.record is not None and self.running:
            fire(slot, self.record)

    def leave_running(self) -> bool:
        """After the grace period: count the job as running on in the background.

        Returns ``False`` when it has stopped after all (nothing is counted then).
        """
        with _background_lock:
            if not self.running:
                return False
            self.counted = True
            _background[self.plugin] = count = _background.get(self.plugin, 0) + 1
        logger.warning(
            "plugin %r: %s could not be interrupted (blocked outside Python code); its "
            "thread runs on in the background (%d such call(s) of this plugin now)",
            self.plugin,
            self.operation,
            count,
        )
        return True

    def _start(self, slot: Slot) -> bool:
        with self.lock:
            if self.abandoned:
                self.outcome = "skipped"
                return False
            self.slot = slot
            self.outcome = "running"
            return True

    def _call(self, slot: Slot) -> None:
        enter_scope(self.scope)
        record = self.record
        try:
            try:
                slot.armed = record  # inside the try: a late start may be fired at once
                value = self.fn(*self.args, **self.kwargs)
            finally:
                slot.armed = None
        except Interrupt:
            outcome: Outcome = "interrupted"
        except BaseException as exc:  # everything goes back to the awaiting call
            self.error, outcome = exc, "error"
        else:
            self.value, outcome = value, "ok"
        if slot.pending is not None:  # fired as it ended: what it ended with stands
            try:
                claim(slot, record)
            except Interrupt:
                claim(slot, record)
        self.outcome = outcome

    def run(self, slot: Slot) -> None:
        """Run in the worker thread: call, record the outcome, wake the awaiting call."""
        if self._start(slot):
            try:
                self.context.run(self._call, slot)
            finally:
                if self.outcome == "running":  # never leave the awaiting call hanging
                    self.outcome = "interrupted"
            with _background_lock:
                counted = self.counted
                if counted:
                    _background[self.plugin] -= 1
                    if not _background[self.plugin]:
                        del _background[self.plugin]
            if counted:
                logger.info(
                    "plugin %r: %s ended in the background (%s)",
                    self.plugin,
                    self.operation,
                    self.outcome,
                )
        # The event loop may be gone: then nobody waits for this job any more.
        with contextlib.suppress(Exception):
            self.on_done()


def background_calls(plugin: str | None = None) -> int:
    """How many timed-out calls (of ``plugin``, or of all) still run in worker threads."""
    with _background_lock:
        return _background.get(plugin, 0) if plugin else sum(_background.values())


class _Worker(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="clawhost-plugin-worker", daemon=True)
        self.jobs: SimpleQueue[Job] = SimpleQueue()

    def run(self) -> None:
        enter_scope(None)  # host code between jobs, whatever context started the thread
        slot = current_slot()
        try:
            while True:
                try:
                    job = self.jobs.get(timeout=IDLE_SECONDS)
                except Empty:
                    if _retire(self):
                        return
                    continue
                # A late interrupt that missed its claim has nothing left to stop.
                with contextlib.suppress(Interrupt):
                    job.run(slot)
                with _pool_lock:
                    _idle.append(self)
        finally:
            forget_slot()


_idle: list[_Worker] = []
_pool_lock = threading.Lock()


def _retire(worker: _Worker) -> bool:
    with _pool_lock:
        if worker in _idle:
            _idle.remove(worker)
            return True
        return False  # just handed a job: keep going


def submit(job: Job) -> None:
    """Run ``job`` on an idle worker thread, or on a new one."""
    with _pool_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker()
        worker.start()
    worker.jobs.put(job)
