"""How the HostContext calls into plugin code.

The registries never call plugin code directly: they go through a ``Guard``. A bare
``HostContext`` (``HostContext.test_context()``) uses ``DirectGuard``, which just calls and
awaits. A ``PluginHost`` installs its own guard, which applies each plugin's time limit,
concurrency limit and permissions, holds calls while the plugin hot-reloads, and
activates a lazily activated plugin on its first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from typing import Any, Protocol

__all__ = ["DirectGuard", "Guard", "InlineTarget", "Withdrawn"]


class InlineTarget(Protocol):
    """A plugin as the dispatch fast path sees it (a ``PluginRecord`` is one)."""

    gate: Any
    timeout: float | None
    scope: Any


class Withdrawn(Exception):
    """Raised by a guard when the target of a held call is gone after the plugin reloaded.

    Registries pass ``current``, a function that finds the target again; when a call had
    to wait for a reload and ``current()`` returns ``None``, the call is withdrawn.
    """


class Guard(Protocol):
    """The contract between the HostContext's registries and whoever runs plugin code."""

    async def call(
        self,
        owner: str,
        function: Callable[..., Any],
        /,
        *args: Any,
        operation: str,
        inline: bool = False,
        current: Callable[[], Callable[..., Any] | None] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``function`` (sync or async) of plugin ``owner`` and return its result.

        ``inline`` asks for a sync function to run on the event loop thread rather than in a
        worker thread (for quick callbacks such as event handlers). If the call has to wait
        for the plugin to reload, ``current()`` names what to call afterwards (the new
        code); ``None`` from it raises ``Withdrawn``.
        """
        ...

    def inline_target(self, owner: str) -> InlineTarget | None:
        """What a sync call into ``owner`` runs under (its gate, deadline and sandbox scope),
        or ``None`` to call it directly: the fast path of event dispatch."""
        ...

    async def ensure_active(self, owner: str) -> None:
        """Make sure plugin ``owner`` is active (lazy activation); a no-op when it is."""
        ...

    @property
    def reloading(self) -> Collection[str]:
        """The plugins whose calls are being held right now (they are reloading)."""
        ...

    @property
    def monitored(self) -> bool:
        """Whether every call must go through ``call`` (call monitors are installed)."""
        ...

    async def ready(self, owner: str) -> None:
        """Activate ``owner`` if needed and wait until it is not reloading.

        A call started right after this returns, with no ``await`` in between, is admitted
        at once.
        """
        ...


class GuardCell:
    """The guard a HostContext's registries use now; calling the cell returns it.

    The registries hold the cell, not the guard, because a host installs its guard into a
    context after creating it; event dispatch reads ``guard`` (an attribute is cheaper
    than a call on that path).
    """

    __slots__ = ("guard",)

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def __call__(self) -> Guard:
        return self.guard


class DirectGuard:
    """Calls plugin code as it is: no limits, no permissions. For bare test contexts."""

    async def call(
        self,
        owner: str,
        function: Callable[..., Any],
        /,
        *args: Any,
        operation: str,
        inline: bool = False,
        current: Callable[[], Callable[..., Any] | None] | None = None,
        **kwargs: Any,
    ) -> Any:
        result = function(*args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    def inline_target(self, owner: str) -> InlineTarget | None:
        return None

    async def ensure_active(self, owner: str) -> None:
        return None

    reloading: Collection[str] = frozenset()
    monitored = False

    async def ready(self, owner: str) -> None:
        return None
