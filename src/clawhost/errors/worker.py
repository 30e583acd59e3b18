"""Errors of process isolation: a worker that died, raised, or cannot host something."""

from __future__ import annotations

from .base import ClawhostError
from .runtime import RegistrationError


class WorkerDied(ClawhostError):
    """A plugin's worker process (``isolation = "process"``) is gone: it exited, crashed,
    ran out of memory or was killed by the host at a deadline.

    ``operation`` is the call that met it gone (``None``: it died between calls);
    ``returncode`` is the process's exit status, negative for a signal (``-9``: SIGKILL),
    ``None`` when unknown; ``reason`` says why the host killed it or gave up on it.
    """

    def __init__(
        self,
        plugin: str,
        operation: str | None,
        pid: int | None,
        returncode: int | None,
        reason: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.operation = operation
        self.pid = pid
        self.returncode = returncode
        self.reason = reason
        if returncode is None:
            how = "is not running"
        elif returncode < 0:
            how = f"was killed by signal {-returncode} ({_signal_name(-returncode)})"
        else:
            how = f"exited with status {returncode}"
        process = f"worker process (pid {pid})" if pid is not None else "worker process"
        message = f"plugin {plugin!r}: its {process} {how}"
        if operation:
            message = f"{message} during {operation}"
        super().__init__(f"{message}; {reason}" if reason else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.plugin, self.operation, self.pid, self.returncode, self.reason),
        )


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class WorkerError(ClawhostError):
    """Plugin code in a worker process raised an exception whose type the host cannot
    rebuild (the plugin's own exception classes): ``type_name`` is its qualified name,
    ``message`` its text, ``remote_traceback`` the traceback as the worker formatted it.

    Builtin exceptions and clawhost's own errors cross the boundary as themselves.
    """

    def __init__(
        self,
        plugin: str,
        type_name: str,
        message: str,
        remote_traceback: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}" if message else type_name)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.type_name, self.message, self.remote_traceback))


class NotIsolatable(RegistrationError):
    """Something that cannot work across a worker process's boundary, from a plugin with
    ``isolation = "process"``: a provider or channel factory (Python objects the host would
    call directly), or an in-memory plugin. ``what`` names it, ``why`` explains."""

    def __init__(self, plugin: str, what: str, why: str) -> None:
        self.plugin = plugin
        self.what = what
        self.why = why
        super().__init__(
            f'plugin {plugin!r} runs in process isolation (isolation = "process"), '
            f"where {what} cannot work: {why}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.what, self.why))
