"""One worker process, from the host's side: spawn, handshake, requests, kill and reap.

The worker (``python -m clawhost.worker.child``) is started with ``anyio.open_process`` in a
session of its own, so the host's terminal signals never reach it and killing its
process group also kills whatever it started. Requests go down its stdin and replies
come up its stdout, one JSON object per line (``_wire``). Its stderr is a separate pipe
read by a daemon thread of the host, which logs every line under
``clawhost.plugin.<name>``: a worker writing lots of output never blocks on a full pipe,
whether or not a call is waiting.

Replies are read by whichever waiting call gets there first (one reader at a time; it
hands each reply to its caller and wakes the others), so no background task is needed
and a worker needs no task group of the host's to live in. Reads are cancellation-safe:
a call that gives up leaves the stream intact for the next reader.

Every way out reaps the process: ``close`` (end of input, then SIGTERM, then SIGKILL),
``kill`` (SIGKILL at once), and the end of its output (it died). A process is always
waited for, its pipes are closed, and its process group is killed last, so nothing it
started outlives it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc

from clawhost.errors import PluginTimeout, WorkerDied
from clawhost.sandbox.limits import loop_notifier
from clawhost.sandbox.permissions import sandbox_scope
from clawhost.worker.wire import MAX_LINE, decode, decode_error, encode

__all__ = ["WorkerProcess", "worker_command", "worker_environment"]

logger = logging.getLogger("clawhost.isolation")

#: After the end of its output, how long a worker may take to exit before it is killed.
EXIT_GRACE = 1.0
#: How long the host waits for the log thread once the worker is reaped.
LOG_DRAIN = 2.0
_LOG_MARK = "\x1e"  # childpipe.LOG_MARK; not imported, to keep the worker out of the host
# What a worker past its RLIMIT_CPU dies of (the default action of SIGXCPU).
_SIGXCPU = getattr(signal, "SIGXCPU", 24)


def worker_command() -> list[str]:
    """The command line of a worker process."""
    return [sys.executable, "-m", "clawhost.worker.child"]


def worker_environment() -> dict[str, str]:
    """The host's environment, with what a worker needs on top.

    ``PYTHONPATH`` starts with the folder holding ``clawhost`` (the start message gives
    the worker the host's whole ``sys.path``, but it must find ``clawhost`` to read it).
    ``MALLOC_ARENA_MAX=1``: each glibc malloc arena reserves 64 MiB of address space per
    thread, which would count against ``RLIMIT_AS`` without ever being used.
    ``PYTHONFAULTHANDLER``: a crash dumps the Python tracebacks into the host's log.
    """
    environment = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_root, *filter(None, [environment.get("PYTHONPATH")])]
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["MALLOC_ARENA_MAX"] = "1"
    environment["PYTHONFAULTHANDLER"] = "1"
    return environment


def _log_lines(fd: int, plugin: str) -> None:
    """Log every stderr line of a worker until its end (a daemon thread's body)."""
    base = f"clawhost.plugin.{plugin}"
    plain = logging.getLogger(base)
    with open(fd, "rb", closefd=True) as stream:
        while raw := stream.readline(1 << 20):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith(_LOG_MARK):
                try:
                    record = json.loads(line[1:])
                    name = str(record["name"])
                    level, message = int(record["level"]), str(record["message"])
                except (ValueError, KeyError, TypeError):
                    plain.info("%s", line[1:])
                    continue
                inside = name == base or name.startswith(base + ".")
                logging.getLogger(name if inside else f"{base}.{name}").log(level, "%s", message)
            else:
                plain.info("%s", line)


def _watch_exit(
    pid: int, notify: Callable[[Callable[[], object]], object], then: Callable[[], object]
) -> None:
    """Wait (in a daemon thread) until process ``pid`` exits, then run ``then`` on the event
    loop. ``WNOWAIT`` leaves the exit status for whoever reaps the process."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody to tell
        notify(then)


def _cpu_reason(cpu_limit: float | None) -> str:
    """Why a worker died of SIGXCPU: the plugin used up its CPU time."""
    if cpu_limit is None:
        return "it exceeded its CPU limit (RLIMIT_CPU)"
    return f"it exceeded its CPU limit, max_cpu_time_secs ({cpu_limit:g}s of CPU)"


class _Garbled(Exception):
    """The worker wrote something that is not the protocol."""


class _Pending:
    """One request waiting for its reply."""

    __slots__ = ("done", "operation", "reply")

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.done = False
        self.reply: dict[str, Any] | None = None


class WorkerProcess:
    """One running worker process and the requests in flight to it."""

    def __init__(self, plugin: str, process: anyio.abc.Process, log: threading.Thread) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.plugin = plugin
        self.process = process
        self.pid = process.pid
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._log = log
        self._buffer = bytearray()
        self._searched = 0  # the buffer's first bytes already known to hold no newline
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self._reading = False
        self._changed = anyio.Event()
        self._send_lock = anyio.Lock()
        self._reaped = False
        self._reaping: anyio.Event | None = None
        #: Why the host killed it (or ``None``), once it is gone.
        self.reason: str | None = None
        #: Its exit status once reaped: negative for a signal.
        self.returncode: int | None = None
        #: The limits the worker applied to itself (from its ``ready`` message).
        self.limits: dict[str, Any] = {}
        #: Its ``max_cpu_time_secs``, to say so when it dies of SIGXCPU (``RLIMIT_CPU``).
        self.cpu_limit: float | None = None
        #: Called on the event loop once the process has exited, whatever ended it.
        self.on_exit: Callable[[WorkerProcess], object] | None = None
        #: Called with each request the worker sends the host (``{"rid": n, ...}``, read
        #: while a call waits); answer with ``answer``.
        self.on_request: Callable[[dict[str, Any]], object] | None = None

    def __repr__(self) -> str:
        state = "running" if self.alive else f"gone ({self.returncode})"
        return f"<WorkerProcess {self.plugin} pid {self.pid} {state}>"

    @property
    def alive(self) -> bool:
        """Whether the process may still answer (not reaped, not known to have exited)."""
        return not self._reaped and self.process.returncode is None

    @property
    def reaped(self) -> bool:
        """Whether the process is over and done with: waited for, pipes closed."""
        return self._reaped

    def died(self, operation: str | None) -> WorkerDied:
        """The error for a call that met this worker gone (``None``: between calls)."""
        returncode = self.returncode if self._reaped else self.process.returncode
        return WorkerDied(self.plugin, operation, self.pid, returncode, self.reason)

    # -- starting ---------------------------------------------------------------------------

    @classmethod
    async def spawn(
        cls,
        plugin: str,
        start: dict[str, Any],
        *,
        startup_timeout: float,
        limit: float | None,
        cpu_limit: float | None = None,
    ) -> tuple[WorkerProcess, dict[str, Any]]:
        """Start a worker and run the handshake; returns it and what the plugin registered.

        The interpreter gets ``startup_timeout`` seconds to start and apply its limits,
        then the plugin ``limit`` seconds (wall-clock) to import and as many to activate,
        as it would in-process. ``cpu_limit`` is the ``max_cpu_time_secs`` the worker
        applies itself (from ``start``); it is only used to explain a death by SIGXCPU.
        On any failure the process is reaped before the error propagates: ``WorkerDied``
        (with the exit status) when it died, ``PluginTimeout``, or the plugin's own error
        rebuilt from the worker's report.
        """
        read_fd, write_fd = os.pipe()
        try:
            with sandbox_scope(None):  # host machinery, whatever scope the caller is in
                process = await anyio.open_process(
                    worker_command(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=write_fd,
                    env=worker_environment(),
                    start_new_session=True,
                )
                log = threading.Thread(
                    target=_log_lines,
                    args=(read_fd, plugin),
                    name=f"clawhost-worker-log-{plugin}",
                    daemon=True,
                )
                log.start()
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)  # the worker holds the only write end now
        worker = cls(plugin, process, log)
        worker.cpu_limit = cpu_limit
        threading.Thread(
            target=_watch_exit,
            args=(process.pid, loop_notifier(), worker._exited),
            name=f"clawhost-worker-exit-{plugin}",
            daemon=True,
        ).start()
        try:
            await worker._send(start, "start")
            ready = await worker._expect("ready", "start", startup_timeout)
            worker.limits = dict(ready.get("limits") or {})
            await worker._expect("imported", "import", limit)
            started = await worker._expect("started", "activate", limit)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await worker.kill(None)
            raise
        registrations: dict[str, Any] = started["registrations"]
        return worker, registrations

    async def _expect(self, op: str, operation: str, limit: float | None) -> dict[str, Any]:
        with anyio.move_on_after(limit) as scope:
            try:
                message = await self._receive()
            except _Garbled as exc:
                await self.kill(f"it broke the protocol: {exc}")
                raise self.died(operation) from None
        if scope.cancelled_caught:
            assert limit is not None
            await self.kill(f"{operation} did not finish within {limit:g}s")
            raise PluginTimeout(self.plugin, operation, limit)
        if message is None:
            await self._reap(operation=operation)
            raise self.died(operation)
        if message.get("op") == "failed":
            raise decode_error(message.get("error") or {}, self.plugin)
        if message.get("op") != op:
            await self.kill(f"it answered {message.get('op')!r} where {op!r} was due")
            raise self.died(operation)
        return message

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self, op: str, fields: dict[str, Any], *, operation: str, limit: float | None
    ) -> Any:
        """Send a request and return its result, or raise the error the worker reported.

        At ``limit`` seconds the worker is killed (it may be running anything, holding anything)
        and ``PluginTimeout`` is raised; every other call in flight fails with
        ``WorkerDied``. A caller cancelled for another reason only asks the worker to
        cancel this request. A worker found dead raises ``WorkerDied``.
        """
        if not self.alive:
            await self._reap(operation=operation)
            raise self.died(operation)
        request_id = next(self._ids)
        pending = _Pending(operation)
        self._pending[request_id] = pending
        try:
            with anyio.move_on_after(limit) as scope:
                await self._send({"id": request_id, "op": op, **fields}, operation)
                await self._wait(pending)
        except anyio.get_cancelled_exc_class():
            if not pending.done and self.alive:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await self._send({"op": "cancel", "id": request_id}, operation, quiet=True)
            raise
        finally:
            self._pending.pop(request_id, None)
        if scope.cancelled_caught and not pending.done:
            assert limit is not None
            with anyio.CancelScope(shield=True):
                await self.kill(f"{operation} overran its deadline of {limit:g}s")
            raise PluginTimeout(self.plugin, operation, limit, interrupted=True)
        reply = pending.reply
        if reply is None:  # woken by its death
            raise self.died(operation)
        if reply.get("ok"):
            return reply.get("result")
        raise decode_error(reply.get("error") or {}, self.plugin)

    async def _send(self, message: dict[str, Any], operation: str, *, quiet: bool = False) -> None:
        data = encode(message)
        if len(data) > MAX_LINE:  # the worker would refuse the line and end: fail this call
            raise ValueError(
                f"the arguments of {operation} were {len(data) / (1 << 20):.1f} MiB as JSON, "
                f"above the limit of {MAX_LINE >> 20} MiB for one request to a worker process"
            )
        async with self._send_lock:
            try:
                await self._stdin.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                if quiet:
                    return
                await self._reap(operation=operation)
                raise self.died(operation) from None

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    async def _wait(self, pending: _Pending) -> None:
        """Wait for ``pending``'s reply, reading for everyone while nobody else is."""
        while not pending.done:
            if self._reaped:
                return
            if self._reading:
                await self._changed.wait()
                continue
            self._reading = True
            try:
                message = await self._receive()
            except _Garbled as exc:
                message = None
                await self.kill(f"it broke the protocol: {exc}")
            finally:
                self._reading = False
                self._notify()
            if message is None:
                await self._reap(operation=pending.operation)
            else:
                self._deliver(message)

    async def answer(self, reply: dict[str, Any]) -> None:
        """Send the reply to one of the worker's requests (a worker gone by then is not an
        error: nobody waits for the reply)."""
        if self.alive:
            await self._send(reply, "a reply", quiet=True)

    def _deliver(self, message: dict[str, Any]) -> None:
        if "rid" in message:  # the worker asks the host something
            if self.on_request is not None:
                self.on_request(message)
            return
        request_id = message.get("id")
        pending = self._pending.get(request_id) if isinstance(request_id, int) else None
        if pending is not None:
            pending.reply, pending.done = message, True
            self._notify()
        elif message.get("op") == "failed":
            logger.error("Plugin %r: its worker failed: %s", self.plugin, message.get("error"))
        # Otherwise a late reply to a request its caller gave up on: dropped.

    async def _receive(self) -> dict[str, Any] | None:
        """The next message from the worker; ``None`` at the end of its output."""
        while True:
            index = self._buffer.find(b"\n", self._searched)  # only the new bytes: linear
            self._searched = 0 if index >= 0 else len(self._buffer)
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 1]
                try:
                    return decode(line)
                except ValueError as exc:
                    raise _Garbled(f"{exc} in {line[:80]!r}") from None
            if len(self._buffer) > MAX_LINE:
                raise _Garbled(f"a line longer than {MAX_LINE} bytes")
            try:
                chunk = await self._stdout.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return None
            self._buffer += chunk

    def _exited(self) -> None:
        if self.on_exit is not None:
            self.on_exit(self)

    # -- ending -----------------------------------------------------------------------------

    def _signal_group(self, number: int) -> None:
        # The worker leads its own process group (start_new_session): this reaches
        # whatever it started too, unless that left the group on purpose.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, number)

    async def kill(self, reason: str | None) -> None:
        """Kill the worker (and its process group) now, and reap it."""
        if self._reaped:
            return
        if reason is not None:
            self.reason = f"the host killed it: {reason}"
            logger.warning(
                "Plugin %r: killing its worker (pid %d): %s", self.plugin, self.pid, reason
            )
        with sandbox_scope(None):
            self._signal_group(signal.SIGKILL)
        await self._reap(grace=0.0, expected=True)

    async def close(self, grace: float) -> None:
        """Stop the worker: end of its input, then SIGTERM after ``grace`` seconds, then
        SIGKILL a second later; always reaped."""
        if self._reaped:
            return
        with anyio.CancelScope(shield=True), sandbox_scope(None):
            with contextlib.suppress(anyio.BrokenResourceError, OSError):
                await self._stdin.aclose()  # the worker exits at the end of its input
            with anyio.move_on_after(grace):
                await self.process.wait()
            if self.process.returncode is None:
                logger.warning(
                    "Plugin %r: worker (pid %d) did not exit within %gs; terminating it",
                    self.plugin,
                    self.pid,
                    grace,
                )
                self._signal_group(signal.SIGTERM)
            await self._reap(grace=1.0, expected=True)

    async def _reap(
        self, *, grace: float = EXIT_GRACE, expected: bool = False, operation: str = "a call"
    ) -> None:
        """Wait for the process to end (SIGKILL after ``grace``), kill what is left of its
        group, close the pipes, and wake every call still waiting.

        Not ``expected`` (it ended by itself): the exit status is logged as an error.
        """
        if self._reaped:
            return
        if self._reaping is not None:  # another call is at it: wait for it to finish
            with anyio.CancelScope(shield=True):
                await self._reaping.wait()
            return
        self._reaping = anyio.Event()
        try:
            with anyio.CancelScope(shield=True), sandbox_scope(None):
                with anyio.move_on_after(grace):
                    await self.process.wait()
                self._signal_group(signal.SIGKILL)
                await self.process.wait()
                self.returncode = self.process.returncode
                if self.returncode == -_SIGXCPU and self.reason is None:
                    self.reason = _cpu_reason(self.cpu_limit)
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await self.process.aclose()
                await anyio.to_thread.run_sync(self._log.join, LOG_DRAIN)
        finally:
            self._reaped = True
            self._reaping.set()
        if not expected:
            logger.error("%s", self.died(operation))
        for pending in self._pending.values():
            pending.done = True
        self._notify()
