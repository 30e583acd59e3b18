"""Process isolation, host side: a plugin in a worker process, reached through proxies.

With ``isolation = "process"`` the host never imports the plugin. ``activate_isolated``
starts a worker (``clawhost.worker.process``, ``clawhost.worker.child``) that imports and
activates it under real operating-system limits, then registers, on the plugin's behalf
and through its ``PluginContext`` (so ownership and declared capabilities are checked as
usual):

* a ``RemoteTool`` per tool: the worker's JSON schema, the worker's validation (the real
  pydantic model; ``ToolArgumentsInvalid`` comes back as data), the call over the pipe;
* a proxy per pipeline stage (same name, order and ``on_error``) and per event handler;
* a ``RemoteProvider`` per provider: each public method a coroutine function that runs
  the method in the worker (arguments and results as JSON data, objects as ``Record``s);
* a proxy factory per channel factory, building the channel in the worker and returning
  a ``RemoteChannel`` (``messages()`` without a deadline, ``send()``).

The worker asks the host on the same pipe (``{"rid": n, ...}``): a method of a host
provider (its ``ctx.providers``), or a tool through the tools a provider method was
handed. ``WorkerPlugin`` answers those in background tasks of its own while calls wait.

Limits: every call carries the plugin's wall-clock deadline (``max_wall_time_secs``, or
``max_cpu_time_secs`` when that is unset); a call that overruns fails with
``PluginTimeout`` and the worker is killed (whatever it was doing, in any thread). CPU
time is limited in the worker itself (``RLIMIT_CPU``, renewed per call: see
``clawhost.worker.childlimits.CpuLimit``): a worker past it dies of SIGXCPU, and the call
in flight fails with ``WorkerDied`` saying the plugin exceeded ``max_cpu_time_secs``.

However its worker ends (killed for a deadline, out of CPU time or memory, a crash,
``os._exit``, during a call or between calls), the plugin is marked FAILED with the
reason and its proxies are removed; with ``restart = true`` the host starts it again
later, with a backoff (``clawhost.host.supervision``).

This module holds the host's entry points; ``WorkerPlugin`` is in ``clawhost.worker.plugin``
and the proxies in ``clawhost.worker.remote``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.discovery.discover import SourceKind
from clawhost.errors import NotIsolatable
from clawhost.runtime.loader import Implementation
from clawhost.worker.plugin import STARTUP_TIMEOUT, WorkerPlugin
from clawhost.worker.remote import RemoteProvider, RemoteTool, register_proxies
from clawhost.worker.wire import PROTOCOL, public_methods, to_wire

if TYPE_CHECKING:
    from clawhost.config.host import SandboxConfig
    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.runtime.context import HostContext, PluginContext
    from clawhost.runtime.records import PluginRecord

__all__ = [
    "STARTUP_TIMEOUT",
    "RemoteProvider",
    "RemoteTool",
    "WorkerPlugin",
    "activate_isolated",
    "check_isolatable",
    "deactivate_isolated",
    "register_proxies",
    "start_message",
    "trial_isolated",
]


def check_isolatable(name: str, candidate: DiscoveredPlugin) -> None:
    """Refuse, before starting anything, a plugin that cannot run in a worker process."""
    if candidate.source.kind is SourceKind.MEMORY:
        raise NotIsolatable(
            name,
            "an in-memory plugin",
            "a worker imports a plugin from its entry point, and an object handed to the "
            "host in code has none",
        )


def start_message(
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    sandbox: SandboxConfig,
    *,
    enforce_capabilities: bool,
    host: HostContext | None = None,
) -> dict[str, Any]:
    """What a worker needs to run the plugin: the protocol's ``start`` message.

    ``host_providers`` lists the host's providers (of other plugins) and their methods,
    so the plugin's ``ctx.providers.get(...)`` finds proxies of them in the worker.
    """
    providers = host.providers if host is not None else None
    host_providers = {
        name: public_methods(providers.get(name))
        for name in (providers.names() if providers is not None else ())
        if providers is not None and providers.owner_of(name) != record.name
    }
    permissions = record.permissions
    config = record.config if record.config is not None else {}
    return {
        "op": "start",
        "protocol": PROTOCOL,
        "plugin": record.name,
        "version": str(candidate.version),
        "source": candidate.source.to_dict(),
        "manifest_path": str(candidate.manifest_path),
        "manifest": candidate.manifest.model_dump(mode="json"),
        "enforce_capabilities": enforce_capabilities,
        "config": {
            "values": to_wire(dict(config)),
            "secret_keys": sorted(getattr(config, "secret_keys", ())),
            "sources": dict(getattr(config, "sources", {})),
        },
        "permissions": {
            "filesystem": list(permissions.filesystem),
            "network": [str(rule) for rule in permissions.network],
            "subprocess": permissions.subprocess,
            "readable": list(permissions.readable),
        },
        "max_memory_mb": sandbox.max_memory_mb,
        "max_cpu_time_secs": sandbox.max_cpu_time_secs,
        "sys_path": list(sys.path),
        "host_pid": os.getpid(),
        "host_providers": host_providers,
        "log_level": logging.getLogger(f"clawhost.plugin.{record.name}").getEffectiveLevel(),
    }


def _new_worker(
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    sandbox: SandboxConfig,
    enforce_capabilities: bool,
    *,
    on_death: Callable[[WorkerPlugin, BaseException | None], object] | None = None,
    host: HostContext | None = None,
) -> WorkerPlugin:
    """A worker (not started yet) for ``candidate``, with the plugin's limits."""
    start = start_message(
        record, candidate, sandbox, enforce_capabilities=enforce_capabilities, host=host
    )
    return WorkerPlugin(
        record.name,
        start,
        limit=sandbox.call_deadline(),
        cpu_limit=sandbox.max_cpu_time_secs,
        on_death=on_death,
        host=host,
    )


async def activate_isolated(
    context: PluginContext,
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    *,
    sandbox: SandboxConfig,
    enforce_capabilities: bool,
    on_death: Callable[[WorkerPlugin, BaseException | None], object] | None = None,
) -> WorkerPlugin:
    """Activate ``record``'s plugin in a worker process and register its proxies.

    Call it where the host would import and activate the plugin, after its limits,
    permissions (``record.permissions``) and config (``record.config``) are prepared, with
    the plugin's ``context`` (already ``record.context``). It adds the worker's ``close``
    as a cleanup first, so
    the host's usual rollback (cleanups, then ``remove_owner``) reaps the worker and
    removes the proxies whatever fails. ``record.hooks`` gets ``deactivate`` and
    ``health_check`` implementations that reach the worker, so the host's deactivation
    and health checks work unchanged. ``record.timeout`` and ``record.scope`` are cleared:
    no plugin code runs in the host, and the worker's deadline is enforced by killing it.
    """
    check_isolatable(record.name, candidate)
    worker = _new_worker(
        record, candidate, sandbox, enforce_capabilities, on_death=on_death, host=context.host
    )
    context.add_cleanup(worker.close)
    record.target, record.modules = worker, frozenset()
    record.timeout, record.scope = None, None
    record.hooks = {
        "deactivate": [Implementation("deactivate", worker.stop, ())],
        "health_check": [Implementation("health_check", worker.health, ())],
    }
    await worker.start()
    register_proxies(context, worker)
    return worker


async def trial_isolated(
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    *,
    sandbox: SandboxConfig,
    enforce_capabilities: bool,
    host: HostContext | None = None,
) -> None:
    """Start ``candidate`` (new code on disk) in a worker of its own, activate it, then
    deactivate it and end the worker, while the current worker keeps serving.

    Hot reload in process isolation runs this first: a worker imports from disk, so once
    the old worker is stopped the old code cannot be brought back, and a version that
    fails must fail here, before anything is touched. Raises what starting it raised.
    """
    check_isolatable(record.name, candidate)
    trial = _new_worker(record, candidate, sandbox, enforce_capabilities, host=host)
    try:
        await trial.start()
    finally:
        with anyio.CancelScope(shield=True):
            await trial.stop()


async def deactivate_isolated(worker: WorkerPlugin) -> None:
    """Deactivate the plugin in its worker and reap the worker (``WorkerPlugin.stop``)."""
    await worker.stop()
