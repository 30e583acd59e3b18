"""What a provider sees of the tools: ``ToolCaller``, public as ``clawhost.gateway.ToolCaller``.

It lives in the runtime layer so that process isolation (``clawhost.worker``), which hands
a provider's tools across to a worker, can recognise one without importing the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from clawhost.runtime.registry import ToolRegistry
    from clawhost.runtime.tools import SchemaFormat

__all__ = ["ToolCaller", "ToolSource"]


class ToolSource(Protocol):
    """What a ``ToolCaller`` needs of the host: its tool registry (``PluginHost.tools``)."""

    @property
    def tools(self) -> ToolRegistry:
        """The registry of the tools, registered or declared by a lazy plugin."""
        ...


class ToolCaller:
    """What a provider sees of the tools: their schemas, and a way to call them."""

    # Its public home: reprs and the API reference say clawhost.gateway.ToolCaller.
    __module__ = "clawhost.gateway"

    def __init__(self, host: ToolSource) -> None:
        self._host = host
        self.calls: list[tuple[str, dict[str, Any], Any]] = []

    def names(self) -> list[str]:
        """Every tool a provider may call, registered yet or declared by a lazy plugin."""
        return [info.name for info in self._host.tools.list()]

    def schemas(self, shape: SchemaFormat = "openai") -> list[dict[str, Any]]:
        """The registered tools in one function-calling shape."""
        return self._host.tools.schemas(shape)

    async def call(self, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Call a tool; returns its result, or raises the tool's error."""
        result = await self._host.tools.invoke(name, dict(arguments or {}))
        self.calls.append((name, dict(arguments or {}), result))
        return result
