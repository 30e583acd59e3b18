"""The limits a worker process puts on itself before and during plugin code.

Memory and core files once, at start-up (``apply_limits``); CPU time at the start of every
call into plugin code (``CpuLimit``); and the kernel's promise to end the worker with the
host (``die_with_host``).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from typing import Any

from clawhost.errors import PermissionDenied
from clawhost.sandbox.permissions import current_scope

__all__ = ["CpuLimit", "apply_limits", "die_with_host"]

_MIB = 1024 * 1024


def _vm_size() -> int:
    """The address space the process has mapped now, in bytes."""
    with open("/proc/self/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def apply_limits(max_memory_mb: int | None) -> dict[str, Any]:
    """Limit this process: no core files, and with ``max_memory_mb`` an address space of
    what is mapped now (the interpreter, clawhost and its dependencies) plus that much.

    Soft and hard limits are set alike, so plugin code cannot raise them again (unless
    the worker runs as root). Returns what was applied, for the host's log.
    """
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied: dict[str, Any] = {"baseline_mb": None, "address_space_mb": None}
    if max_memory_mb:
        baseline = _vm_size()
        limit = baseline + max_memory_mb * _MIB
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        applied = {"baseline_mb": baseline / _MIB, "address_space_mb": limit / _MIB}
    return applied


class CpuLimit:
    """``max_cpu_time_secs`` as the worker's ``RLIMIT_CPU``, renewed for every call.

    ``renew()`` runs (on the event-loop thread, outside any sandbox scope) just before each
    call into plugin code: import, activate, a tool, an event handler, a stage, a health
    check, deactivate, a cleanup. It sets the soft limit to ``ceil(CPU time the process
    has used so far + max_cpu_time_secs)``. Past it the kernel sends SIGXCPU, whose
    default action ends the process (no core file: ``RLIMIT_CORE`` is 0), whatever thread
    is busy and even inside C code; the host then reports the exceeded limit. The limit
    counts the whole process, so threads the plugin leaves running between calls spend
    the budget of the latest call, and are stopped when it is gone. Concurrent calls
    share one budget, counted from the start of the latest.

    The scheme, soft and hard: the hard limit is left as the worker inherited it (normally
    ``RLIM_INFINITY``) and only the soft limit moves. The hard limit can only ever be
    lowered by an unprivileged process, while the process's CPU clock keeps growing from
    call to call: a hard limit of "soft + a few seconds" set for one call would be below
    what the next call needs, and any finite hard limit would in the end kill a healthy
    long-lived worker. What keeps plugin code from raising the soft limit (which any
    process may do, up to the hard limit) is therefore not the kernel but the worker:

    * an audit hook (``_refuse_cpu_limit_changes``) refuses ``resource.setrlimit`` and
      ``resource.prlimit`` of ``RLIMIT_CPU`` with ``PermissionDenied`` while a sandbox
      scope is current, i.e. in plugin code and the threads it started;
    * ``renew()`` also restores SIGXCPU's default action (no audit event covers
      ``signal.signal``), so a plugin that ignored or caught it is bound again from its
      next call on.

    Like the rest of the sandbox this is a guard rail: native code (ctypes, a C extension)
    can raise the soft limit, and a plugin that ignores SIGXCPU is not stopped between
    calls. The host's wall-clock deadline still bounds every call.
    """

    def __init__(self, seconds: float | None) -> None:
        import resource

        #: The budget per call, or ``None`` (no limit: unset or ``inf``).
        self.seconds = seconds if seconds is not None and math.isfinite(seconds) else None
        self._hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        if self.seconds is not None:
            sys.addaudithook(_refuse_cpu_limit_changes)  # can never be removed

    def renew(self) -> None:
        """Give the call about to start ``seconds`` of CPU time, from now."""
        if self.seconds is None:
            return
        import resource

        # RLIMIT_CPU counts whole seconds: the call gets between seconds and seconds + 1.
        soft = math.ceil(time.process_time() + self.seconds)
        if self._hard != resource.RLIM_INFINITY:
            soft = min(soft, self._hard)
        if signal.getsignal(signal.SIGXCPU) != signal.SIG_DFL:
            signal.signal(signal.SIGXCPU, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, self._hard))


def _refuse_cpu_limit_changes(event: str, args: tuple[Any, ...]) -> None:
    """An audit hook: plugin code may not change ``RLIMIT_CPU`` (see ``CpuLimit``)."""
    if not event.startswith("resource."):  # the fast path of every other audit event
        return
    if event == "resource.setrlimit":
        which, limits = args
    elif event == "resource.prlimit":
        _, which, limits = args
    else:
        return
    if limits is None:  # prlimit(pid, resource): a read
        return
    import resource

    scope = current_scope()
    if which == resource.RLIMIT_CPU and scope is not None:
        raise PermissionDenied(
            scope.plugin, "process", "RLIMIT_CPU", "max_cpu_time_secs is the host's to set"
        )


def die_with_host(host_pid: int) -> None:
    """Have the kernel kill this worker when the host dies (Linux), so a host killed
    with SIGKILL leaves no orphan; the end of the request pipe covers the rest."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != host_pid:  # the host died before the line above
        os._exit(0)
