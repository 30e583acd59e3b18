"""What the host's own procedures (reload, rescan, worker supervision) need of the host.

``PluginHost`` satisfies ``HostInternals``; the procedures in ``reloading.py``,
``rescan.py`` and ``supervision.py`` are typed against it rather than against
``PluginHost``, so they never import the class that calls them (no import circle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

    import anyio

    from clawhost.config.host import HostConfig
    from clawhost.core.background import Background
    from clawhost.core.backoff import Backoff
    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.discovery.discovered import DiscoveryResult
    from clawhost.reload.reports import ReloadEvent
    from clawhost.resolution.resolve import Resolution
    from clawhost.runtime.context import HostContext
    from clawhost.runtime.events import EventBus
    from clawhost.runtime.hostguard import HostGuard
    from clawhost.runtime.records import PluginRecord
    from clawhost.runtime.registry import ToolRegistry

__all__ = ["HostInternals"]


class HostInternals(Protocol):
    """The state and the steps of a host that its procedures drive."""

    config: HostConfig
    lazy: bool
    drain_timeout: float
    _records: dict[str, PluginRecord]
    _eligible: dict[str, list[DiscoveredPlugin]]
    _grants: dict[tuple[str, str], Any]
    _resolution: Resolution | None
    _reload_lock: anyio.Lock
    _background: Background
    _backoffs: dict[str, Backoff]
    _guard: HostGuard
    _context: HostContext

    @property
    def plan(self) -> Any: ...

    @property
    def tools(self) -> ToolRegistry: ...

    @property
    def events(self) -> EventBus: ...

    def _record(self, name: str) -> PluginRecord: ...

    def discover(self) -> DiscoveryResult: ...

    def _load(self, record: PluginRecord) -> None: ...

    async def resolve(self, *, extra_pins: Mapping[str, str] | None = None) -> Resolution: ...

    async def _activate_with_dependencies(
        self, record: PluginRecord, chain: tuple[str, ...]
    ) -> None: ...

    async def _activate_one(self, record: PluginRecord) -> None: ...

    async def _deactivate_one(self, record: PluginRecord) -> None: ...

    async def _roll_back(self, record: PluginRecord, *, forget: bool = False) -> None: ...

    async def deactivate(self, name: str) -> PluginRecord: ...

    def _enforces_capabilities(self, name: str, candidate: DiscoveredPlugin) -> bool: ...

    async def _notify_reload(self, event: ReloadEvent) -> None: ...

    async def reload(self, name: str) -> ReloadEvent: ...
