"""The worker process's end of the protocol pipe (see ``clawhost.worker.child``).

The protocol moves off fds 0 and 1 before plugin code runs (``Pipe.take_over_stdio``);
replies are framed here so that one too large, or one the worker has no memory left to
describe, fails only its own call; log records go to stderr as structured lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import anyio

from clawhost.errors import ToolArgumentsInvalid
from clawhost.worker.wire import MAX_LINE, decode, encode, encode_error

__all__ = [
    "LOG_MARK",
    "OUT_OF_MEMORY",
    "Pipe",
    "configure_logging",
    "error_data",
    "error_line",
    "fitting",
]

#: Starts a structured log line on stderr (the host re-logs it at its level); any other
#: line (a print, a C library's output, a crash dump) is logged by the host as it is.
LOG_MARK = "\x1e"
_MIB = 1024 * 1024
# Sent when even describing a MemoryError fails for want of memory.
OUT_OF_MEMORY = (
    '{{"id":{},"ok":false,"error":{{"type":"builtins.MemoryError",'
    '"message":"out of memory","args":null}}}}\n'
)


class Pipe:
    """The protocol's two private file descriptors: requests in, replies out."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._in = read_fd
        self._out = write_fd
        self._buffer = bytearray()
        self._searched = 0  # the buffer's first bytes already known to hold no newline
        self._lock: anyio.Lock | None = None

    @classmethod
    def take_over_stdio(cls) -> Pipe:
        """Move the protocol off fds 0 and 1 before plugin code can write to them."""
        read_fd, write_fd = os.dup(0), os.dup(1)  # not inheritable: no child gets them
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        # sys.stdout still writes to fd 1, now the host's log; flush every line so output
        # is not lost when the worker ends with os._exit.
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        return cls(read_fd, write_fd)

    def _take_line(self) -> dict[str, Any] | None:
        index = self._buffer.find(b"\n", self._searched)  # only the new bytes: linear
        if index < 0:
            self._searched = len(self._buffer)
            if len(self._buffer) > MAX_LINE:
                raise ValueError(f"a request longer than {MAX_LINE} bytes")
            return None
        line = bytes(self._buffer[:index])
        del self._buffer[: index + 1]
        self._searched = 0
        return decode(line)

    def read_blocking(self) -> dict[str, Any] | None:
        """The next message, blocking (before the event loop runs); ``None`` at the end."""
        while (message := self._take_line()) is None:
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        return message

    def send_blocking(self, message: dict[str, Any]) -> None:
        """Write one message, blocking (before the event loop runs)."""
        data = memoryview(encode(message))
        while data:
            data = data[os.write(self._out, data) :]

    def make_nonblocking(self) -> None:
        """From here on the event loop waits on the descriptors: a host slow to read
        replies never blocks the loop, so requests and cancellations keep arriving."""
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._lock = anyio.Lock()

    async def receive(self) -> dict[str, Any] | None:
        """The next message; ``None`` when the host closed its end."""
        while (message := self._take_line()) is None:
            await anyio.wait_readable(self._in)
            try:
                chunk = os.read(self._in, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                return None
            self._buffer += chunk
        return message

    async def send(self, message: dict[str, Any]) -> None:
        """Write one message; lines never interleave."""
        await self.send_bytes(encode(message))

    async def send_bytes(self, line: bytes) -> None:
        assert self._lock is not None
        data = memoryview(line)
        async with self._lock:
            while data:
                try:
                    written = os.write(self._out, data)
                except BlockingIOError:
                    await anyio.wait_writable(self._out)
                    continue
                data = data[written:]


class _LogLines(logging.Handler):
    """Log records as structured stderr lines, which the host logs at the same level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            body = {"level": record.levelno, "name": record.name, "message": self.format(record)}
            sys.stderr.write(LOG_MARK + json.dumps(body) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


def error_line(request_id: Any, error: Exception) -> bytes:
    try:
        line = encode({"id": request_id, "ok": False, "error": error_data(error)})
        return fitting(request_id, line, error)
    except MemoryError:
        return OUT_OF_MEMORY.format(json.dumps(request_id)).encode()


def fitting(request_id: Any, line: bytes, error: Exception | None = None) -> bytes:
    """``line``, a reply; or, when it is longer than the protocol allows (``MAX_LINE``,
    which the host would take for a broken worker and kill it, failing every call in
    flight), an error reply saying so: only this call fails, and the worker goes on."""
    if len(line) <= MAX_LINE:
        return line
    what = "result"
    if error is not None:
        text = str(error)
        text = text if len(text) <= 200 else text[:200] + "..."
        what = f"error ({type(error).__qualname__}: {text})"
    size, limit = len(line) / _MIB, MAX_LINE / _MIB
    too_large = ValueError(
        f"the {what} was {size:.1f} MiB as JSON, above the limit of {limit:g} MiB "
        "for one reply from a worker process"
    )
    error_data = encode_error(too_large, with_traceback=False)
    return encode({"id": request_id, "ok": False, "error": error_data})


def error_data(error: Exception) -> dict[str, Any]:
    # Invalid arguments are the caller's business: their problems say it all.
    with_traceback = not isinstance(error, ToolArgumentsInvalid)
    try:
        return encode_error(error, with_traceback=with_traceback)
    except MemoryError:
        return {"type": "builtins.MemoryError", "message": "out of memory", "args": None}


def configure_logging(level: int) -> None:
    handler = _LogLines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)
