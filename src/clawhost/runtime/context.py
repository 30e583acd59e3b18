"""HostContext (every registry) and PluginContext (one plugin's view, registering for it).

Plugins never touch the registries directly: each registers through its own
``PluginContext``, so every registration has an owner. The context refuses what the
manifest does not declare, and remembers what was registered so deactivation removes all
of it whatever the plugin's ``deactivate`` does.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clawhost.errors import ContextClosed, UndeclaredCapability, UndeclaredSurface
from clawhost.runtime.events import EventBus, OnError, Pipeline
from clawhost.runtime.guard import DirectGuard, Guard, GuardCell
from clawhost.runtime.registry import AdminRegistry, ChannelRegistry, ProviderRegistry, ToolRegistry
from clawhost.runtime.routes import HttpRoutes
from clawhost.runtime.tools import Tool

if TYPE_CHECKING:
    from clawhost.discovery.manifest import Capabilities, Manifest

__all__ = ["HostContext", "PluginContext", "Registrations"]


@dataclass(frozen=True, slots=True)
class Registrations:
    """What one plugin has registered, by kind."""

    tools: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    pipeline_stages: tuple[str, ...] = ()
    providers: tuple[str, ...] = ()
    events: tuple[str, ...] = ()
    #: The HTTP prefix its app is mounted at (``("/plugins/<name>/",)``), if any.
    http: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        """Whether nothing at all is registered (what deactivation must leave behind)."""
        return not (
            self.tools
            or self.channels
            or self.pipeline_stages
            or self.providers
            or self.events
            or self.http
            or self.admin
        )

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "tools": list(self.tools),
            "channels": list(self.channels),
            "pipeline_stages": list(self.pipeline_stages),
            "providers": list(self.providers),
            "events": list(self.events),
            "http": list(self.http),
            "admin": list(self.admin),
        }


class HostContext:
    """The registries every plugin registers into: tools, channel factories, pipeline
    stages, providers and event handlers."""

    def __init__(self, guard: Guard | None = None) -> None:
        current_guard = self._cell = GuardCell(guard if guard is not None else DirectGuard())
        self.events = EventBus(current_guard)
        self.tools = ToolRegistry(current_guard, self.events)
        self.channels = ChannelRegistry(current_guard)
        self.pipeline = Pipeline(current_guard)
        self.providers = ProviderRegistry(current_guard)
        #: Admin commands, ``namespace.method`` (``ctx.register_admin_command``).
        self.admin = AdminRegistry(current_guard)
        #: Plugins' HTTP apps, served by ``GatewayApp`` under ``/plugins/<name>/``.
        self.http = HttpRoutes()

    @property
    def _guard(self) -> Guard:
        """Whoever runs plugin code for this context's registries (a host installs its own)."""
        return self._cell.guard

    @_guard.setter
    def _guard(self, guard: Guard) -> None:
        self._cell.guard = guard

    @classmethod
    def test_context(cls) -> HostContext:
        """A fresh context that calls plugin code directly: for tests of one plugin."""
        return cls()

    @property
    def tool_registry(self) -> ToolRegistry:
        """The tools (the product guide's name for ``tools``)."""
        return self.tools

    def registrations(self, owner: str) -> Registrations:
        """Everything plugin ``owner`` has registered."""
        return Registrations(
            tools=tuple(self.tools.owned_by(owner)),
            channels=tuple(self.channels.owned_by(owner)),
            pipeline_stages=tuple(self.pipeline.owned_by(owner)),
            providers=tuple(self.providers.owned_by(owner)),
            events=tuple(self.events.owned_by(owner)),
            http=(f"/plugins/{owner}/",) if self.http.get(owner) is not None else (),
            admin=tuple(self.admin.owned_by(owner)),
        )

    def remove_owner(self, owner: str) -> Registrations:
        """Remove everything ``owner`` registered; returns what was removed."""
        return Registrations(
            tools=tuple(self.tools._remove_owner(owner)),
            channels=tuple(self.channels._remove_owner(owner)),
            pipeline_stages=tuple(self.pipeline._remove_owner(owner)),
            providers=tuple(self.providers._remove_owner(owner)),
            events=tuple(self.events._remove_owner(owner)),
            http=self.http.remove_owner(owner),
            admin=tuple(self.admin._remove_owner(owner)),
        )

    def plugin_context(
        self,
        name: str,
        *,
        version: str = "0.0.0",
        manifest: Manifest | None = None,
        config: Mapping[str, Any] | None = None,
        enforce_capabilities: bool | None = None,
    ) -> PluginContext:
        """A context registering on behalf of plugin ``name``.

        With a manifest, registrations must be declared in its capabilities (unless
        ``enforce_capabilities=False``); without one, anything may be registered.
        """
        enforce = manifest is not None if enforce_capabilities is None else enforce_capabilities
        declared = manifest.capabilities if (manifest is not None and enforce) else None
        return PluginContext(
            self, name, version=version, manifest=manifest, config=config, declared=declared
        )


Cleanup = Callable[[], Awaitable[Any] | Any]


@dataclass
class _Owned:
    cleanups: list[Cleanup] = field(default_factory=list)


class PluginContext:
    """One plugin's view of the host: it registers on the plugin's behalf.

    Plugins receive it as ``ctx`` in their lifecycle hooks.
    """

    def __init__(
        self,
        host: HostContext,
        name: str,
        *,
        version: str,
        manifest: Manifest | None,
        config: Mapping[str, Any] | None,
        declared: Capabilities | None,
    ) -> None:
        self._host = host
        self.name = name
        self.version = version
        self.manifest = manifest
        self.config: Mapping[str, Any] = config if config is not None else {}
        self._declared = declared
        self._owned = _Owned()
        # Closed by the host before it removes the plugin's registrations: a registration
        # from a thread or timer the plugin left running is then refused, not leaked. The
        # lock makes "check, then add" atomic with closing.
        self._closed = False
        self._lock = threading.Lock()

    @functools.cached_property
    def logger(self) -> logging.Logger:
        """The plugin's logger, ``clawhost.plugin.<name>`` (made when first used: a new
        logger takes the logging lock and links itself into the hierarchy)."""
        return logging.getLogger(f"clawhost.plugin.{self.name}")

    def __repr__(self) -> str:
        return f"<PluginContext {self.name} {self.version}>"

    @property
    def meter(self) -> Any:
        """The plugin's own OpenTelemetry meter (``opentelemetry.metrics.Meter``), named
        ``clawhost.plugin.<name>`` with the plugin's version: counters and histograms a
        plugin makes here reach the application's metrics exporter, if it has one, and
        cost nothing otherwise (the API's no-op meter)."""
        from opentelemetry import metrics

        return metrics.get_meter(f"clawhost.plugin.{self.name}", self.version or "")

    # -- what the plugin may use ---------------------------------------------------------

    @property
    def host(self) -> HostContext:
        """The whole HostContext (to look up what other plugins registered)."""
        return self._host

    @property
    def tools(self) -> ToolRegistry:
        """Every tool: a plugin may invoke another plugin's tools."""
        return self._host.tools

    @property
    def providers(self) -> ProviderRegistry:
        """Every provider: ``ctx.providers.get("geocoder")``."""
        return self._host.providers

    @property
    def channels(self) -> ChannelRegistry:
        return self._host.channels

    @property
    def pipeline(self) -> Pipeline:
        return self._host.pipeline

    @property
    def events(self) -> EventBus:
        return self._host.events

    # -- registering -----------------------------------------------------------------------

    def _check(self, kind: str, name: str, declared: tuple[str, ...] | None) -> None:
        if declared is not None and name not in declared:
            raise UndeclaredCapability(self.name, kind, name, declared)

    @contextmanager
    def _adding(self, kind: str, name: str) -> Iterator[None]:
        with self._lock:
            if self._closed:
                raise ContextClosed(self.name, kind, name)
            yield

    @property
    def closed(self) -> bool:
        """Whether the host has closed this context (the plugin was deactivated)."""
        return self._closed

    def _close(self) -> None:
        with self._lock:
            self._closed = True

    def register_tool(
        self,
        function: Tool[Any] | Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
    ) -> Tool[Any]:
        """Register a tool (a ``@tool`` function, or a plain typed function); returns it."""
        tool_ = (
            function
            if isinstance(function, Tool) and name is None and description is None
            else None
        )
        if tool_ is None:
            target = function.function if isinstance(function, Tool) else function
            tool_ = Tool(target, name=name, description=description)
        self._check("tool", tool_.name, self._declared.tools if self._declared else None)
        with self._adding("tool", tool_.name):
            self._host.tools._add(self.name, tool_.name, tool_)
        return tool_

    def register_channel_factory(self, name: str, factory: Callable[..., Any]) -> None:
        """Register a factory that builds channel ``name`` from its config mapping."""
        if not callable(factory):
            raise TypeError(f"channel factory {name!r} must be callable")
        self._check("channel", name, self._declared.channels if self._declared else None)
        with self._adding("channel", name):
            self._host.channels._add(self.name, name, factory)

    def register_pipeline_stage(
        self, name: str, stage: Any, *, order: int = 100, on_error: OnError = "drop"
    ) -> None:
        """Register a message stage (a callable, or an object with ``process(message)``).

        Stages run by ascending ``order``, then name; one returns the message (changed or
        not) or ``None`` to drop it.
        """
        self._check(
            "pipeline_stage", name, self._declared.pipeline_stages if self._declared else None
        )
        with self._adding("pipeline_stage", name):
            self._host.pipeline._add(self.name, name, stage, order, on_error)

    def register_provider(self, name: str, provider: Any) -> None:
        """Register a named provider (an LLM client, a geocoder, ...) for others to use."""
        self._check("provider", name, self._declared.providers if self._declared else None)
        with self._adding("provider", name):
            self._host.providers._add(self.name, name, provider)

    def register_http_app(self, app: Callable[..., Any]) -> None:
        """Serve ``app``, an ASGI application, under ``/plugins/<name>/`` of the host's
        gateway app (``host.http_app()``): its routes are its own, below that prefix. The
        manifest must declare ``[plugin.http]`` (when it is enforced); one app per plugin."""
        if not callable(app):
            raise TypeError(f"plugin {self.name!r}: an HTTP app must be an ASGI callable")
        if self._declared is not None and (self.manifest is None or self.manifest.http is None):
            raise UndeclaredSurface(self.name, "an HTTP app", "[plugin.http]")
        with self._adding("http app", f"/plugins/{self.name}/"):
            self._host.http.mount(self.name, app)

    def register_admin_command(
        self, method: str, handler: Callable[..., Any], *, namespace: str | None = None
    ) -> str:
        """Answer admin command ``namespace.method`` (namespace: the plugin's name by
        default) with ``handler``, called with the command's arguments as keywords; returns
        the command's full name. The manifest must declare it under
        ``[[plugin.admin.command]]`` (when enforced), and a namespace must be the plugin's
        name or below it, whatever the manifest says."""
        from clawhost.discovery.manifest import admin_namespace_of

        if not callable(handler):
            raise TypeError(f"admin command {method!r} must be callable")
        space = namespace or self.name
        name = f"{space}.{method}"
        if not admin_namespace_of(self.name, space) or not method.isidentifier():
            raise UndeclaredSurface(
                self.name, f"admin command {name!r} outside its namespace", "[plugin.admin]"
            )
        if self._declared is not None:
            declared = self.manifest.admin.names() if self.manifest and self.manifest.admin else ()
            if name not in declared:
                raise UndeclaredSurface(
                    self.name, f"admin command {name!r}", "[[plugin.admin.command]]"
                )
        with self._adding("admin command", name):
            self._host.admin._add(self.name, name, handler)
        return name

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Handle ``event``: the callback gets the event's first payload field, or the
        payload fields its parameters name."""
        with self._adding("event handler", event):
            self._host.events.subscribe(self.name, event, callback)

    def on_message_received(self, callback: Callable[..., Any]) -> None:
        """Call ``callback(message)`` for every message received."""
        self.on("on_message_received", callback)

    def on_response_sent(self, callback: Callable[..., Any]) -> None:
        """Call ``callback(response)`` for every response sent."""
        self.on("on_response_sent", callback)

    def add_cleanup(self, callback: Cleanup) -> None:
        """Run ``callback`` (sync or async) when the plugin is deactivated, last added first."""
        with self._adding("cleanup", getattr(callback, "__name__", repr(callback))):
            self._owned.cleanups.append(callback)

    def registrations(self) -> Registrations:
        """What this plugin has registered so far."""
        return self._host.registrations(self.name)

    def _take_cleanups(self) -> list[Cleanup]:
        cleanups, self._owned.cleanups = self._owned.cleanups, []
        return list(reversed(cleanups))
