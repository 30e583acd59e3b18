"""Process isolation, host side: a plugin in a worker process, reached through proxies.

With ``isolation = "process"`` the host never imports the plugin. ``activate_isolated``
starts a worker (``_workerproc``, ``_worker``) that imports and activates it under real
operating-system limits, then registers, on the plugin's behalf and through its
``PluginContext`` (so ownership and declared capabilities are checked as usual):

* a ``RemoteTool`` per tool: the worker's JSON schema, the worker's validation (the real
  pydantic model; ``ToolArgumentsInvalid`` comes back as data), the call over the pipe;
* a proxy per pipeline stage (same name, order and ``on_error``) and per event handler.

Providers and channel factories are Python objects the host would call directly: they
cannot cross a process boundary, and a plugin offering one fails activation with
``NotIsolatable``.

Limits: every call carries the plugin's wall-clock deadline (``max_wall_time_secs``, or
``max_cpu_time_secs`` when that is unset); a call that overruns fails with
``PluginTimeout`` and the worker is killed (whatever it was doing, in any thread). CPU
time is limited in the worker itself (``RLIMIT_CPU``, renewed per call: see
``_worker._CpuLimit``): a worker past it dies of SIGXCPU, and the call in flight fails
with ``WorkerDied`` saying the plugin exceeded ``max_cpu_time_secs``. Either way the
plugin stays ACTIVE: the next call starts a fresh worker, which imports and activates the
plugin again. A worker that dies by itself (out of memory, a crash,
``os._exit``) is restarted the same way. After ``MAX_RESTARTS`` restarts within
``RESTART_WINDOW`` seconds the host stops restarting it: every call then fails with
``WorkerDied`` and its health check says why, until the plugin is deactivated and
activated again (or reloaded).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from ._discover import SourceKind
from ._loader import Implementation
from ._tools import Tool
from ._wire import OBJECTS_CANNOT_CROSS, PROTOCOL, decode_error, message_from_wire, to_wire
from ._workerproc import WorkerProcess
from .errors import NotIsolatable, Problem, ToolArgumentsInvalid, WorkerDied

if TYPE_CHECKING:
    from ._config import SandboxConfig
    from ._context import HostContext, PluginContext
    from ._discover import DiscoveredPlugin
    from ._messages import Message
    from ._records import PluginRecord

__all__ = [
    "MAX_RESTARTS",
    "RESTART_WINDOW",
    "STARTUP_TIMEOUT",
    "RemoteTool",
    "WorkerPlugin",
    "activate_isolated",
    "deactivate_isolated",
    "trial_isolated",
]

logger = logging.getLogger("clawhost.isolation")

#: Seconds a worker's interpreter has to start, before any plugin code runs.
STARTUP_TIMEOUT = 20.0
#: Restarts allowed within ``RESTART_WINDOW`` seconds before the host gives up.
MAX_RESTARTS = 3
RESTART_WINDOW = 60.0
#: Seconds a deactivated worker has to exit by itself before SIGTERM.
EXIT_GRACE = 2.0


class WorkerPlugin:
    """A plugin running in a worker process: its registrations and calls into it.

    ``start()`` spawns the worker and runs the handshake; ``registrations`` then holds
    what the plugin registered, as data (``tools``, ``pipeline_stages``, ``events``).
    Requests may run concurrently: each carries an id, and the worker runs them in
    tasks of its own (the host's ``max_concurrency`` limiter bounds how many).
    """

    def __init__(
        self,
        plugin: str,
        start: dict[str, Any],
        *,
        limit: float | None,
        cpu_limit: float | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        max_restarts: int = MAX_RESTARTS,
        restart_window: float = RESTART_WINDOW,
    ) -> None:
        self.plugin = plugin
        #: The wall-clock deadline of every call, in seconds.
        self.limit = limit
        #: ``max_cpu_time_secs``, which the worker applies itself (``RLIMIT_CPU``).
        self.cpu_limit = cpu_limit
        self.startup_timeout = startup_timeout
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        #: How many times the worker was started again after it died or was killed.
        self.restarts = 0
        self.registrations: dict[str, Any] = {}
        self._start = start
        self._process: WorkerProcess | None = None
        self._lock: anyio.Lock | None = None
        self._restarted_at: deque[float] = deque()
        self._stopped = False
        self._gave_up: str | None = None

    def __repr__(self) -> str:
        return f"<WorkerPlugin {self.plugin} {self._process!r}>"

    @property
    def pid(self) -> int | None:
        """The current worker process's id (``None`` before the first start)."""
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        """Whether a worker process is running now."""
        return self._process is not None and self._process.alive

    @property
    def limits(self) -> Mapping[str, Any]:
        """What the worker applied to itself: ``address_space_mb``, ``baseline_mb``,
        ``cpu_time_secs`` (the CPU time each call may use; ``None``: no limit)."""
        return self._process.limits if self._process is not None else {}

    async def _spawn(self) -> WorkerProcess:
        process, registrations = await WorkerProcess.spawn(
            self.plugin,
            self._start,
            startup_timeout=self.startup_timeout,
            limit=self.limit,
            cpu_limit=self.cpu_limit,
        )
        if self._stopped:  # deactivated while this one was starting
            await process.kill(None)
            raise WorkerDied(self.plugin, "start", process.pid, None, "the plugin was stopped")
        if self._process is not None and registrations != self.registrations:
            await process.kill("it registered something else after a restart")
            self._gave_up = "not restarted: it registered something else after a restart"
            raise WorkerDied(self.plugin, "start", process.pid, None, self._gave_up)
        self.registrations = registrations
        return process

    async def start(self) -> None:
        """Start the worker: spawn, import and activate the plugin (each step under its
        deadline). Raises the plugin's error, ``PluginTimeout`` or ``WorkerDied``."""
        self._lock = anyio.Lock()
        self._process = await self._spawn()
        address_space = self.limits.get("address_space_mb")
        logger.info(
            "Plugin %r runs in worker process %d%s",
            self.plugin,
            self._process.pid,
            f" (address space limited to {address_space:.0f} MiB)" if address_space else "",
        )

    async def _current(self, operation: str) -> WorkerProcess:
        """The running worker, started again if it died (within the restart budget)."""
        process = self._process
        if process is not None and process.alive:
            return process
        if self._lock is None:
            raise WorkerDied(self.plugin, operation, None, None, "the worker was never started")
        async with self._lock:
            process = self._process
            if process is not None and process.alive:
                return process
            if self._stopped or self._gave_up is not None:
                pid = process.pid if process is not None else None
                returncode = process.returncode if process is not None else None
                why = self._gave_up or "the plugin was deactivated"
                raise WorkerDied(self.plugin, operation, pid, returncode, why)
            if process is not None and not process.reaped:  # it died between calls
                await process.kill(None)  # reap it, and learn its exit status
                logger.error("%s", process.died(None))
            now = time.monotonic()
            while self._restarted_at and now - self._restarted_at[0] > self.restart_window:
                self._restarted_at.popleft()
            if len(self._restarted_at) >= self.max_restarts:
                self._gave_up = (
                    f"not restarted: it was restarted {len(self._restarted_at)} times "
                    f"within {self.restart_window:g}s"
                )
                logger.error("Plugin %r: worker %s", self.plugin, self._gave_up)
                pid = process.pid if process is not None else None
                returncode = process.returncode if process is not None else None
                raise WorkerDied(self.plugin, operation, pid, returncode, self._gave_up)
            self._restarted_at.append(now)
            self.restarts += 1
            logger.warning("Plugin %r: starting its worker process again", self.plugin)
            self._process = await self._spawn()
            return self._process

    async def _request(self, op: str, fields: dict[str, Any], operation: str) -> Any:
        process = await self._current(operation)
        return await process.request(op, fields, operation=operation, limit=self.limit)

    async def invoke(self, tool: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call tool ``tool`` with JSON ``arguments`` (validated by the worker); its result
        as JSON data."""
        fields = {"tool": tool, "arguments": to_wire(dict(arguments or {}))}
        return await self._request("invoke", fields, f"tool {tool}")

    async def dispatch(
        self,
        event: str,
        payload: Mapping[str, Any] | None = None,
        *,
        args: tuple[Any, ...] = (),
        handler: int | None = None,
    ) -> None:
        """Deliver ``event`` to the plugin's handlers (or only handler number ``handler``).

        ``payload`` holds the event's fields by name (a ``Message`` crosses as a dict and
        is rebuilt); ``args`` stand for its first fields, as in ``EventBus.dispatch``. A
        value with no JSON form crosses as its ``repr()``: events inform, and one tool's
        odd result must not fail every isolated ``on_tool_called`` handler.
        """
        fields = {
            "event": event,
            "handler": handler,
            "args": to_wire(list(args), lenient=True),
            "kwargs": to_wire(dict(payload or {}), lenient=True),
        }
        await self._request("event", fields, event)

    async def run_stage(self, name: str, message: Message) -> Message | None:
        """Run pipeline stage ``name`` on ``message``: the message it returns, or ``None``."""
        result = await self._request(
            "stage", {"stage": name, "message": to_wire(message)}, f"stage {name}"
        )
        return None if result is None else message_from_wire(result)

    async def health(self) -> str | None:
        """Run the plugin's health checks: ``None`` when healthy, else the reason."""
        if self._gave_up is not None:
            return self._gave_up
        result = await self._request("health", {}, "health check")
        return None if result is None else str(result)

    async def stop(self) -> None:
        """Deactivate the plugin in its worker (under its deadline), then end the worker.

        The process is reaped whatever happens; the first error the plugin's
        ``deactivate`` or cleanups raised is raised afterwards.
        """
        process = self._process
        self._stopped = True
        result: Any = None
        try:
            if process is not None and process.alive:
                result = await process.request(
                    "deactivate", {}, operation="deactivate", limit=self.limit
                )
        finally:
            await self.close()
        failures = [
            decode_error(error, self.plugin) for error in (result or {}).get("failures", ())
        ]
        if failures:
            if len(failures) > 1:
                failures[0].add_note(f"{len(failures) - 1} more deactivate step(s) failed too")
            raise failures[0]

    async def close(self) -> None:
        """End the worker without deactivating the plugin (its end of input, SIGTERM,
        SIGKILL), and never start it again; the process is always reaped."""
        self._stopped = True
        if self._process is not None:
            await self._process.close(EXIT_GRACE)


# -- proxies ----------------------------------------------------------------------------------


class RemoteTool(Tool[Any]):
    """A tool of a plugin in a worker process: the worker's name, description and JSON
    schema; calls go to the worker.

    ``validate`` only checks that the arguments are a mapping of JSON data: the worker
    validates them with the tool's real pydantic model and answers ``ToolArgumentsInvalid``
    (with every problem) as the in-process host would. The result is JSON data: a tool
    returning a pydantic model or a dataclass gives the host a dict.
    """

    __slots__ = ("_schema", "_schema_error")

    def __init__(self, worker: WorkerPlugin, spec: Mapping[str, Any]) -> None:
        name = str(spec["name"])

        async def call(**arguments: Any) -> Any:
            return await worker.invoke(name, arguments)

        super().__init__(call, name=name, description=str(spec.get("description") or ""))
        self._schema: dict[str, Any] | None = spec.get("input_schema")
        self._schema_error: str | None = spec.get("schema_error")

    def __repr__(self) -> str:
        return f"<RemoteTool {self.name}>"

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON schema the worker built from the tool's signature."""
        if self._schema is None:
            raise TypeError(f"tool {self.name!r} has no JSON schema: {self._schema_error}")
        import copy

        return copy.deepcopy(self._schema)

    def _model(self) -> Any:
        raise TypeError(f"tool {self.name!r} runs in a worker process; its model lives there")

    def validate(self, arguments: Mapping[str, Any] | None) -> dict[str, Any]:
        """The arguments as JSON data, for the worker to validate; ``ToolArgumentsInvalid``
        when they are not a mapping of JSON data."""
        given: object = arguments  # the annotation is what callers should pass, not a check
        if given is None:
            return {}
        if not isinstance(given, Mapping):
            problem = Problem(None, f"arguments must be a mapping, not {type(given).__name__}")
            raise ToolArgumentsInvalid(self.name, [problem])
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for key, value in given.items():
            if not isinstance(key, str):
                problems.append(Problem(repr(key), "argument names are strings"))
                continue
            try:
                values[key] = to_wire(value)
            except TypeError as exc:
                problems.append(Problem(key, f"not JSON data, which a worker process needs: {exc}"))
        if problems:
            raise ToolArgumentsInvalid(self.name, problems)
        return values


class RemoteStage:
    """A pipeline stage of a plugin in a worker process."""

    __slots__ = ("name", "worker")

    def __init__(self, worker: WorkerPlugin, name: str) -> None:
        self.worker = worker
        self.name = name

    def __repr__(self) -> str:
        return f"<RemoteStage {self.name}>"

    async def process(self, message: Message) -> Message | None:
        """The message the worker's stage returned, or ``None`` (dropped)."""
        return await self.worker.run_stage(self.name, message)


def _event_proxy(
    worker: WorkerPlugin, event: str, index: int, argnames: tuple[str, ...] | None
) -> Callable[..., Any]:
    """A host-side handler standing for one of the plugin's: it takes what the plugin's
    handler takes (the first payload field, or fields by name) and sends it over."""
    if argnames is None:

        async def handle_value(value: Any) -> None:
            await worker.dispatch(event, args=(value,), handler=index)

        return handle_value

    async def handle_fields(**payload: Any) -> None:
        await worker.dispatch(event, payload, handler=index)

    return handle_fields


def register_proxies(context: PluginContext, worker: WorkerPlugin) -> None:
    """Register what the worker's plugin registered, on its behalf, through ``context``."""
    registrations = worker.registrations
    for spec in registrations.get("tools", ()):
        context.register_tool(RemoteTool(worker, spec))
    for spec in registrations.get("pipeline_stages", ()):
        context.register_pipeline_stage(
            spec["name"],
            RemoteStage(worker, spec["name"]),
            order=int(spec["order"]),
            on_error=spec["on_error"],
        )
    for spec in registrations.get("events", ()):
        names = spec.get("argnames")
        argnames = None if names is None else tuple(names)
        handler = _event_proxy(worker, spec["event"], int(spec["index"]), argnames)
        context.host.events.subscribe(context.name, spec["event"], handler, argnames=argnames)


# -- the host's entry points ------------------------------------------------------------------


def check_isolatable(name: str, candidate: DiscoveredPlugin) -> None:
    """Refuse, before starting anything, a plugin that cannot run in a worker process."""
    if candidate.source.kind is SourceKind.MEMORY:
        raise NotIsolatable(
            name,
            "an in-memory plugin",
            "a worker imports a plugin from its entry point, and an object handed to the "
            "host in code has none",
        )
    capabilities = candidate.manifest.capabilities
    for kind, names in (("provider", capabilities.providers), ("channel", capabilities.channels)):
        if names:
            raise NotIsolatable(
                name, f"{kind} {names[0]!r} (declared in its manifest)", OBJECTS_CANNOT_CROSS
            )


def start_message(
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    sandbox: SandboxConfig,
    *,
    enforce_capabilities: bool,
) -> dict[str, Any]:
    """What a worker needs to run the plugin: the protocol's ``start`` message."""
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
        "log_level": logging.getLogger(f"clawhost.plugin.{record.name}").getEffectiveLevel(),
    }


def _new_worker(
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    sandbox: SandboxConfig,
    enforce_capabilities: bool,
) -> WorkerPlugin:
    """A worker (not started yet) for ``candidate``, with the plugin's limits."""
    return WorkerPlugin(
        record.name,
        start_message(record, candidate, sandbox, enforce_capabilities=enforce_capabilities),
        limit=sandbox.call_deadline(),
        cpu_limit=sandbox.max_cpu_time_secs,
    )


async def activate_isolated(
    host_context: HostContext,
    record: PluginRecord,
    candidate: DiscoveredPlugin,
    *,
    sandbox: SandboxConfig,
    enforce_capabilities: bool,
) -> WorkerPlugin:
    """Activate ``record``'s plugin in a worker process and register its proxies.

    Call it where the host would import and activate the plugin, after its limits,
    permissions (``record.permissions``) and config (``record.config``) are prepared.
    It sets ``record.context`` first and adds the worker's ``close`` as a cleanup, so
    the host's usual rollback (cleanups, then ``remove_owner``) reaps the worker and
    removes the proxies whatever fails. ``record.hooks`` gets ``deactivate`` and
    ``health_check`` implementations that reach the worker, so the host's deactivation
    and health checks work unchanged. ``record.timeout`` and ``record.scope`` are cleared:
    no plugin code runs in the host, and the worker's deadline is enforced by killing it.
    """
    check_isolatable(record.name, candidate)
    context = host_context.plugin_context(
        record.name,
        version=str(candidate.version),
        manifest=candidate.manifest,
        config=record.config,
        enforce_capabilities=enforce_capabilities,
    )
    record.context = context
    worker = _new_worker(record, candidate, sandbox, enforce_capabilities)
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
) -> None:
    """Start ``candidate`` (new code on disk) in a worker of its own, activate it, then
    deactivate it and end the worker, while the current worker keeps serving.

    Hot reload in process isolation runs this first: a worker imports from disk, so once
    the old worker is stopped the old code cannot be brought back, and a version that
    fails must fail here, before anything is touched. Raises what starting it raised.
    """
    check_isolatable(record.name, candidate)
    trial = _new_worker(record, candidate, sandbox, enforce_capabilities)
    try:
        await trial.start()
    finally:
        with anyio.CancelScope(shield=True):
            await trial.stop()


async def deactivate_isolated(worker: WorkerPlugin) -> None:
    """Deactivate the plugin in its worker and reap the worker (``WorkerPlugin.stop``)."""
    await worker.stop()
