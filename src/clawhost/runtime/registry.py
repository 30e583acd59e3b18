"""The registries of the HostContext: tools, channel factories and providers.

Every entry has an owner (the plugin that registered it), so deactivating a plugin can
remove everything it registered, and two plugins claiming one name is a reported
conflict, never a silent overwrite.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import GeneratorType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from clawhost.core import telemetry as _telemetry
from clawhost.errors import (
    ClawhostError,
    NotRegistered,
    PluginTimeout,
    RegistrationConflict,
    ToolArgumentsInvalid,
    ToolFailed,
    ToolNotFound,
)
from clawhost.runtime.providers import GuardedProvider
from clawhost.runtime.tools import SchemaFormat, Tool

if TYPE_CHECKING:
    from clawhost.runtime.guard import Guard

__all__ = ["ChannelRegistry", "NamedRegistry", "ProviderRegistry", "ToolInfo", "ToolRegistry"]

T = TypeVar("T")
logger = logging.getLogger("clawhost.tools")


_GUARD_OPTIONS = frozenset({"operation", "inline", "current"})


def _as_given(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as given, for call monitors to see (``_Run`` ignores them):
    none when they are not a mapping of names, or one clashes with the guard's options."""
    try:
        given = dict(arguments or {})
    except (TypeError, ValueError):
        return {}
    if not all(isinstance(key, str) for key in given) or not _GUARD_OPTIONS.isdisjoint(given):
        return {}
    return given


class NamedRegistry(Generic[T]):
    """Named entries of one kind, each owned by the plugin that registered it.

    Plugins register from their hooks, and a sync hook runs in a worker thread, so every
    change takes the registry's lock and every scan works on a snapshot.
    """

    kind = "entry"

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, T]] = {}
        # owner -> its names, so finding or removing one plugin's entries does not scan all.
        self._by_owner: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {sorted(self._entries)}>"

    def has(self, name: str) -> bool:
        """Whether ``name`` is registered."""
        return name in self._entries

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; ``NotRegistered`` if there is none."""
        try:
            return self._entries[name][1]
        except KeyError:
            raise NotRegistered(self.kind, name, tuple(self.names())) from None

    def owner_of(self, name: str) -> str | None:
        """The plugin that registered ``name``, if any."""
        entry = self._entries.get(name)
        return entry[0] if entry else None

    def owned_by(self, owner: str) -> list[str]:
        """The names plugin ``owner`` registered."""
        return sorted(self._by_owner.get(owner, ()))

    def _add(self, owner: str, name: str, item: T) -> None:
        with self._lock:
            existing = self._entries.get(name)
            if existing is not None:
                raise RegistrationConflict(self.kind, name, existing[0], owner)
            self._entries[name] = (owner, item)
            self._by_owner.setdefault(owner, set()).add(name)

    def _remove_owner(self, owner: str) -> list[str]:
        with self._lock:
            removed = sorted(self._by_owner.pop(owner, ()))
            for name in removed:
                del self._entries[name]
        return removed


class ProviderRegistry(NamedRegistry[Any]):
    """Named LLM or service providers, looked up by the application or by other plugins.

    ``get`` returns a plugin's provider guarded (``GuardedProvider``): every call into it
    runs in the plugin's sandbox scope and under its deadline, and errors name the plugin.
    Providers the application registers, those of a test context, and proxies of
    providers in worker processes (guarded on the worker's side) come back as they are.
    """

    kind = "provider"

    def __init__(self, guard: Callable[[], Guard] | None = None) -> None:
        super().__init__()
        self._guard = guard
        self._proxies: dict[str, GuardedProvider] = {}

    def registration(self, name: str) -> tuple[str, Any]:
        """``(owner, object)`` registered as ``name``: the plugin's own object, unguarded."""
        try:
            return self._entries[name]
        except KeyError:
            raise NotRegistered(self.kind, name, tuple(self.names())) from None

    def get(self, name: str) -> Any:
        """The provider registered as ``name``, guarded; ``NotRegistered`` if there is none."""
        owner, target = self.registration(name)
        if (
            self._guard is None
            or self._guard().inline_target(owner) is None
            or getattr(type(target), "__clawhost_no_plugin_code__", False)
        ):
            return target
        proxy = self._proxies.get(name)
        if proxy is None:
            proxy = self._proxies.setdefault(name, GuardedProvider(self, name, self._guard))
        return proxy


class AdminRegistry(NamedRegistry[Callable[..., Any]]):
    """Admin commands, ``namespace.method``: ``await host.admin.call(name, args)`` runs one
    under its plugin's limits, with ``args`` as keyword arguments."""

    kind = "admin command"

    def __init__(self, guard: Callable[[], Guard]) -> None:
        super().__init__()
        self._guard = guard

    async def call(self, name: str, args: Mapping[str, Any] | None = None) -> Any:
        """Run admin command ``name``; its result, or the plugin's error.
        ``NotRegistered`` when no plugin answers ``name``."""
        handler = self.get(name)
        owner = self.owner_of(name)
        assert owner is not None
        return await self._guard().call(
            owner, handler, operation=f"admin {name}", **dict(args or {})
        )


class ChannelRegistry(NamedRegistry[Callable[..., Any]]):
    """Channel factories: ``create(name, config)`` builds a channel through its factory."""

    kind = "channel"

    def __init__(self, guard: Callable[[], Guard]) -> None:
        super().__init__()
        self._guard = guard

    async def create(self, name: str, config: Mapping[str, Any] | None = None) -> Any:
        """Build a channel with the factory registered as ``name``."""
        factory = self.get(name)
        owner = self.owner_of(name)
        assert owner is not None
        return await self._guard().call(
            owner, factory, dict(config or {}), operation=f"create channel {name}"
        )


@dataclass(frozen=True, slots=True)
class ToolInfo:
    """What the host knows of one tool, registered or only declared by a manifest."""

    name: str
    plugin: str
    registered: bool
    description: str | None


class ToolRegistry(NamedRegistry[Tool[Any]]):
    """Every tool, its owner, schemas for function calling, and ``invoke``.

    Tools a manifest declares are known before the plugin is imported: ``list()`` shows
    them, and with lazy activation the first ``invoke`` activates their plugin (once, even
    under concurrent first calls).
    """

    kind = "tool"

    def __init__(self, guard: Callable[[], Guard], events: Any = None) -> None:
        super().__init__()
        self._guard = guard
        self._declared: dict[str, str] = {}
        self._declared_by: dict[str, list[str]] = {}
        self._events = events

    def declare(self, owner: str, names: tuple[str, ...]) -> None:
        """Record the tools a plugin's manifest declares (for listing and lazy activation)."""
        with self._lock:
            for name in names:
                if self._declared.setdefault(name, owner) == owner:
                    self._declared_by.setdefault(owner, []).append(name)

    def declarations(self) -> tuple[dict[str, str], dict[str, builtins.list[str]]]:
        """What ``declare`` recorded: tool -> plugin, and plugin -> its tools (copies)."""
        with self._lock:
            by = {owner: list(names) for owner, names in self._declared_by.items()}
            return dict(self._declared), by

    def restore_declarations(
        self, declared: dict[str, str], by: dict[str, builtins.list[str]]
    ) -> None:
        """Take ``declarations()`` as saved earlier, for a registry that has none yet
        (a warm start: one step instead of a ``declare`` per plugin). The registry keeps
        the two dicts given."""
        with self._lock:
            if self._declared or self._declared_by:
                raise RuntimeError("restore_declarations needs a registry with no declarations")
            self._declared = declared
            self._declared_by = by

    def undeclare(self, owner: str) -> None:
        """Forget what ``owner`` declared (it was unloaded or failed)."""
        with self._lock:
            for name in self._declared_by.pop(owner, ()):
                if self._declared.get(name) == owner:
                    del self._declared[name]

    def declared_owner(self, name: str) -> str | None:
        """The plugin that registered ``name``, else the one whose manifest declares it."""
        return self.owner_of(name) or self._declared.get(name)

    def list(self) -> builtins.list[ToolInfo]:
        """Registered tools and declared ones whose plugin is not active yet."""
        infos = {
            name: ToolInfo(name, owner, True, tool.description)
            for name, (owner, tool) in list(self._entries.items())
        }
        for name, owner in list(self._declared.items()):
            infos.setdefault(name, ToolInfo(name, owner, False, None))
        return [infos[name] for name in sorted(infos)]

    def schemas(self, shape: SchemaFormat = "openai") -> builtins.list[dict[str, Any]]:
        """Every registered tool in one function-calling shape (OpenAI, Anthropic or MCP)."""
        return [tool.schema(shape) for _, (_, tool) in sorted(self._entries.items())]

    def _current_call(self, name: str, run: _Run) -> Callable[..., Any] | None:
        # After a reload: the same call (arguments, jsonable) on the tool registered now.
        entry = self._entries.get(name)
        return run.retarget(entry[1]) if entry else None

    async def invoke(
        self, name: str, arguments: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Any:
        """Validate the arguments, call the tool under its plugin's limits, return the result.

        The arguments are validated inside the plugin's sandbox scope and deadline, like
        the call itself: a validator the plugin defined is plugin code. Raises
        ``ToolNotFound``, ``ToolArgumentsInvalid`` (every problem listed),
        ``PluginTimeout`` when the call overruns its limit or the host's overall deadline
        (``[plugins] call_timeout_secs``: lazy activation, a reload, the wait for a slot
        and the call itself), or ``ToolFailed`` (with the tool's own exception as
        ``__cause__``).
        """
        if kwargs:
            arguments = {**(arguments or {}), **kwargs}
        return await self._within_call_timeout(name, arguments, jsonable=False)

    async def invoke_jsonable(
        self, name: str, arguments: Mapping[str, Any] | None = None, /, **kwargs: Any
    ) -> Any:
        """``invoke``, with the result converted to JSON data (pydantic's
        ``to_jsonable_python``, ``repr`` for what it cannot convert) inside the plugin's
        sandbox scope and deadline, since serializers the plugin defined are plugin code.
        A result that cannot be converted at all comes back as its ``repr``."""
        if kwargs:
            arguments = {**(arguments or {}), **kwargs}
        return await self._within_call_timeout(name, arguments, jsonable=True)

    async def _within_call_timeout(
        self, name: str, arguments: Mapping[str, Any] | None, *, jsonable: bool
    ) -> Any:
        """``_invoke`` under the host's overall deadline (``[plugins] call_timeout_secs``)."""
        limit: float | None = getattr(self._guard(), "call_timeout", None)
        if limit is None:
            return await self._invoke(name, arguments, jsonable)
        with anyio.move_on_after(limit) as scope:
            return await self._invoke(name, arguments, jsonable)
        owner = self.declared_owner(name) or "?"
        operation = f"tool {name} ([plugins] call_timeout_secs)"
        raise PluginTimeout(owner, operation, limit, interrupted=scope.cancelled_caught)

    async def _invoke(self, name: str, arguments: Mapping[str, Any] | None, jsonable: bool) -> Any:
        guard = self._guard()
        owner = self.declared_owner(name)
        if owner is None:
            raise ToolNotFound(name, tuple(sorted({*self._entries, *self._declared})))
        # Activate the plugin if it is lazy, and wait out a reload; from here to the call
        # there is no await, so the call is admitted to the code that is current now.
        await guard.ready(owner)
        entry = self._entries.get(name)
        if entry is None:
            raise ToolNotFound(name, tuple(sorted(self._entries)))
        owner, tool = entry
        run = _Run(tool, arguments, jsonable)
        span = _telemetry.span("clawhost.tool", {"clawhost.plugin": owner, "clawhost.tool": name})
        started = time.perf_counter()
        error: BaseException | None = None
        result: Any = None
        with span:
            try:
                operation = f"tool {name}"
                current = functools.partial(self._current_call, name, run)
                result = await guard.call(
                    owner,
                    run.target,
                    operation=operation,
                    inline=not tool.thread,
                    current=current,
                    **_as_given(arguments),
                )
            except TimeoutError as exc:  # PluginTimeout: clear as it is
                error = exc
                raise
            except ToolArgumentsInvalid as exc:
                if run.values is None and exc.tool == name:
                    raise  # the arguments are invalid: nothing was called, nothing to record
                error = exc
                if exc.tool == name:  # validated where it runs: a worker process (_isolation)
                    raise
                raise ToolFailed(name, owner, f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:
                error = exc
                raise ToolFailed(name, owner, f"{type(exc).__name__}: {exc}") from exc
            finally:
                if error is not None or run.values is not None:
                    duration = time.perf_counter() - started
                    _telemetry.record_tool_call(owner, name, duration, error)
                    if self._events is not None and self._events.has_handlers("on_tool_called"):
                        await self._events.dispatch(
                            "on_tool_called",
                            tool=name,
                            arguments=dict(
                                run.values if run.values is not None else run.arguments or {}
                            ),
                            result=run.result,
                            error=error,
                            duration=duration,
                        )
        return result


class _Run:
    """One tool call as plugin code: validate the arguments, call, convert the result.

    ``target`` is what the guard runs under the plugin's scope and deadline (a coroutine
    function for an async tool, so validation runs in its first step, under the
    watchdog; a plain function otherwise, run in a worker thread or inline). ``values``
    (the validated arguments) and ``result`` (what the tool returned) are kept for
    ``on_tool_called``.
    """

    __slots__ = ("arguments", "jsonable", "result", "target", "tool", "values")

    def __init__(self, tool: Tool[Any], arguments: Mapping[str, Any] | None, jsonable: bool):
        self.arguments = arguments
        self.jsonable = jsonable
        self.values: dict[str, Any] | None = None
        self.result: Any = None
        self.tool = tool
        self.target: Callable[..., Any] = self._run_async if tool.is_async else self._run

    def retarget(self, tool: Tool[Any]) -> Callable[..., Any]:
        self.tool = tool
        self.target = self._run_async if tool.is_async else self._run
        return self.target

    def _run(self, **_given: Any) -> Any:
        tool = self.tool
        self.values = values = tool.validate(self.arguments)
        result = tool.function(**values)
        if _is_awaitable(result):  # a sync function that returned an awaitable
            return self._finish_later(result)
        self.result = result
        return _to_jsonable(result) if self.jsonable else result

    async def _finish_later(self, awaitable: Any) -> Any:
        self.result = result = await awaitable
        return _to_jsonable(result) if self.jsonable else result

    async def _run_async(self, **_given: Any) -> Any:
        tool = self.tool
        self.values = values = tool.validate(self.arguments)
        self.result = result = await tool.function(**values)
        return _to_jsonable(result) if self.jsonable else result


def _is_awaitable(value: object) -> bool:
    # As in the guard: the type's __await__ answers for all but generator-based coroutines.
    return hasattr(type(value), "__await__") or (
        isinstance(value, GeneratorType) and inspect.isawaitable(value)
    )


def _to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(value, fallback=repr)
    except (TypeError, ValueError) as exc:  # e.g. bytes that are not UTF-8
        cause = exc.__cause__  # what a serializer raised: pydantic wraps even BaseExceptions
        if isinstance(cause, ClawhostError) or (cause and not isinstance(cause, Exception)):
            raise cause from None  # the sandbox or the deadline stopped it: that stands
        return repr(value)
