"""Process isolation, host side: a plugin in a worker process, reached through proxies.

With ``isolation = "process"`` the host never imports the plugin. ``activate_isolated``
starts a worker (``_workerproc``, ``_worker``) that imports and activates it under real
operating-system limits, then registers, on the plugin's behalf and through its
``PluginContext`` (so ownership and declared capabilities are checked as usual):

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
``_worker._CpuLimit``): a worker past it dies of SIGXCPU, and the call in flight fails
with ``WorkerDied`` saying the plugin exceeded ``max_cpu_time_secs``.

However its worker ends (killed for a deadline, out of CPU time or memory, a crash,
``os._exit``, during a call or between calls), the plugin is marked FAILED with the
reason and its proxies are removed; with ``restart = true`` the host starts it again
later, with a backoff (``clawhost.host.supervision``).
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.core.background import Background
from clawhost.discovery.discover import SourceKind
from clawhost.errors import NotIsolatable, PluginTimeout, Problem, ToolArgumentsInvalid, WorkerDied
from clawhost.runtime.loader import Implementation
from clawhost.runtime.tools import Tool
from clawhost.worker.process import WorkerProcess
from clawhost.worker.wire import (
    PROTOCOL,
    TOOLS_MARK,
    MethodProxy,
    arg_from_wire,
    arg_to_wire,
    decode_error,
    encode_error,
    message_from_wire,
    public_methods,
    to_wire,
)

if TYPE_CHECKING:
    from clawhost.config.host import SandboxConfig
    from clawhost.core.messages import Message, Response
    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.runtime.context import HostContext, PluginContext
    from clawhost.runtime.records import PluginRecord

__all__ = [
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
#: Seconds a deactivated worker has to exit by itself before SIGTERM.
EXIT_GRACE = 2.0


class WorkerPlugin:
    """A plugin running in a worker process: its registrations and calls into it.

    ``start()`` spawns the worker and runs the handshake; ``registrations`` then holds
    what the plugin registered, as data (``tools``, ``pipeline_stages``, ``events``,
    ``providers``, ``channels``). Requests may run concurrently: each carries an id, and
    the worker runs them in tasks of its own (the host's ``max_concurrency`` limiter
    bounds how many).

    One ``WorkerPlugin`` is one worker: it is never started again. When the process ends
    other than by ``stop``/``close`` (it crashed, was killed for overrunning a deadline,
    ran out of CPU time), every call fails with ``WorkerDied`` and ``on_death`` is told
    once, on the event loop, with the error that first showed it (``None`` when it died
    between calls). The host then marks the plugin FAILED and, when configured, starts a
    new worker later (``clawhost.host.supervision``).
    """

    def __init__(
        self,
        plugin: str,
        start: dict[str, Any],
        *,
        limit: float | None,
        cpu_limit: float | None = None,
        startup_timeout: float = STARTUP_TIMEOUT,
        on_death: Callable[[WorkerPlugin, BaseException | None], object] | None = None,
        host: HostContext | None = None,
    ) -> None:
        self.plugin = plugin
        #: Where the worker's own requests are answered: the host's providers and tools.
        self.host = host
        #: The wall-clock deadline of every call, in seconds.
        self.limit = limit
        #: ``max_cpu_time_secs``, which the worker applies itself (``RLIMIT_CPU``).
        self.cpu_limit = cpu_limit
        self.startup_timeout = startup_timeout
        self.on_death = on_death
        self.registrations: dict[str, Any] = {}
        self._start = start
        self._process: WorkerProcess | None = None
        self._stopped = False
        self._reported = False
        self._answers = Background()
        self._callers: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"<WorkerPlugin {self.plugin} {self._process!r}>"

    @property
    def pid(self) -> int | None:
        """The worker process's id (``None`` before it started)."""
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        """Whether the worker process is running now."""
        return self._process is not None and self._process.alive

    @property
    def limits(self) -> Mapping[str, Any]:
        """What the worker applied to itself: ``address_space_mb``, ``baseline_mb``,
        ``cpu_time_secs`` (the CPU time each call may use; ``None``: no limit)."""
        return self._process.limits if self._process is not None else {}

    async def start(self) -> None:
        """Start the worker: spawn, import and activate the plugin (each step under its
        deadline). Raises the plugin's error, ``PluginTimeout`` or ``WorkerDied``."""
        process, self.registrations = await WorkerProcess.spawn(
            self.plugin,
            self._start,
            startup_timeout=self.startup_timeout,
            limit=self.limit,
            cpu_limit=self.cpu_limit,
        )
        self._process = process
        if self._stopped:  # deactivated while it was starting
            await process.kill(None)
            raise WorkerDied(self.plugin, "start", process.pid, None, "the plugin was stopped")
        process.on_exit = self._exited
        process.on_request = self._asked
        if not process.alive:  # it exited before it could be watched
            self._exited(process)
        address_space = self.limits.get("address_space_mb")
        logger.info(
            "Plugin %r runs in worker process %d%s",
            self.plugin,
            process.pid,
            f" (address space limited to {address_space:.0f} MiB)" if address_space else "",
        )

    def _exited(self, process: WorkerProcess) -> None:
        """The process ended (told on the event loop): a death, unless it was stopped."""
        if process is self._process:
            self._report(None)

    def _report(self, error: BaseException | None) -> None:
        if self._stopped or self._reported:
            return
        self._reported = True
        if self.on_death is not None:
            self.on_death(self, error)

    async def death(self) -> WorkerDied:
        """Reap the dead worker (kill what is left of its group) and say how it died."""
        process = self._process
        if process is None:
            return WorkerDied(self.plugin, None, None, None, "the worker was never started")
        await process.kill(None)
        return process.died(None)

    # -- the worker's requests: host providers and tools ----------------------------------

    def _asked(self, message: dict[str, Any]) -> None:
        self._answers.start_soon(("rid", message.get("rid")), self._answer, message)

    async def _answer(self, message: dict[str, Any]) -> None:
        rid = message.get("rid")
        try:
            reply = {"rid": rid, "ok": True, "result": arg_to_wire(await self._serve(message))}
        except Exception as exc:
            reply = {"rid": rid, "ok": False, "error": encode_error(exc)}
        process = self._process
        if process is None:
            return
        try:
            await process.answer(reply)
        except ValueError as exc:  # too large for the protocol: say so instead
            error = encode_error(exc, with_traceback=False)
            await process.answer({"rid": rid, "ok": False, "error": error})

    async def _serve(self, message: dict[str, Any]) -> Any:
        """Answer one request of the worker's plugin: a call of a host provider's method
        or of a tool (through the tools a provider method was handed, or the host's)."""
        if self.host is None:
            raise RuntimeError("this worker has no host to ask")
        op = message.get("op")
        if op == "provider":
            provider = self.host.providers.get(str(message["provider"]))
            method = str(message["method"])
            if method.startswith("_") or method not in public_methods(provider):
                raise AttributeError(f"provider {message['provider']!r} has no method {method!r}")
            args = [arg_from_wire(arg) for arg in message.get("args") or ()]
            kwargs = {key: arg_from_wire(arg) for key, arg in (message.get("kwargs") or {}).items()}
            result = getattr(provider, method)(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        if op == "tool":
            arguments = dict(message.get("arguments") or {})
            caller = self._callers.get(message.get("token") or 0)
            if caller is not None:  # a gateway's ToolCaller (call) or the registry (invoke)
                call = getattr(caller, "call", None) or caller.invoke
                return await call(str(message["tool"]), arguments)
            return await self.host.tools.invoke(str(message["tool"]), arguments)
        raise ValueError(f"unknown request {op!r} from the worker")

    def _tools_arg(self, tools: Any) -> dict[str, Any]:
        """The host's tools (a gateway's ``ToolCaller``, or the registry) handed to a
        provider in the worker: their names and schemas now, and a token to call them."""
        token = id(tools)
        self._callers[token] = tools
        names = list(tools.names())
        try:
            schemas = tools.schemas("openai")
        except Exception:  # a tool without a JSON schema: the names still serve
            schemas = []
        return {TOOLS_MARK: {"token": token, "names": names, "schemas": to_wire(schemas)}}

    async def call_provider(
        self, provider: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Call ``method`` of the worker's provider ``provider``; its result as ``Record``s."""
        from clawhost.gateway import ToolCaller
        from clawhost.runtime.registry import ToolRegistry

        tokens: list[int] = []

        def wire(value: Any) -> Any:
            if isinstance(value, ToolCaller | ToolRegistry):
                marked = self._tools_arg(value)
                tokens.append(marked[TOOLS_MARK]["token"])
                return marked
            return arg_to_wire(value)

        fields = {
            "provider": provider,
            "method": method,
            "args": [wire(arg) for arg in args],
            "kwargs": {key: wire(value) for key, value in kwargs.items()},
        }
        try:
            result = await self._request("provider", fields, f"provider {provider}.{method}")
        finally:
            for token in tokens:
                self._callers.pop(token, None)
        return arg_from_wire(result)

    async def open_channel(self, factory: str, config: Mapping[str, Any]) -> int:
        """Build channel ``factory`` in the worker from ``config``; the channel's id."""
        fields = {"factory": factory, "config": to_wire(dict(config))}
        return int(await self._request("channel_open", fields, f"create channel {factory}"))

    async def channel_next(self, channel: int, name: str) -> Message | None:
        """The channel's next message; ``None`` when it ended. No deadline: a channel
        waits for its messages as long as they take."""
        process = self._current(f"channel {name}")
        try:
            result = await process.request(
                "channel_next", {"channel": channel}, operation=f"channel {name}", limit=None
            )
        except (WorkerDied, PluginTimeout) as exc:
            if not process.alive:
                self._report(exc)
            raise
        return None if result is None else message_from_wire(result)

    async def channel_send(self, channel: int, name: str, response: Response) -> None:
        """Deliver ``response`` through the channel (under the call deadline)."""
        fields = {"channel": channel, "response": to_wire(response)}
        await self._request("channel_send", fields, f"channel {name} send")

    async def channel_close(self, channel: int) -> None:
        """Close the channel's message iterator in the worker; a dead worker is no error."""
        if self.alive:
            with contextlib.suppress(WorkerDied, PluginTimeout):
                await self._request("channel_close", {"channel": channel}, "channel close")

    def _current(self, operation: str) -> WorkerProcess:
        """The running worker; ``WorkerDied`` once it is gone."""
        process = self._process
        if process is not None and process.alive:
            return process
        if process is None:
            raise WorkerDied(self.plugin, operation, None, None, "the worker was never started")
        why = "the plugin was deactivated" if self._stopped else process.reason
        return_code = process.returncode if process.reaped else process.process.returncode
        raise WorkerDied(self.plugin, operation, process.pid, return_code, why)

    async def _request(self, op: str, fields: dict[str, Any], operation: str) -> Any:
        process = self._current(operation)
        try:
            return await process.request(op, fields, operation=operation, limit=self.limit)
        except (WorkerDied, PluginTimeout) as exc:
            if not process.alive:  # this call met (or caused) the worker's end
                self._report(exc)
            raise

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
        await self._answers.aclose()


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


class RemoteProvider(MethodProxy):
    """A provider of a plugin in a worker process: each of its public methods, called on
    this proxy, runs in the worker. Every method is a coroutine function here (the call
    crosses a pipe), sync or async in the plugin. Arguments cross as JSON data (a
    ``Message`` as itself, the host's tools as a proxy the provider can call); results
    come back as JSON data, with objects as ``Record``s (attribute access works)."""

    def __init__(self, worker: WorkerPlugin, name: str, methods: Mapping[str, str]) -> None:
        async def call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return await worker.call_provider(name, method, args, kwargs)

        super().__init__(name, methods, call, f"plugin {worker.plugin!r}, in a worker process")


class RemoteChannel:
    """A channel built in a worker process: ``messages()`` and ``send()`` reach it."""

    def __init__(self, worker: WorkerPlugin, name: str, channel: int) -> None:
        self._worker = worker
        self.name = name
        self._id = channel

    def __repr__(self) -> str:
        return f"<RemoteChannel {self.name} #{self._id} of plugin {self._worker.plugin!r}>"

    async def messages(self) -> AsyncIterator[Message]:
        """The channel's messages, until it ends (or the caller stops iterating)."""
        try:
            while (message := await self._worker.channel_next(self._id, self.name)) is not None:
                yield message
        finally:
            with anyio.CancelScope(shield=True):
                await self._worker.channel_close(self._id)

    async def send(self, response: Response) -> None:
        """Deliver a response through the channel."""
        await self._worker.channel_send(self._id, self.name, response)


def _admin_proxy(worker: WorkerPlugin, name: str) -> Callable[..., Any]:
    async def call(**args: Any) -> Any:
        fields = {"command": name, "args": to_wire(args)}
        return await worker._request("admin", fields, f"admin {name}")

    call.__name__ = call.__qualname__ = name
    return call


def _channel_factory(worker: WorkerPlugin, name: str) -> Callable[..., Any]:
    async def build(config: Mapping[str, Any]) -> RemoteChannel:
        return RemoteChannel(worker, name, await worker.open_channel(name, config))

    build.__name__ = build.__qualname__ = f"{name} (in a worker process)"
    return build


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
    for spec in registrations.get("providers", ()):
        provider = RemoteProvider(worker, spec["name"], spec.get("methods") or {})
        context.register_provider(spec["name"], provider)
    for name in registrations.get("channels", ()):
        context.register_channel_factory(name, _channel_factory(worker, name))
    for name in registrations.get("admin", ()):
        namespace, _, method = str(name).rpartition(".")
        context.register_admin_command(method, _admin_proxy(worker, name), namespace=namespace)
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
