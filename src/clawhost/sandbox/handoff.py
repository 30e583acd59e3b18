"""An asyncio loop's traffic with the worker threads, in bursts.

Sync plugin calls made during one pass of the event loop are handed to the worker
threads together at the end of the pass (``clawhost.sandbox.workers.submit_many``): when a
start-up level's plugins are imported on the loop and call their sync ``activate`` hooks,
the hooks run after the imports of that pass instead of each fighting the loop for the
GIL from the middle of the next import. When plugin code keeps the loop from ending its
pass (an import that hangs until its deadline), a helper thread hands the calls over
anyway: once the loop has been in one plugin call for ``STUCK_SECONDS``, and in any
case when a call has waited a tenth of its time limit, or ``LATE_SECONDS``.

Finished calls wake the loop once for all that finish before it gets to them, instead of
a self-pipe write and a loop pass each; the caller waits on a bare future with a timer
(``Finish``) rather than an event inside a cancel scope.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable

from clawhost.sandbox.scope import enter_scope
from clawhost.sandbox.watchdog import Slot, current_slot
from clawhost.sandbox.workers import Job, submit_many

__all__ = ["LATE_SECONDS", "STUCK_SECONDS", "Finish", "LoopHandoff", "loop_handoff"]

#: How often the helper looks at a loop with calls waiting, and how long the loop may
#: run one plugin call (an import, an inline handler) before they are handed over.
STUCK_SECONDS = 0.005
#: The longest a call waits to be handed over when the event loop does not end its pass
#: (a call with a time limit waits a tenth of it at most, if that is less).
LATE_SECONDS = 0.5


class LoopHandoff:
    """One asyncio loop's calls to hand over and finished calls to deliver."""

    __slots__ = (
        "__weakref__",
        "_loop",
        "finished",
        "hand_by",
        "lock",
        "pending",
        "seen",
        "slot",
        "waking",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, slot: Slot) -> None:
        # Weakly: the registry's key is the loop, and a value holding it would keep every
        # loop ever run (and its handoff) alive.
        self._loop = weakref.ref(loop)
        self.slot = slot  # the loop thread's watchdog slot: which plugin call it is in
        self.lock = threading.Lock()
        self.pending: list[Job] = []
        self.hand_by = 0.0  # when the waiting calls are to be handed over at the latest
        self.seen: object = None  # the loop's plugin call at the helper's last look
        self.finished: deque[Callable[[], object]] = deque()
        self.waking = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (alive: it is running whenever this is asked)."""
        loop = self._loop()
        assert loop is not None
        return loop

    def submit(self, job: Job) -> None:
        """Hand ``job`` to a worker thread at the end of this pass of the loop."""
        now = time.monotonic()
        wait = LATE_SECONDS if job.record is None else min(LATE_SECONDS, (job.record - now) / 10)
        with self.lock:
            first = not self.pending
            self.pending.append(job)
            self.hand_by = now + wait if first else min(self.hand_by, now + wait)
        if first:
            # In a fresh context: the threads started there are the host's, whatever
            # plugin's scope the first call of the pass was made in.
            self.loop.call_soon(self.flush, context=contextvars.Context())
            _late.set()

    def flush(self) -> None:
        """Hand every waiting call over now (on the loop, or from the late helper)."""
        with self.lock:
            jobs, self.pending = self.pending, []
        if jobs:
            submit_many(jobs)

    def overdue(self, now: float) -> bool:
        """Whether the waiting calls are to be handed over by the helper: the loop has
        been in one plugin call since the last look, or one has waited long enough."""
        slot = self.slot
        running = slot.armed if slot.step is None else slot.step
        stuck = running is not None and running is self.seen
        self.seen = running
        return stuck or now >= self.hand_by

    def on_done(self, callback: Callable[[], object]) -> None:
        """From a worker thread: run ``callback`` on the loop soon."""
        self.finished.append(callback)
        # Read after the append: a delivery that cleared the flag before the append is
        # followed by the one scheduled here; one that has not cleared it yet sees it.
        if not self.waking:
            self.waking = True
            loop = self._loop()
            if loop is not None:  # gone: nobody waits for the call any more
                loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        self.waking = False
        finished = self.finished
        while finished:
            finished.popleft()()


class Finish:
    """The loop's side of one call handed over: whether it has finished, and a wait for it
    with a time limit. Cancelling the waiting task ends the wait (``CancelledError``)."""

    __slots__ = ("finished", "future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.finished = False
        self.future: asyncio.Future[None] | None = None

    def set(self) -> None:
        """On the loop: the call has finished."""
        self.finished = True
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self, timeout: float | None) -> bool:  # noqa: ASYNC109 (a timer, not a cancel scope: cheaper)
        """Wait until the call has finished, for at most ``timeout`` seconds; whether it has."""
        if self.finished:
            return True
        future = self.future = self.loop.create_future()
        timer = None if timeout is None else self.loop.call_later(timeout, _wake, future)
        try:
            await future
        finally:
            self.future = None
            if timer is not None:
                timer.cancel()
        return self.finished


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_handoffs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHandoff]
_handoffs = weakref.WeakKeyDictionary()
_handoffs_lock = threading.Lock()
_late = threading.Event()
_helper: threading.Thread | None = None


def loop_handoff() -> LoopHandoff | None:
    """The running asyncio loop's ``LoopHandoff`` (``None`` on trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    handoff = _handoffs.get(loop)
    if handoff is None:
        handoff = _new_handoff(loop)
    return handoff


def _new_handoff(loop: asyncio.AbstractEventLoop) -> LoopHandoff:
    global _helper
    with _handoffs_lock:
        handoff = _handoffs.get(loop)
        if handoff is None:
            handoff = _handoffs[loop] = LoopHandoff(loop, current_slot())
        if _helper is None:
            _helper = threading.Thread(target=_hand_over_late, name="clawhost-handoff", daemon=True)
            _helper.start()
    return handoff


def _hand_over_late() -> None:
    """The helper thread: hands over the calls of a loop that is stuck in plugin code."""
    enter_scope(None)  # host code, whatever scope the first loop's caller was in
    while True:
        _late.wait()
        time.sleep(STUCK_SECONDS)
        with _handoffs_lock:
            waiting = [handoff for handoff in _handoffs.values() if handoff.pending]
        if not waiting:
            _late.clear()
            # A call made just before the clear set it again or is seen here.
            with _handoffs_lock:
                waiting = [handoff for handoff in _handoffs.values() if handoff.pending]
            if waiting:
                _late.set()
            continue
        now = time.monotonic()
        for handoff in waiting:
            if handoff.overdue(now):
                handoff.flush()
