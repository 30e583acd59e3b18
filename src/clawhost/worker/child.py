"""The worker process of a plugin running with ``isolation = "process"``.

The host starts it as ``python -m clawhost.worker.child`` (see ``_workerproc``). Before any
plugin code runs, the worker:

1. moves the protocol to private file descriptors: fd 0 becomes ``/dev/null`` and fd 1 a
   copy of stderr, so a plugin's ``print()`` (or a C library writing to stdout) ends up
   in the host's log and can never corrupt a reply;
2. reads the ``start`` message (one JSON line): the plugin, where its code is, its
   manifest, validated config, granted permissions and ``max_memory_mb``;
3. installs the plugin's ``SandboxScope`` (the same audit hook as in-process: file,
   network and subprocess checks) and applies its resource limits: ``RLIMIT_AS`` (what
   the worker has mapped now plus ``max_memory_mb``) and ``RLIMIT_CORE = 0``; then, at
   the start of every call into plugin code, ``RLIMIT_CPU`` (``_CpuLimit``: the CPU time
   the process has used so far plus ``max_cpu_time_secs``);
4. answers ``ready``, imports the plugin (``imported``), activates it with a worker-side
   ``PluginContext`` and answers ``started`` with what it registered, or ``failed``.

Then it serves requests, each ``{"id": n, "op": ...}``, concurrently (one task per
request in its own anyio loop; synchronous plugin code runs on clawhost's worker
threads, as in-process): ``invoke``, ``event``, ``stage``, ``health``, ``deactivate``,
and ``cancel`` (the host gave up on a request). Each reply is ``{"id": n, "ok": true,
"result": ...}`` or ``{"id": n, "ok": false, "error": {...}}``. At end of input (the
host closed the pipe) or ``stop``, it exits with ``os._exit``: a plugin's non-daemon
threads cannot keep it alive.

Wall-clock deadlines are not enforced here: the host kills the whole worker when a call
overruns ``max_wall_time_secs``. CPU time is, by the kernel: past its ``RLIMIT_CPU`` the
worker receives SIGXCPU, whose default action ends it, and the host reports that the
plugin exceeded ``max_cpu_time_secs``.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio

from clawhost.config.plugin import PluginConfig
from clawhost.core.messages import Message, Response
from clawhost.discovery.discover import DiscoveredPlugin, PluginSource
from clawhost.discovery.manifest import Manifest
from clawhost.errors import NotIsolatable, PermissionDenied, ToolArgumentsInvalid
from clawhost.hookspecs import EVENT_HOOKS
from clawhost.runtime.context import HostContext, PluginContext
from clawhost.runtime.events import EVENT_PAYLOADS, _calling_convention
from clawhost.runtime.loader import Implementation, import_plugin, new_plugin_manager, register
from clawhost.sandbox.limits import call_plugin
from clawhost.sandbox.netrules import NetworkRule
from clawhost.sandbox.permissions import EffectivePermissions, SandboxScope, current_scope
from clawhost.worker.wire import (
    MAX_LINE,
    PROTOCOL,
    TOOLS_MARK,
    MethodProxy,
    arg_from_wire,
    arg_to_wire,
    decode,
    decode_error,
    encode,
    encode_error,
    message_from_wire,
    payload_from_wire,
    public_methods,
    to_wire,
)

__all__ = ["main"]

#: Starts a structured log line on stderr (the host re-logs it at its level); any other
#: line (a print, a C library's output, a crash dump) is logged by the host as it is.
LOG_MARK = "\x1e"
_MIB = 1024 * 1024
# Sent when even describing a MemoryError fails for want of memory.
_OUT_OF_MEMORY = (
    '{{"id":{},"ok":false,"error":{{"type":"builtins.MemoryError",'
    '"message":"out of memory","args":null}}}}\n'
)

Handler = tuple[Callable[..., Any], tuple[str, ...] | None]
#: The owner of the host's providers in the worker's registry.
_HOST = "<host>"


class _Pipe:
    """The protocol's two private file descriptors: requests in, replies out."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self._in = read_fd
        self._out = write_fd
        self._buffer = bytearray()
        self._searched = 0  # the buffer's first bytes already known to hold no newline
        self._lock: anyio.Lock | None = None

    @classmethod
    def take_over_stdio(cls) -> _Pipe:
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


class _WorkerContext(PluginContext):
    """The plugin's ``ctx`` in its worker: tools, pipeline stages, providers and channel
    factories register into the worker's own HostContext (the host registers proxies of
    them), and event handlers are kept for the host's event proxies. The host's providers
    (of other plugins) are there as ``_HostProvider`` proxies."""

    def __init__(self, host: HostContext, name: str, **options: Any) -> None:
        super().__init__(host, name, **options)
        self.handlers: dict[str, list[Handler]] = {}

    def register_http_app(self, app: Callable[..., Any]) -> None:
        """Refused in a worker: an ASGI app is called with the host's request objects."""
        raise NotIsolatable(
            self.name, "an HTTP app", "an ASGI app cannot be called across the boundary yet"
        )

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Handle ``event`` (the host dispatches it here through a proxy)."""
        if not event.isidentifier():
            raise ValueError(f"event names are identifiers, not {event!r}")
        self.handlers.setdefault(event, []).append(
            (callback, _calling_convention(event, callback, None))
        )


class _HostProvider(MethodProxy):
    """A provider of the host's (another plugin's), seen from the worker: its methods are
    coroutine functions that ask the host to call them. Arguments cross as JSON data (a
    ``Message`` as itself); results come back with objects as ``Record``s."""

    def __init__(self, worker: _Worker, name: str, methods: dict[str, str]) -> None:
        async def call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            fields = {
                "provider": name,
                "method": method,
                "args": [arg_to_wire(arg) for arg in args],
                "kwargs": {key: arg_to_wire(value) for key, value in kwargs.items()},
            }
            return arg_from_wire(await worker.ask("provider", fields))

        super().__init__(name, methods, call, "the host's")


class _HostTools:
    """The host's tools handed to a provider method in the worker (a gateway's
    ``ToolCaller``): ``names()`` and ``schemas()`` as they were at the call, and
    ``call(name, arguments)``, which asks the host to run the tool."""

    def __init__(self, worker: _Worker, token: int, names: list[str], schemas: Any) -> None:
        self._worker = worker
        self._token = token
        self._names = names
        self._schemas = schemas

    def names(self) -> list[str]:
        """Every tool the host offered, when the call started."""
        return list(self._names)

    def schemas(self, shape: str = "openai") -> Any:
        """The tools' schemas for function calling (the ``openai`` shape only)."""
        if shape != "openai":
            raise ValueError("in a worker process only the 'openai' schema shape is offered")
        return self._schemas

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> Any:
        """Call a host tool; its result, or the tool's error."""
        fields = {"token": self._token, "tool": name, "arguments": to_wire(arguments or {})}
        return await self._worker.ask("tool", fields)

    invoke = call


def _permissions(plugin: str, data: dict[str, Any]) -> EffectivePermissions:
    return EffectivePermissions(
        plugin=plugin,
        filesystem=tuple(data["filesystem"]),
        network=tuple(NetworkRule.parse(rule) for rule in data["network"]),
        subprocess=bool(data["subprocess"]),
        readable=tuple(data["readable"]),
    )


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


class _CpuLimit:
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
    """An audit hook: plugin code may not change ``RLIMIT_CPU`` (see ``_CpuLimit``)."""
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


def _die_with_host(host_pid: int) -> None:
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


class _Worker:
    """One plugin in its worker process: import, activate, then serve requests."""

    def __init__(self, start: dict[str, Any], pipe: _Pipe) -> None:
        if start.get("protocol") != PROTOCOL:
            raise ValueError(f"protocol {start.get('protocol')!r}; this worker speaks {PROTOCOL}")
        self.pipe = pipe
        self.name: str = start["plugin"]
        self.start = start
        sys.path[:] = start["sys_path"]
        self.scope = SandboxScope(_permissions(self.name, start["permissions"]))
        manifest = Manifest.model_validate(start["manifest"])
        config = start["config"]
        self.host = HostContext()
        self.context = _WorkerContext(
            self.host,
            self.name,
            version=start["version"],
            manifest=manifest,
            config=PluginConfig(
                self.name,
                config["values"],
                secret_keys=config["secret_keys"],
                sources=config["sources"],
            ),
            declared=manifest.capabilities if start["enforce_capabilities"] else None,
        )
        self.candidate = DiscoveredPlugin(
            self.name,
            start["version"],
            PluginSource.from_dict(start["source"]),
            start["manifest_path"],
            manifest=manifest,
        )
        self.hooks: dict[str, list[Implementation]] = {}
        self._running: dict[Any, anyio.CancelScope] = {}
        self.cpu = _CpuLimit(start.get("max_cpu_time_secs"))
        for name, methods in (start.get("host_providers") or {}).items():
            self.host.providers._add(_HOST, name, _HostProvider(self, name, methods))
        self._asks: dict[int, list[Any]] = {}  # rid -> [event, reply]
        self._rids = itertools.count(1)
        self._channels: dict[int, tuple[str, Any, Any]] = {}  # id -> (name, channel, iterator)
        self._channel_ids = itertools.count(1)

    async def ask(self, op: str, fields: dict[str, Any]) -> Any:
        """Ask the host (a provider's method, a tool) and wait for its answer.

        The host reads while it waits for one of this worker's replies, so ask from code
        the host called: a tool, a stage, a provider method, a channel.
        """
        rid = next(self._rids)
        waiter: list[Any] = [anyio.Event(), None]
        self._asks[rid] = waiter
        try:
            await self.pipe.send({"rid": rid, "op": op, **fields})
            await waiter[0].wait()
        finally:
            self._asks.pop(rid, None)
        reply: dict[str, Any] = waiter[1]
        if reply.get("ok"):
            return reply.get("result")
        raise decode_error(reply.get("error") or {}, "the host", from_host=True)

    async def _call(
        self, function: Callable[..., Any], *args: Any, operation: str, **options: Any
    ) -> Any:
        self.cpu.renew()  # this call's CPU time: the kernel enforces it (RLIMIT_CPU)
        return await call_plugin(
            function,
            *args,
            plugin=self.name,
            operation=operation,
            timeout=None,  # the host enforces wall-clock deadlines, by killing this process
            scope=self.scope,
            **options,
        )

    def _hook_args(self, implementation: Implementation) -> list[Any]:
        return [self.context for _ in implementation.argnames]

    # -- start-up ---------------------------------------------------------------------------

    async def run(self) -> int:
        """Import and activate the plugin, then serve until the host is done; the exit code."""
        try:
            target, _ = await self._call(
                import_plugin, self.candidate, operation="import", sync_in_thread=False
            )
        except Exception as exc:
            await self.pipe.send({"op": "failed", "stage": "import", "error": _error(exc)})
            return 1
        await self.pipe.send({"op": "imported"})
        try:
            await self._activate(target)
            registrations = self._registrations()
        except Exception as exc:
            await self._run_cleanups([])  # as the host's rollback does in-process
            await self.pipe.send({"op": "failed", "stage": "activate", "error": _error(exc)})
            return 1
        await self.pipe.send({"op": "started", "registrations": registrations})
        await self._serve()
        return 0

    async def _activate(self, target: object) -> None:
        self.hooks = register(new_plugin_manager(), self.name, target)
        for hook in EVENT_HOOKS:  # hook implementations first, as the host subscribes them
            for implementation in self.hooks.get(hook, ()):
                self.context.handlers.setdefault(hook, []).append(
                    (implementation.function, tuple(implementation.argnames))
                )
        for implementation in self.hooks.get("activate", ()):
            await self._call(
                implementation.function, *self._hook_args(implementation), operation="activate"
            )

    def _registrations(self) -> dict[str, Any]:
        tools = []
        for name in self.host.tools.owned_by(self.name):
            tool = self.host.tools.get(name)
            entry: dict[str, Any] = {
                "name": tool.name,
                "description": tool.description,
                "input_schema": None,
            }
            try:
                entry["input_schema"] = tool.input_schema
            except Exception as exc:  # a parameter type with no JSON schema
                entry["schema_error"] = f"{type(exc).__name__}: {exc}"
            tools.append(entry)
        stages = [
            {"name": stage.name, "order": stage.order, "on_error": stage.on_error}
            for stage in self.host.pipeline._stages
            if stage.owner == self.name
        ]
        events = [
            {"event": event, "index": index, "argnames": None if names is None else list(names)}
            for event, handlers in self.context.handlers.items()
            for index, (_, names) in enumerate(handlers)
        ]
        providers = [
            {"name": name, "methods": public_methods(self.host.providers.get(name))}
            for name in self.host.providers.owned_by(self.name)
        ]
        channels = self.host.channels.owned_by(self.name)
        admin = self.host.admin.owned_by(self.name)
        return {
            "admin": admin,
            "tools": tools,
            "pipeline_stages": stages,
            "events": events,
            "providers": providers,
            "channels": channels,
        }

    # -- serving ----------------------------------------------------------------------------

    async def _serve(self) -> None:
        async with anyio.create_task_group() as group:
            while True:
                message = await self.pipe.receive()
                if message is None or message.get("op") == "stop":
                    break
                if "rid" in message:  # the host's answer to one of our questions
                    waiter = self._asks.get(message["rid"])
                    if waiter is not None:
                        waiter[1] = message
                        waiter[0].set()
                    continue
                if message.get("op") == "cancel":
                    running = self._running.get(message.get("id"))
                    if running is not None:
                        running.cancel()
                    continue
                group.start_soon(self._handle, message)
            group.cancel_scope.cancel()

    async def _handle(self, message: dict[str, Any]) -> None:
        request_id = message.get("id")
        line = b""
        with anyio.CancelScope() as scope:
            self._running[request_id] = scope
            try:
                result = await self._dispatch(message)
                reply = {"id": request_id, "ok": True, "result": result}
                line = _fitting(request_id, encode(reply))
            except MemoryError:
                line = _OUT_OF_MEMORY.format(json.dumps(request_id)).encode()
            except Exception as exc:
                line = _error_line(request_id, exc)
            finally:
                self._running.pop(request_id, None)
        if not scope.cancelled_caught:  # else the host no longer waits for it
            await self.pipe.send_bytes(line)

    async def _dispatch(self, message: dict[str, Any]) -> Any:
        op = message.get("op")
        if op == "invoke":
            return await self._invoke(message["tool"], message.get("arguments"))
        if op == "event":
            return await self._event(message)
        if op == "stage":
            return await self._stage(message["stage"], message["message"])
        if op == "provider":
            return await self._provider(message)
        if op == "admin":
            return await self._admin(str(message["command"]), message.get("args") or {})
        if op == "channel_open":
            return await self._channel_open(message["factory"], message.get("config") or {})
        if op == "channel_next":
            return await self._channel_next(message["channel"])
        if op == "channel_send":
            return await self._channel_send(message["channel"], message["response"])
        if op == "channel_close":
            return await self._channel_close(message["channel"])
        if op == "health":
            return await self._health()
        if op == "deactivate":
            return await self._deactivate()
        raise ValueError(f"unknown request {op!r}")

    async def _invoke(self, name: str, arguments: Any) -> Any:
        tool = self.host.tools.get(name)
        values = tool.validate(arguments)  # the real pydantic model: ToolArgumentsInvalid
        result = await self._call(
            tool.function, operation=f"tool {name}", sync_in_thread=tool.thread, kwargs=values
        )
        return _returned(result, f"tool {name!r}", to_wire)

    async def _event(self, message: dict[str, Any]) -> None:
        event: str = message["event"]
        handlers = self.context.handlers.get(event, [])
        index = message.get("handler")
        selected = handlers if index is None else [handlers[index]]
        fields = EVENT_PAYLOADS.get(event, ("payload",))
        payload = {**dict(zip(fields, message.get("args") or (), strict=False))}
        payload.update(message.get("kwargs") or {})
        payload = payload_from_wire(event, payload, self.name)
        primary = next(iter(payload.values()), None)
        failures: list[Exception] = []
        for callback, names in selected:
            try:
                if names is None:
                    await self._call(callback, primary, operation=event, sync_in_thread=False)
                else:
                    kwargs = {name: payload[name] for name in names}
                    await self._call(callback, operation=event, sync_in_thread=False, kwargs=kwargs)
            except Exception as exc:  # one failing handler never stops the others
                failures.append(exc)
        if failures:
            first = failures[0]
            if len(failures) > 1:
                first.add_note(f"{len(failures) - 1} more {event} handler(s) failed too")
            raise first

    async def _stage(self, name: str, data: dict[str, Any]) -> Any:
        process = self.host.pipeline.get(name)
        result = await self._call(process, message_from_wire(data), operation=f"stage {name}")
        if result is None:
            return None
        if not isinstance(result, Message):
            raise TypeError(
                f"stage {name!r} returned {type(result).__qualname__}, not a Message or None"
            )
        return to_wire(result)

    def _argument(self, value: Any) -> Any:
        if isinstance(value, dict) and TOOLS_MARK in value:
            tools = value[TOOLS_MARK]
            return _HostTools(self, tools["token"], tools["names"], tools["schemas"])
        return arg_from_wire(value)

    async def _provider(self, message: dict[str, Any]) -> Any:
        name, method = str(message["provider"]), str(message["method"])
        provider = self.host.providers.get(name)
        if method.startswith("_") or method not in public_methods(provider):
            raise AttributeError(f"provider {name!r} has no method {method!r}")
        args = [self._argument(arg) for arg in message.get("args") or ()]
        kwargs = {key: self._argument(arg) for key, arg in (message.get("kwargs") or {}).items()}
        result = await self._call(
            getattr(provider, method), *args, operation=f"provider {name}.{method}", kwargs=kwargs
        )
        return _returned(result, f"provider {name!r} method {method!r}", arg_to_wire)

    async def _admin(self, name: str, args: dict[str, Any]) -> Any:
        handler = self.host.admin.get(name)
        result = await self._call(handler, operation=f"admin {name}", kwargs=args)
        return _returned(result, f"admin command {name!r}", to_wire)

    async def _channel_open(self, name: str, config: dict[str, Any]) -> int:
        factory = self.host.channels.get(name)
        channel = await self._call(factory, config, operation=f"create channel {name}")
        if inspect.isawaitable(channel):
            channel = await channel
        channel_id = next(self._channel_ids)
        self._channels[channel_id] = (name, channel, None)
        return channel_id

    async def _channel_next(self, channel_id: int) -> Any:
        name, channel, iterator = self._channels[channel_id]
        if iterator is None:
            iterator = channel.messages()
            self._channels[channel_id] = (name, channel, iterator)

        async def next_message() -> Any:
            return await iterator.__anext__()

        try:
            message = await self._call(next_message, operation=f"channel {name}")
        except StopAsyncIteration:
            return None
        if not isinstance(message, Message):
            raise TypeError(f"channel {name!r} yielded {type(message).__qualname__}, not a Message")
        return to_wire(message)

    async def _channel_send(self, channel_id: int, data: dict[str, Any]) -> None:
        name, channel, _ = self._channels[channel_id]
        await self._call(channel.send, Response(**data), operation=f"channel {name} send")

    async def _channel_close(self, channel_id: int) -> None:
        # The channel stays: its send() may still be called after its messages ended.
        entry = self._channels.get(channel_id)
        if entry is None or entry[2] is None:
            return
        name, channel, iterator = entry
        self._channels[channel_id] = (name, channel, None)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await self._call(aclose, operation=f"channel {name} close", sync_in_thread=False)

    async def _health(self) -> str | None:
        for implementation in self.hooks.get("health_check", ()):
            result = await self._call(
                implementation.function,
                *self._hook_args(implementation),
                operation="health check",
            )
            if result is False or isinstance(result, str):
                return result or "reported unhealthy"
        return None

    async def _deactivate(self) -> dict[str, Any]:
        failures: list[dict[str, Any]] = []
        for implementation in self.hooks.get("deactivate", ()):
            try:
                await self._call(
                    implementation.function,
                    *self._hook_args(implementation),
                    operation="deactivate",
                )
            except Exception as exc:
                failures.append(_error(exc))
        await self._run_cleanups(failures)
        return {"failures": failures}

    async def _run_cleanups(self, failures: list[dict[str, Any]]) -> None:
        for cleanup in self.context._take_cleanups():
            try:
                await self._call(cleanup, operation="cleanup")
            except Exception as exc:
                failures.append(_error(exc))


def _returned(value: Any, what: str, convert: Callable[[Any], Any]) -> Any:
    """``value`` as JSON data for the reply; ``TypeError`` naming ``what`` returned it."""
    try:
        return convert(value)
    except TypeError as exc:
        raise TypeError(f"{what} returned a value that is not JSON data: {exc}") from None


def _error_line(request_id: Any, error: Exception) -> bytes:
    try:
        line = encode({"id": request_id, "ok": False, "error": _error(error)})
        return _fitting(request_id, line, error)
    except MemoryError:
        return _OUT_OF_MEMORY.format(json.dumps(request_id)).encode()


def _fitting(request_id: Any, line: bytes, error: Exception | None = None) -> bytes:
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


def _error(error: Exception) -> dict[str, Any]:
    # Invalid arguments are the caller's business: their problems say it all.
    with_traceback = not isinstance(error, ToolArgumentsInvalid)
    try:
        return encode_error(error, with_traceback=with_traceback)
    except MemoryError:
        return {"type": "builtins.MemoryError", "message": "out of memory", "args": None}


def _configure_logging(level: int) -> None:
    handler = _LogLines()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


def main() -> None:
    """Run one plugin's worker; the host starts it as ``python -m clawhost.worker.child``."""
    pipe = _Pipe.take_over_stdio()
    code = 70
    try:
        start = pipe.read_blocking()
        if start is None:
            os._exit(0)
        _die_with_host(int(start["host_pid"]))
        _configure_logging(int(start.get("log_level", logging.WARNING)))
        worker = _Worker(start, pipe)
        applied = apply_limits(start.get("max_memory_mb"))
        applied["cpu_time_secs"] = worker.cpu.seconds
        pipe.send_blocking({"op": "ready", "pid": os.getpid(), "limits": applied})
        pipe.make_nonblocking()
        code = anyio.run(worker.run)
    except BaseException as exc:
        try:
            os.set_blocking(pipe._out, True)
            pipe.send_blocking({"op": "failed", "stage": "start", "error": encode_error(exc)})
        except BaseException:  # the host is gone, or the error is indescribable
            pass
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):  # nothing left to report it to
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
