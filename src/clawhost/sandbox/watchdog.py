"""Stopping plugin code that runs past its deadline without giving control back.

Every thread that runs plugin code under a deadline has a ``Slot``. Arming a slot is an
attribute write (``slot.armed = record``), cheap enough to do around every step of a
plugin coroutine and every event handler; a daemon thread polls the slots and, when an
armed record's deadline has passed, raises ``Interrupt`` in that thread with
``PyThreadState_SetAsyncExc`` (or, opted in, with a signal to the main thread, which also
breaks blocking system calls). The exception fires at the thread's next bytecode, so it
stops busy loops, but not a thread blocked inside C code until that call returns.

An injected exception must never land in code other than the call it was meant for. The
protocol, all under the slot's lock on the firing side:

* the firer sets ``slot.pending = record`` *before* checking ``slot.armed is record``, and
  injects only if it still is;
* the owning thread disarms (``slot.armed = previous``) and *then* reads
  ``slot.pending``; if it is set, ``claim`` takes the lock (so a firer that is half-way
  is waited for), cancels an exception not yet delivered, and clears it.

With the GIL ordering these steps, either the firer sees the slot disarmed and backs out,
or the owner sees the pending record and settles it before leaving clawhost's code. Every
call clawhost makes between disarming and claiming sits inside ``except Interrupt``.

**Steps.** Event dispatch calls many handlers in a row, each under its own limit, and
reading the clock for each would cost more than a cheap handler. So a broadcast arms one
record for all of them (``slot.stepped``, with no deadline of its own) and marks each
handler as a *step*: ``slot.limit = its timeout; slot.step = token`` before, and
``slot.step = None`` after, then the usual check of ``slot.pending``. The watchdog times
each step from when it first sees it (so it is late by up to two polls, never early) and
fires when that step has run past its limit: the same protocol, with the step compared too
(``slot.step is step``), so an interrupt meant for one handler never lands in the next.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from clawhost.sandbox.permissions import enter_scope

__all__ = [
    "POLL_INTERVAL",
    "Deadline",
    "Interrupt",
    "Slot",
    "claim",
    "current_slot",
    "disable_signal_interrupts",
    "enable_signal_interrupts",
    "fire",
    "local_slots",
    "signal_interrupts",
]

#: How often the watchdog looks at armed slots (seconds): the lateness it adds.
POLL_INTERVAL = 0.01
# After a first interrupt, plugin code that swallowed it is interrupted again, backing off.
_FIRST_REFIRE = 0.05
_MAX_REFIRE = 1.0

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
logger = logging.getLogger("clawhost.watchdog")


class Interrupt(BaseException):
    """Raised into a thread whose plugin code overran its deadline; private to clawhost.

    A ``BaseException``, so ``except Exception`` in plugin code does not swallow it.
    """


#: One call's deadline in ``time.monotonic()`` seconds. Each call computes its own float
#: object, and the protocol tells calls apart by identity (``slot.armed is record``): a
#: fresh float costs nothing, where an object with an ``__init__`` costs 200 ns a call.
Deadline = float


class Slot:
    """The watch state of one thread: which deadline its running plugin code has."""

    __slots__ = (
        "armed",
        "c_ident",
        "fired",
        "fired_step",
        "ident",
        "limit",
        "lock",
        "main",
        "next_fire",
        "pending",
        "refire",
        "seen_at",
        "seen_record",
        "seen_step",
        "step",
        "stepped",
    )

    def __init__(self) -> None:
        self.ident = threading.get_ident()
        self.c_ident = ctypes.c_ulong(self.ident)
        self.main = threading.current_thread() is threading.main_thread()
        self.armed: Deadline | None = None
        self.pending: Deadline | None = None
        self.lock = threading.Lock()
        # The watchdog's own state: the record it last fired, and when to fire it again.
        self.fired: Deadline | None = None
        self.next_fire = 0.0
        self.refire = _FIRST_REFIRE
        # Steps (see the module docstring): the record of the broadcast in progress, the
        # step running now and its limit; the watchdog's note of the step it last saw.
        self.stepped: Deadline | None = None
        self.step: object | None = None
        self.limit = 0.0
        self.seen_record: Deadline | None = None
        self.seen_step: object | None = None
        self.seen_at = 0.0
        self.fired_step: object | None = None


_slots: dict[int, Slot] = {}
#: Per-thread ``slot`` attribute, read directly on hot paths (``current_slot`` creates it).
local_slots = threading.local()
_watchdog: threading.Thread | None = None
_watchdog_lock = threading.Lock()
_signal_number: int | None = None
_previous_handler: Callable[[int, FrameType | None], Any] | int | None = None


def current_slot() -> Slot:
    """The calling thread's slot, created (and the watchdog started) on first use."""
    try:
        slot: Slot = local_slots.slot
    except AttributeError:
        slot = local_slots.slot = Slot()
        _slots[slot.ident] = slot
        _ensure_watchdog()
    return slot


def forget_slot() -> None:
    """Stop watching the calling thread (a worker thread that is exiting)."""
    slot: Slot | None = getattr(local_slots, "slot", None)
    if slot is not None:
        ident = slot.ident
        if _slots.get(ident) is slot:
            del _slots[ident]


def fire(
    slot: Slot, record: Deadline, now: float | None = None, step: object | None = None
) -> bool:
    """Interrupt ``slot``'s thread if ``record`` (and ``step``, when given) is still armed
    there; ``True`` if so."""
    with slot.lock:
        unclaimed = slot.pending
        slot.pending = record  # before the check: see the module docstring
        if slot.armed is not record or (step is not None and slot.step is not step):
            slot.pending = unclaimed
            return False
        if slot.fired is not record or slot.fired_step is not step:
            slot.fired, slot.fired_step, slot.refire = record, step, _FIRST_REFIRE
        now = time.monotonic() if now is None else now
        slot.next_fire = now + slot.refire
        slot.refire = min(slot.refire * 2, _MAX_REFIRE)
        if slot.main and _signal_number is not None:
            signal.pthread_kill(slot.ident, _signal_number)
        else:
            _set_async_exc(slot.c_ident, ctypes.py_object(Interrupt))
        return True


def claim(slot: Slot, record: Deadline | None) -> Deadline | None:
    """Settle a pending interrupt in the owning thread, after disarming; return its record.

    The interrupt is cleared (and an exception not yet delivered cancelled) when it was
    ``record``'s or its record is no longer armed; an enclosing call's interrupt is left
    for that call. Call it as ``try: claim(...) except Interrupt: claim(...)``: the one
    exception that may be delivered meanwhile is raised inside the first call.
    """
    with slot.lock:
        owner = slot.pending
        if owner is not None and (owner is record or slot.armed is not owner):
            _set_async_exc(slot.c_ident, None)  # NULL: cancel an undelivered exception
            slot.pending = None
        return owner


def _on_signal(signum: int, frame: FrameType | None) -> None:
    slot = _slots.get(threading.get_ident())
    # A late signal (the call already ended) finds nothing armed and is ignored.
    if slot is not None and slot.pending is not None and slot.pending is slot.armed:
        raise Interrupt


def enable_signal_interrupts(signum: int | None = None) -> None:
    """Also break blocking calls (``time.sleep``, socket reads) on the main thread.

    Opt-in: the watchdog then interrupts plugin code running on the main thread (the
    event loop's, usually) with ``signum`` (default ``SIGUSR2``) instead of an
    asynchronous exception. The system call returns with EINTR, Python runs the handler,
    and the handler raises. Call from the main thread; the signal must be otherwise unused
    (``ValueError`` if it already has a handler). C code that retries on EINTR without
    running Python's signal handlers is still not interrupted. POSIX only.
    """
    global _signal_number, _previous_handler
    if not hasattr(signal, "pthread_kill"):
        raise RuntimeError("signal interrupts need POSIX signals (pthread_kill)")
    signum = signal.SIGUSR2 if signum is None else signum
    if _signal_number == signum:
        return
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("enable_signal_interrupts() must be called from the main thread")
    current = signal.getsignal(signum)
    if current not in (signal.SIG_DFL, signal.SIG_IGN, None):
        raise ValueError(f"signal {signum} already has a handler ({current!r}); pick another")
    disable_signal_interrupts()
    _previous_handler = signal.signal(signum, _on_signal)
    _signal_number = signum


def disable_signal_interrupts() -> None:
    """Go back to asynchronous exceptions only; restore the signal's previous handler."""
    global _signal_number, _previous_handler
    if _signal_number is None:
        return
    signal.signal(_signal_number, _previous_handler or signal.SIG_DFL)
    _signal_number = _previous_handler = None


def signal_interrupts() -> int | None:
    """The signal used to interrupt the main thread, or ``None`` when not enabled."""
    return _signal_number


def _ensure_watchdog() -> None:
    global _watchdog
    if _watchdog is not None:
        return
    with _watchdog_lock:
        if _watchdog is None:
            thread = threading.Thread(target=_watch, name="clawhost-watchdog", daemon=True)
            thread.start()
            _watchdog = thread


def _watch() -> None:
    enter_scope(None)  # host code, whatever context started this thread
    wake = time.monotonic()
    while True:
        # Poll, but wake exactly at a deadline that is due sooner than the next poll.
        time.sleep(max(wake - time.monotonic(), 0.0))
        now = time.monotonic()
        wake = now + POLL_INTERVAL
        for slot in list(_slots.values()):
            record = slot.armed
            if record is None:
                continue
            step = None
            if record is slot.stepped:  # a broadcast: time the handler running now
                step = slot.step
                if step is None:
                    continue
                if step is not slot.seen_step or record is not slot.seen_record:
                    slot.seen_step, slot.seen_record, slot.seen_at = step, record, now
                fired = slot.fired is record and slot.fired_step is step
                due = slot.next_fire if fired else slot.seen_at + slot.limit
            else:
                due = slot.next_fire if slot.fired is record else record
            if now >= due:
                try:
                    fire(slot, record, now, step)
                except Exception:  # the watchdog must outlive any one failure
                    logger.exception("could not interrupt thread %d", slot.ident)
                due = slot.next_fire
            wake = min(wake, due)
