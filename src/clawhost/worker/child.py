"""The worker process of a plugin running with ``isolation = "process"``.

The host starts it as ``python -m clawhost.worker.child`` (see ``clawhost.worker.process``).
Before any plugin code runs, the worker:

1. moves the protocol to private file descriptors: fd 0 becomes ``/dev/null`` and fd 1 a
   copy of stderr, so a plugin's ``print()`` (or a C library writing to stdout) ends up
   in the host's log and can never corrupt a reply;
2. reads the ``start`` message (one JSON line): the plugin, where its code is, its
   manifest, validated config, granted permissions and ``max_memory_mb``;
3. installs the plugin's ``SandboxScope`` (the same audit hook as in-process: file,
   network and subprocess checks) and applies its resource limits: ``RLIMIT_AS`` (what
   the worker has mapped now plus ``max_memory_mb``) and ``RLIMIT_CORE = 0``; then, at
   the start of every call into plugin code, ``RLIMIT_CPU`` (``childlimits.CpuLimit``: the
   CPU time the process has used so far plus ``max_cpu_time_secs``);
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

This module is the start-up and the request loop; the pipe and the framing of replies are
in ``childpipe``, the resource limits in ``childlimits``, and what plugin code sees of the
host (its ``ctx``, the host's providers and tools) in ``childcontext``.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import anyio

from clawhost.config.plugin import PluginConfig
from clawhost.core.messages import Message, Response
from clawhost.core.netrules import NetworkRule
from clawhost.discovery.discover import DiscoveredPlugin, PluginSource
from clawhost.discovery.manifest import Manifest
from clawhost.errors import ClawhostError
from clawhost.hookspecs import EVENT_HOOKS
from clawhost.runtime.context import HostContext
from clawhost.runtime.events import EVENT_PAYLOADS
from clawhost.runtime.loader import Implementation, import_plugin, new_plugin_manager, register
from clawhost.sandbox.limits import call_plugin
from clawhost.sandbox.permissions import EffectivePermissions, SandboxScope
from clawhost.worker.childcontext import HostProvider, HostTools, WorkerContext
from clawhost.worker.childlimits import CpuLimit, apply_limits, die_with_host
from clawhost.worker.childpipe import (
    OUT_OF_MEMORY,
    Pipe,
    configure_logging,
    error_data,
    error_line,
    fitting,
)
from clawhost.worker.wire import (
    PROTOCOL,
    TOOLS_MARK,
    arg_from_wire,
    arg_to_wire,
    decode_error,
    encode,
    encode_error,
    message_from_wire,
    payload_from_wire,
    public_methods,
    to_wire,
)

__all__ = ["main"]

#: The owner of the host's providers in the worker's registry.
_HOST = "<host>"


def _permissions(plugin: str, data: dict[str, Any]) -> EffectivePermissions:
    return EffectivePermissions(
        plugin=plugin,
        filesystem=tuple(data["filesystem"]),
        network=tuple(NetworkRule.parse(rule) for rule in data["network"]),
        subprocess=bool(data["subprocess"]),
        readable=tuple(data["readable"]),
    )


class _Worker:
    """One plugin in its worker process: import, activate, then serve requests."""

    def __init__(self, start: dict[str, Any], pipe: Pipe) -> None:
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
        self.context = WorkerContext(
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
        self.cpu = CpuLimit(start.get("max_cpu_time_secs"))
        for name, methods in (start.get("host_providers") or {}).items():
            self.host.providers._add(_HOST, name, HostProvider(self, name, methods))
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
            await self.pipe.send({"op": "failed", "stage": "import", "error": error_data(exc)})
            return 1
        await self.pipe.send({"op": "imported"})
        try:
            await self._activate(target)
            registrations = self._registrations()
        except Exception as exc:
            await self._run_cleanups([])  # as the host's rollback does in-process
            await self.pipe.send({"op": "failed", "stage": "activate", "error": error_data(exc)})
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
            {"name": name, "methods": public_methods(self.host.providers.registration(name)[1])}
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
                line = fitting(request_id, encode(reply))
            except MemoryError:
                line = OUT_OF_MEMORY.format(json.dumps(request_id)).encode()
            except Exception as exc:
                line = error_line(request_id, exc)
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
        # Validated by the real pydantic model (ToolArgumentsInvalid), and the result
        # converted, inside the call: a validator or serializer is plugin code.
        run = _PluginCall(
            tool.function, f"tool {name!r}", to_wire, validate=tool.validate, arguments=arguments
        )
        return await self._call(run.target, operation=f"tool {name}", sync_in_thread=tool.thread)

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
            return HostTools(self, tools["token"], tools["names"], tools["schemas"])
        return arg_from_wire(value)

    async def _provider(self, message: dict[str, Any]) -> Any:
        name, method = str(message["provider"]), str(message["method"])
        provider = self.host.providers.registration(name)[1]  # guarded by _call below
        if method.startswith("_") or method not in public_methods(provider):
            raise AttributeError(f"provider {name!r} has no method {method!r}")
        args = [self._argument(arg) for arg in message.get("args") or ()]
        kwargs = {key: self._argument(arg) for key, arg in (message.get("kwargs") or {}).items()}
        run = _PluginCall(
            getattr(provider, method), f"provider {name!r} method {method!r}", arg_to_wire
        )
        return await self._call(
            run.target, *args, operation=f"provider {name}.{method}", kwargs=kwargs
        )

    async def _admin(self, name: str, args: dict[str, Any]) -> Any:
        run = _PluginCall(self.host.admin.get(name), f"admin command {name!r}", to_wire)
        return await self._call(run.target, operation=f"admin {name}", kwargs=args)

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
                failures.append(error_data(exc))
        await self._run_cleanups(failures)
        return {"failures": failures}

    async def _run_cleanups(self, failures: list[dict[str, Any]]) -> None:
        for cleanup in self.context._take_cleanups():
            try:
                await self._call(cleanup, operation="cleanup")
            except Exception as exc:
                failures.append(error_data(exc))


class _PluginCall:
    """Plugin code whose result is converted to JSON data (and, for a tool, whose arguments
    are validated) inside the call, under its scope and CPU limit: validators and
    serializers are plugin code. ``target``, what ``_call`` runs, is a coroutine function
    for an async ``function`` (it stays on the loop), else a plain one."""

    __slots__ = ("arguments", "convert", "function", "target", "validate", "what")

    def __init__(
        self,
        function: Callable[..., Any],
        what: str,
        convert: Callable[[Any], Any],
        *,
        validate: Callable[[Any], dict[str, Any]] | None = None,
        arguments: Any = None,
    ) -> None:
        self.function, self.what, self.convert = function, what, convert
        self.validate, self.arguments = validate, arguments
        is_async = inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
            getattr(function, "__call__", None)  # noqa: B004 (instances with an async __call__)
        )
        self.target: Callable[..., Any] = self._run_async if is_async else self._run

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        if self.validate is not None:
            kwargs = self.validate(self.arguments)
        result = self.function(*args, **kwargs)
        if inspect.isawaitable(result):  # a plain function that returned an awaitable
            return self._finish(result)
        return _returned(result, self.what, self.convert)

    async def _run_async(self, *args: Any, **kwargs: Any) -> Any:
        if self.validate is not None:
            kwargs = self.validate(self.arguments)
        return _returned(await self.function(*args, **kwargs), self.what, self.convert)

    async def _finish(self, awaitable: Any) -> Any:
        return _returned(await awaitable, self.what, self.convert)


def _returned(value: Any, what: str, convert: Callable[[Any], Any]) -> Any:
    """``value`` as JSON data for the reply; ``TypeError`` naming ``what`` returned it.
    What stopped a serializer (the sandbox, a ``BaseException``) is raised as it is."""
    try:
        return convert(value)
    except TypeError as exc:
        cause = exc.__cause__
        if isinstance(cause, ClawhostError) or (cause and not isinstance(cause, Exception)):
            raise cause from None
        raise TypeError(f"{what} returned a value that is not JSON data: {exc}") from None


def main() -> None:
    """Run one plugin's worker; the host starts it as ``python -m clawhost.worker.child``."""
    pipe = Pipe.take_over_stdio()
    code = 70
    try:
        start = pipe.read_blocking()
        if start is None:
            os._exit(0)
        die_with_host(int(start["host_pid"]))
        configure_logging(int(start.get("log_level", logging.WARNING)))
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
