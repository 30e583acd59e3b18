"""The host's guard: every call into plugin code goes through here.

It applies the plugin's call gate (calls wait while the plugin hot-reloads), its time
limit, concurrency limit and permissions, and activates a lazily activated plugin on its
first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from clawhost.runtime.guard import Withdrawn
from clawhost.sandbox.limits import await_result, call_inline, call_plugin

if TYPE_CHECKING:
    from clawhost.runtime.records import PluginRecord

__all__ = ["CallMonitor", "HostGuard", "call_plugin_code", "monitored"]


class CallMonitor(Protocol):
    """Told about every call into plugin code (``PluginHost.add_call_monitor``).

    ``before`` returns a token (anything) that ``after`` receives for the same call, so
    calls running concurrently are paired correctly.
    """

    def before(
        self, plugin: str, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any: ...

    def after(
        self, token: Any, plugin: str, operation: str, result: Any, error: BaseException | None
    ) -> None: ...


async def monitored(  # noqa: PLR0917 - mirrors CallMonitor.before, plus the call
    monitors: list[CallMonitor],
    plugin: str,
    operation: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    call: Awaitable[Any],
) -> Any:
    """Await ``call``, telling every monitor before and after (with its own token)."""
    tokens = [(monitor, monitor.before(plugin, operation, args, kwargs)) for monitor in monitors]
    try:
        result = await call
    except BaseException as exc:
        for monitor, token in tokens:
            monitor.after(token, plugin, operation, None, exc)
        raise
    for monitor, token in tokens:
        monitor.after(token, plugin, operation, result, None)
    return result


async def call_plugin_code(
    record: PluginRecord,
    function: Callable[..., Any],
    /,
    *args: Any,
    operation: str,
    inline: bool = False,
    limited: bool = True,
    **kwargs: Any,
) -> Any:
    """Call plugin code with the record's limits and permissions, without its call gate.

    Lifecycle hooks use this directly (a reloading plugin's gate is closed while its
    deactivate and activate hooks run), with ``limited=False``: they do not take one of the
    plugin's concurrency slots. Everything else goes through ``HostGuard.call``.

    ``inline`` runs a sync function on the event loop thread under the loop watchdog
    (event handlers, quick tools) instead of in a worker thread.
    """
    if inline and not inspect.iscoroutinefunction(function):
        result = call_inline(
            function,
            *args,
            plugin=record.name,
            operation=operation,
            timeout=record.timeout,
            scope=record.scope,
            kwargs=kwargs,
        )
        if inspect.isawaitable(result):
            result = await await_result(
                result,
                plugin=record.name,
                operation=operation,
                timeout=record.timeout,
                scope=record.scope,
            )
        return result
    return await call_plugin(
        function,
        *args,
        plugin=record.name,
        operation=operation,
        timeout=record.timeout,
        scope=record.scope,
        limiter=record.limiter if limited else None,
        sync_in_thread=not inline,
        kwargs=kwargs,
    )


class HostGuard:
    """The ``Guard`` a PluginHost installs in its HostContext."""

    def __init__(
        self,
        records: Mapping[str, PluginRecord],
        ensure_active: Callable[[str], Awaitable[None]],
    ) -> None:
        #: The host's records, by plugin name (the host's own mapping, kept up to date).
        self._records = records
        #: Activates a lazily activated plugin (and its dependencies) on first use.
        self._ensure_active = ensure_active
        #: Plugins reloading right now; the reload transaction adds and removes them.
        self.reloading: set[str] = set()
        #: Call monitors (``add_monitor``); empty means no overhead.
        self.monitors: list[CallMonitor] = []
        #: Whether any monitor is installed: a plain attribute, read by every dispatch.
        self.monitored = False
        #: The overall deadline of one tool call as its caller sees it
        #: (``[plugins] call_timeout_secs``); ``None``: only the per-call limits.
        self.call_timeout: float | None = None

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
        if self.monitors:
            return await self._monitored(owner, function, args, kwargs, operation, inline, current)
        return await self._guarded(owner, function, args, kwargs, operation, inline, current)

    async def _guarded(  # noqa: PLR0917 - private, and positional on purpose (hot path)
        self,
        owner: str,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        operation: str,
        inline: bool,
        current: Callable[[], Callable[..., Any] | None] | None,
    ) -> Any:
        record = self._records.get(owner)
        if record is None:  # registered by the application itself, not a plugin
            result = function(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        gate = record.gate
        if not gate._open:
            await gate.wait_open()
            if current is not None:
                replacement = current()
                if replacement is None:
                    raise Withdrawn(f"{operation} of plugin {owner!r} is gone after its reload")
                function = replacement
        gate._inflight += 1
        try:
            return await call_plugin(
                function,
                *args,
                plugin=owner,
                operation=operation,
                timeout=record.timeout,
                scope=record.scope,
                limiter=record.limiter,
                sync_in_thread=not inline,
                kwargs=kwargs,
            )
        finally:
            gate.exit()

    def inline_target(self, owner: str) -> PluginRecord | None:
        return self._records.get(owner)

    def add_monitor(self, monitor: CallMonitor) -> Callable[[], None]:
        """Install a call monitor (``PluginHost.add_call_monitor``); returns its remover."""
        self.monitors.append(monitor)
        self.monitored = True

        def remove() -> None:
            if monitor in self.monitors:
                self.monitors.remove(monitor)
            self.monitored = bool(self.monitors)

        return remove

    async def _monitored(  # noqa: PLR0917 - private, mirrors _guarded
        self,
        owner: str,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        operation: str,
        inline: bool,
        current: Callable[[], Callable[..., Any] | None] | None,
    ) -> Any:
        return await monitored(
            self.monitors,
            owner,
            operation,
            args,
            kwargs,
            self._guarded(owner, function, args, kwargs, operation, inline, current),
        )

    async def ensure_active(self, owner: str) -> None:
        await self._ensure_active(owner)

    async def ready(self, owner: str) -> None:
        # A reloading plugin is briefly inactive: wait for the reload before anything else.
        record = self._records.get(owner)
        if record is not None and not record.gate.is_open:
            await record.gate.wait_open()
        await self._ensure_active(owner)
