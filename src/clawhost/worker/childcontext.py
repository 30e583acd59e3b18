"""What plugin code sees of the host inside its worker process.

The plugin's ``ctx`` (``WorkerContext``) registers into the worker's own HostContext;
the host's providers and tools are proxies whose calls ask the host over the pipe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from clawhost.errors import NotIsolatable
from clawhost.runtime.context import HostContext, PluginContext
from clawhost.runtime.events import _calling_convention
from clawhost.worker.wire import MethodProxy, arg_from_wire, arg_to_wire, to_wire

__all__ = ["Handler", "HostAsker", "HostProvider", "HostTools", "WorkerContext"]

#: An event handler and the payload fields it takes (``None``: the payload positionally).
Handler = tuple[Callable[..., Any], tuple[str, ...] | None]


class HostAsker(Protocol):
    """The worker, as its proxies use it: a way to ask the host and wait for the answer."""

    async def ask(self, op: str, fields: dict[str, Any]) -> Any:
        """Send ``op`` with ``fields`` to the host; its result, or its error raised."""
        ...


class WorkerContext(PluginContext):
    """The plugin's ``ctx`` in its worker: tools, pipeline stages, providers and channel
    factories register into the worker's own HostContext (the host registers proxies of
    them), and event handlers are kept for the host's event proxies. The host's providers
    (of other plugins) are there as ``HostProvider`` proxies."""

    def __init__(self, host: HostContext, name: str, **options: Any) -> None:
        super().__init__(host, name, **options)
        self.handlers: dict[str, list[Handler]] = {}

    def register_http_app(self, app: Callable[..., Any]) -> None:
        """Refused in a worker: an ASGI app is called with the host's request objects."""
        raise NotIsolatable(
            self.name,
            "an HTTP app",
            "an ASGI app is called with the host's request objects (its receive and send "
            "callables), which cannot cross to a worker process; HTTP apps are served only "
            'from plugins that run in-process (isolation = "in-process")',
        )

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Handle ``event`` (the host dispatches it here through a proxy)."""
        if not event.isidentifier():
            raise ValueError(f"event names are identifiers, not {event!r}")
        names = _calling_convention(event, callback, None)
        self.handlers.setdefault(event, []).append(
            (callback, (names,) if isinstance(names, str) else names)
        )


class HostProvider(MethodProxy):
    """A provider of the host's (another plugin's), seen from the worker: its methods are
    coroutine functions that ask the host to call them. Arguments cross as JSON data (a
    ``Message`` as itself); results come back with objects as ``Record``s."""

    def __init__(self, worker: HostAsker, name: str, methods: dict[str, str]) -> None:
        async def call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            fields = {
                "provider": name,
                "method": method,
                "args": [arg_to_wire(arg) for arg in args],
                "kwargs": {key: arg_to_wire(value) for key, value in kwargs.items()},
            }
            return arg_from_wire(await worker.ask("provider", fields))

        super().__init__(name, methods, call, "the host's")


class HostTools:
    """The host's tools handed to a provider method in the worker (a gateway's
    ``ToolCaller``): ``names()`` and ``schemas()`` as they were at the call, and
    ``call(name, arguments)``, which asks the host to run the tool."""

    def __init__(self, worker: HostAsker, token: int, names: list[str], schemas: Any) -> None:
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
