"""Daemon threads that run synchronous plugin code off the event loop.

Not anyio's worker threads: those share one 40-token limiter (a few stuck plugin calls
would starve every other ``to_thread`` user) and are not daemon threads (a plugin stuck in
a blocking call would keep the process from exiting). Here a thread whose job overran its
deadline is simply not reused until the job returns; a new thread serves the next call.
Idle threads exit after a while.

A burst of calls (a start-up level's ``activate`` hooks) is handed over at once
(``submit_many``): idle threads take one each, the rest wait in a backlog that finishing
threads work through, so a thousand quick hooks need a few threads rather than a
thousand. A backlog that makes no progress (its threads are blocked in their calls) gets
more threads, twice as many at each stalled look (``STALL_SECONDS``), so calls that block
still overlap.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
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

__all__ = ["Job", "background_calls", "submit", "submit_many"]

logger = logging.getLogger("clawhost.limits")

#: Seconds an idle worker thread waits for work before it exits.
IDLE_SECONDS = 30.0
#: How often a waiting backlog is looked at: when no call of it started since the last
#: look, more threads are started for it.
STALL_SECONDS = 0.002

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
                job: Job | None
                try:
                    job = self.jobs.get(timeout=IDLE_SECONDS)
                except Empty:
                    if _retire(self):
                        return
                    continue
                # A late interrupt that missed its claim has nothing left to stop.
                while job is not None:
                    with contextlib.suppress(Interrupt):
                        job.run(slot)
                    job = _next_or_idle(self)
        finally:
            forget_slot()


_idle: list[_Worker] = []
_pool_lock = threading.Lock()
#: Calls handed over by ``submit_many`` that no thread has taken yet, oldest first.
_backlog: deque[Job] = deque()
_taken = 0  # calls taken from the backlog so far (the minder's measure of progress)
_minding = False


def _next_or_idle(worker: _Worker) -> Job | None:
    """The next call of the backlog for a thread that finished one, or ``None`` (and the
    thread is idle)."""
    global _taken
    with _pool_lock:
        if _backlog:
            _taken += 1
            return _backlog.popleft()
        _idle.append(worker)
        return None


def _mind_backlog() -> None:
    """Until the backlog is empty: start more threads for it when it has stalled."""
    global _minding
    enter_scope(None)
    seen, stalled = -1, 0
    while True:
        time.sleep(STALL_SECONDS)
        with _pool_lock:
            if not _backlog:
                _minding = False
                return
            if _taken != seen:
                seen, stalled = _taken, 0
                continue
            stalled += 1
            jobs = [_backlog.popleft() for _ in range(min(len(_backlog), 1 << (stalled - 1)))]
        for job in jobs:
            _start_worker(job)


def _retire(worker: _Worker) -> bool:
    with _pool_lock:
        if worker in _idle:
            _idle.remove(worker)
            return True
        return False  # just handed a job: keep going


def _start_worker(job: Job) -> None:
    worker = _Worker()
    worker.start()
    worker.jobs.put(job)


def submit(job: Job) -> None:
    """Run ``job`` on an idle worker thread, or on a new one."""
    with _pool_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        _start_worker(job)
    else:
        worker.jobs.put(job)


def submit_many(jobs: Iterable[Job]) -> None:
    """Run ``jobs``, a burst of calls: one each on the idle threads, the rest in turn on
    the threads as they finish (with more threads when none finishes for a while)."""
    global _minding
    handed: list[tuple[_Worker, Job]] = []
    start: Job | None = None
    with _pool_lock:
        for job in jobs:
            if _idle:
                handed.append((_idle.pop(), job))
            elif not handed and start is None:
                start = job  # no thread at all is free: one new thread begins the backlog
            else:
                _backlog.append(job)
        mind = bool(_backlog) and not _minding
        _minding = _minding or mind
    for worker, job in handed:
        worker.jobs.put(job)
    if start is not None:
        _start_worker(start)
    if mind:
        threading.Thread(target=_mind_backlog, name="clawhost-backlog", daemon=True).start()
