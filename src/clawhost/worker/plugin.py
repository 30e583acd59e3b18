"""The host's handle on one worker process: ``WorkerPlugin`` (see ``clawhost.worker.isolation``).

It starts the worker and runs the handshake, sends the host's calls (tools, events,
stages, providers, channels, health, deactivation) under the call deadline, answers the
worker's own requests (a host provider's method, a host tool), and reports the worker's
death once.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from clawhost.core.background import Background
from clawhost.errors import PluginTimeout, WorkerDied
from clawhost.worker.process import WorkerProcess
from clawhost.worker.wire import (
    TOOLS_MARK,
    arg_from_wire,
    arg_to_wire,
    decode_error,
    encode_error,
    message_from_wire,
    public_methods,
    to_wire,
)

if TYPE_CHECKING:
    from clawhost.core.messages import Message, Response
    from clawhost.runtime.context import HostContext

__all__ = ["EXIT_GRACE", "STARTUP_TIMEOUT", "WorkerPlugin"]

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
        from clawhost.runtime.registry import ToolRegistry
        from clawhost.runtime.toolcaller import ToolCaller

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
