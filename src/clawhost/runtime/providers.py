"""Provider objects as everyone else sees them: each call runs under its plugin's guard.

``providers.get(name)`` returns a ``GuardedProvider`` for a provider a plugin registered:

* reading an attribute and calling a plain method run inline, on the caller's thread, in
  the plugin's sandbox scope and under its deadline (the watchdog interrupts a method
  that runs past it, as it does an event handler);
* a coroutine method stays a coroutine function, awaited through the guard like a tool:
  it waits while the plugin reloads, counts against the plugin's concurrency limit, and
  is cut off at the deadline;
* an error raised in the plugin's code carries a note naming the provider and the plugin.

Every call finds the provider by name, so a provider kept by another plugin reaches the
new object after its plugin reloads. Objects a method returns are not wrapped, and
iterating a generator it returns runs in the caller's scope. Providers the application
registers itself (and every provider of a test context) are returned as they are.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from clawhost.sandbox.limits import call_inline

if TYPE_CHECKING:
    from clawhost.runtime.guard import Guard

__all__ = ["GuardedProvider", "Registrations"]


class Registrations(Protocol):
    """What a guarded provider needs of its registry."""

    def registration(self, name: str) -> tuple[str, Any]:
        """``(owner, object)`` registered as ``name``; ``NotRegistered`` if there is none."""
        ...


def _is_async(value: object) -> bool:
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(
        getattr(value, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


def _call(target: Any, attr: str | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    function = target if attr is None else getattr(target, attr)
    return function(*args, **kwargs)


class GuardedProvider:
    """The provider registered as ``name``, every call into it guarded (see the module).

    ``__wrapped__`` is the plugin's own object, for code that must bypass the guard (it
    then runs the plugin's code outside the plugin's limits).
    """

    __slots__ = ("_clawhost_guard", "_clawhost_methods", "_clawhost_name", "_clawhost_registry")

    def __init__(self, registry: Registrations, name: str, guard: Callable[[], Guard]) -> None:
        object.__setattr__(self, "_clawhost_registry", registry)
        object.__setattr__(self, "_clawhost_name", name)
        object.__setattr__(self, "_clawhost_guard", guard)
        object.__setattr__(self, "_clawhost_methods", {})

    @property
    def __wrapped__(self) -> Any:
        return self._clawhost_registry.registration(self._clawhost_name)[1]

    def __repr__(self) -> str:
        owner = self._clawhost_registry.registration(self._clawhost_name)[0]
        return f"<provider {self._clawhost_name!r} of plugin {owner!r}>"

    def __dir__(self) -> list[str]:
        return sorted(self._inline(None, dir, ()))

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(f"{self!r}: set attributes on the plugin's side, not on its proxy")

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_clawhost_"):
            raise AttributeError(attr)
        method = self._clawhost_methods.get(attr)
        if method is not None:
            return method
        value = self._inline(attr, getattr, (attr,))
        if not callable(value) or isinstance(value, type):
            return value  # data and classes as they are (a property was read in scope)
        method = self._method(attr, _is_async(value))
        self._clawhost_methods[attr] = method
        return method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the provider itself, when it is a callable."""
        method = self._clawhost_methods.get("__call__")
        if method is None:
            method = self._method(None, _is_async(self.__wrapped__))
            self._clawhost_methods["__call__"] = method
        return method(*args, **kwargs)

    # -- the guard ----------------------------------------------------------------------------

    def _operation(self, attr: str | None) -> str:
        name = self._clawhost_name
        return f"provider {name}" if attr is None else f"provider {name}.{attr}"

    def _noted(self, exc: BaseException, owner: str, attr: str | None) -> None:
        where = f"provider {self._clawhost_name!r}" + ("" if attr is None else f" ({attr})")
        exc.add_note(f"raised in {where} of plugin {owner!r}")

    def _inline(
        self,
        attr: str | None,
        function: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        """``function(provider, *args, **kwargs)`` in the plugin's scope, under its deadline."""
        owner, target = self._clawhost_registry.registration(self._clawhost_name)
        limits = self._clawhost_guard().inline_target(owner)
        if limits is None:
            return function(target, *args, **(kwargs or {}))
        try:
            return call_inline(
                function,
                target,
                *args,
                plugin=owner,
                operation=self._operation(attr),
                timeout=limits.timeout,
                scope=limits.scope,
                kwargs=kwargs or {},
            )
        except Exception as exc:
            self._noted(exc, owner, attr)
            raise

    def _method(self, attr: str | None, asynchronous: bool) -> Callable[..., Any]:
        name = "__call__" if attr is None else attr
        if not asynchronous:

            def method(*args: Any, **kwargs: Any) -> Any:
                return self._inline(attr, _call, (attr, args, kwargs))

        else:
            registry, guard = self._clawhost_registry, self._clawhost_guard
            operation = self._operation(attr)

            async def method(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
                current = guard()
                owner = registry.registration(self._clawhost_name)[0]
                if current.inline_target(owner) is not None:
                    await current.ready(owner)  # a reloading plugin: wait for its new version
                owner, target = registry.registration(self._clawhost_name)
                function = target if attr is None else getattr(target, attr)
                try:
                    return await current.call(owner, function, *args, operation=operation, **kwargs)
                except Exception as exc:
                    self._noted(exc, owner, attr)
                    raise

        method.__name__ = method.__qualname__ = name
        return method
