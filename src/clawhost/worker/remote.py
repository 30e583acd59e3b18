"""Host-side proxies of what a plugin in a worker process registered.

``register_proxies`` registers them through the plugin's ``PluginContext``, on its behalf,
so ownership and declared capabilities are checked as for an in-process plugin; each
proxy's calls go to the worker through its ``WorkerPlugin``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.errors import Problem, ToolArgumentsInvalid
from clawhost.runtime.tools import Tool
from clawhost.worker.plugin import WorkerPlugin
from clawhost.worker.wire import MethodProxy, to_wire

if TYPE_CHECKING:
    from clawhost.core.messages import Message, Response
    from clawhost.runtime.context import PluginContext

__all__ = ["RemoteChannel", "RemoteProvider", "RemoteStage", "RemoteTool", "register_proxies"]


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
