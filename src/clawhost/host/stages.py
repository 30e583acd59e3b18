"""The first stages of a PluginHost: its state, and discover, load and resolve.

``HostStages`` holds what a host knows (its records, resolution, grants, registries);
``HostActivation`` (``activation.py``) builds on it, ``PluginHost`` (``host.py``) on that.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from clawhost._version import __version__
from clawhost.core import telemetry as _telemetry
from clawhost.core.background import Background
from clawhost.core.backoff import Backoff
from clawhost.core.state import PluginState, check_transition
from clawhost.discovery.discover import (
    DEFAULT_GROUP,
    Diagnostic,
    DiscoveredPlugin,
    DiscoveryResult,
    discover_plugins,
)
from clawhost.errors import (
    ClawhostError,
    PluginFailed,
    PluginNotFound,
)
from clawhost.runtime.context import HostContext
from clawhost.runtime.hostguard import HostGuard
from clawhost.runtime.loader import LoadProblem, new_plugin_manager
from clawhost.runtime.records import (
    PluginRecord,
)
from clawhost.surfaces.channels import ChannelHandler, ChannelSupervisor, default_handler

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.cache import DiscoveryCache
    from clawhost.host.warmstart import WarmStart
    from clawhost.reload.reports import ReloadEvent
    from clawhost.resolution.resolve import Resolution
    from clawhost.runtime.events import EventBus, Pipeline
    from clawhost.runtime.registry import (
        AdminRegistry,
        ChannelRegistry,
        ProviderRegistry,
        ToolRegistry,
    )

__all__ = ["HostStages"]

logger = logging.getLogger("clawhost.lifecycle")
S = PluginState


def _reason(error: BaseException) -> str:
    if isinstance(error, (ClawhostError, LoadProblem)):
        return str(error)
    return f"{type(error).__name__}: {error}"


class HostStages:
    """What a host knows, and the stages before activation (``PluginHost`` is the API)."""

    #: In-memory plugins whose manifest was given in code (``add_plugin(manifest=...)``).
    _memory_manifests: frozenset[str] = frozenset()

    def __init__(
        self,
        *,
        config: HostConfig | None = None,
        dirs: Sequence[str | Path] | None = None,
        group: str | None = None,
        path: Sequence[str] | None = None,
        host_version: str | None = None,
        cache: DiscoveryCache | bool | None = None,
        lazy: bool | None = None,
        context: HostContext | None = None,
        environ: Mapping[str, str] | None = None,
        drain_timeout: float = 10.0,
    ) -> None:
        from clawhost.config.host import HostConfig

        self.config = config if config is not None else HostConfig()
        settings = self.config.plugins
        self._dirs = [Path(d) for d in (dirs if dirs is not None else settings.dirs)]
        self._group = group or settings.entry_point_group or DEFAULT_GROUP
        self._path = path
        self.host_version = str(host_version or __version__)
        self._cache: DiscoveryCache | bool = (
            cache if cache is not None else settings.discovery_cache
        )
        self.lazy = settings.lazy_activation if lazy is None else lazy
        self._environ = environ if environ is not None else os.environ
        self.drain_timeout = drain_timeout
        self._records: dict[str, PluginRecord] = {}
        self._guard = HostGuard(self._records, self._ensure_active)
        self._guard.call_timeout = settings.call_timeout_secs
        self._context = context if context is not None else HostContext()
        self._context._guard = self._guard
        self._manager = new_plugin_manager()
        self._memory: list[DiscoveredPlugin] = []
        self._discovery: DiscoveryResult | None = None
        #: Names the cached discovery's content (``CachedPlugins.token``), else ``None``.
        self._discovery_token: str | None = None
        self._resolution: Resolution | None = None
        #: A matching warm start (clawhost.host.warmstart): it built the records, pending
        #: until first read; ``None`` once a resolve took the full path.
        self._warm: WarmStart | None = None
        self._eligible: dict[str, list[DiscoveredPlugin]] = {}
        # Effective permissions granted at load, by (plugin, version): reused at activation.
        self._grants: dict[tuple[str, str], Any] = {}
        self.diagnostics: list[Diagnostic] = []
        self._running = False
        self._reload_lock = anyio.Lock()
        # Supervision of worker processes (clawhost.host.supervision): background tasks, and
        # each restarted plugin's backoff.
        self._background = Background()
        self._backoffs: dict[str, Backoff] = {}
        # Supervised channels (clawhost.surfaces.channels), by (plugin, instance).
        self._channel_supervisors: dict[tuple[str, str], ChannelSupervisor] = {}
        #: What a supervised channel's messages go to: the response to send back, or
        #: ``None``. By default ``on_message_received`` is broadcast and the pipeline runs;
        #: ``clawhost.gateway.Gateway`` sets its own (pipeline, provider, tools).
        self.channel_handler: ChannelHandler = functools.partial(default_handler, self)
        self._reload_listeners: list[Callable[[ReloadEvent], Any]] = []

    # -- what applications use -------------------------------------------------------------

    async def _ensure_active(self, name: str) -> None:
        """Activate ``name`` now if it waits for first use (``HostActivation`` does)."""
        raise NotImplementedError

    @property
    def context(self) -> HostContext:
        """The HostContext holding everything the plugins registered."""
        return self._context

    @property
    def tools(self) -> ToolRegistry:
        """The tool registry: ``await host.tools.invoke(name, arguments)``, ``schemas(shape)``."""
        return self._context.tools

    @property
    def channels(self) -> ChannelRegistry:
        """The channel factories the plugins registered."""
        return self._context.channels

    @property
    def pipeline(self) -> Pipeline:
        """The ordered pipeline stages: ``await host.pipeline.process(message)``."""
        return self._context.pipeline

    @property
    def admin(self) -> AdminRegistry:
        """Admin commands: ``await host.admin.call("weather.cache_clear", {...})``."""
        return self._context.admin

    @property
    def providers(self) -> ProviderRegistry:
        """The named providers: ``host.providers.get(name)``."""
        return self._context.providers

    @property
    def events(self) -> EventBus:
        """The event bus: ``await host.events.dispatch(event, **payload)``."""
        return self._context.events

    @property
    def plugins(self) -> Mapping[str, PluginRecord]:
        """Every known plugin's record: state, version, manifest, timings, failure."""
        return MappingProxyType(self._records)

    @property
    def plan(self) -> Any:
        """The activation plan of the last resolution (``None`` before ``resolve()``)."""
        return self._resolution.plan if self._resolution is not None else None

    def _record(self, name: str) -> PluginRecord:
        if self._discovery is None:
            self.discover()
        try:
            return self._records[name]
        except KeyError:
            raise PluginNotFound(name, tuple(sorted(self._records))) from None

    # -- discover -----------------------------------------------------------------------------

    def discover(self) -> DiscoveryResult:
        """Find every plugin (never importing one) and create a record for each name."""
        started = time.perf_counter()
        with _telemetry.span("clawhost.discover", {"clawhost.group": self._group}):
            found = discover_plugins(
                group=self._group, path=self._path, dirs=self._dirs, cache=self._cache
            )
        result = (
            DiscoveryResult((*self._memory, *found.plugins), found.diagnostics, found.from_cache)
            if self._memory
            else found  # a warm one keeps its plugins encoded until first read
        )
        self._discovery = result
        self._discovery_token = found.token
        self.diagnostics = list(result.diagnostics)
        self._warm = None
        if not self._records:
            from clawhost.host import warmstart

            # A first discovery whose outcome was resolved cleanly before: records built
            # on first use, the plugins left encoded (clawhost.host.warmstart).
            self._warm = warmstart.prepare(self)
            if self._warm is not None:
                self._records.update(self._warm.records())
                logger.info(
                    "Discovered %d plugin(s) in %.1f ms",
                    len(self._records),
                    (time.perf_counter() - started) * 1e3,
                )
                return result
        for name, candidates in result.versions().items():
            record = self._records.get(name)
            settings = self.config.plugins.plugin_settings.get(name)  # None: the defaults
            if record is None:
                enabled = settings.enabled if settings is not None else True
                self._records[name] = PluginRecord(name, candidates, enabled=enabled)
            elif record.state not in (S.ACTIVE, S.ACTIVATING, S.DEACTIVATING):
                record.candidates = sorted(
                    candidates, key=lambda plugin: plugin.version, reverse=True
                )
        for diagnostic in result.diagnostics:
            if diagnostic.plugin in self._records:
                self._records[diagnostic.plugin].diagnostics.append(diagnostic)
        logger.info(
            "Discovered %d plugin(s) in %.1f ms%s",
            len(self._records),
            (time.perf_counter() - started) * 1e3,
            f", {len(result.diagnostics)} diagnostic(s)" if result.diagnostics else "",
        )
        return result

    # -- load ---------------------------------------------------------------------------------

    async def load(self, name: str) -> PluginRecord:
        """Check a plugin's candidate versions without importing them: manifests and
        permissions. Raises ``PluginFailed`` when no candidate is usable."""
        record = self._record(name)
        self._load(record)
        if record.state is S.FAILED and record.failure is not None:
            raise PluginFailed(name, "load", record.failure.reason) from record.failure.error
        return record

    def _load(self, record: PluginRecord) -> None:
        check_transition(record.name, record.state, S.LOADED)
        started = time.perf_counter()
        eligible: list[DiscoveredPlugin] = []
        refusals: list[BaseException] = []
        for candidate in record.candidates:
            try:
                candidate.manifest  # noqa: B018 - validates a manifest read from the cache
                self._grant(record.name, candidate)
            except Exception as exc:  # ManifestError, PermissionsRefused
                refusals.append(exc)
                record.diagnostics.append(
                    Diagnostic(
                        record.name, str(candidate.source), "load", f"{candidate.version}: {exc}"
                    )
                )
                continue
            eligible.append(candidate)
        record.time("load", time.perf_counter() - started)
        self._eligible[record.name] = eligible
        if not eligible:
            error = refusals[0] if refusals else None
            record.fail("load", _reason(error) if error else "no candidate version", error)
            return
        record.move(S.LOADED)
        logger.debug("Loaded %r (%d candidate version(s))", record.name, len(eligible))

    def _grant(self, name: str, candidate: DiscoveredPlugin) -> Any:
        """The candidate's effective permissions; ``PermissionsRefused`` if it asks too much."""
        from clawhost.sandbox.permissions import grant_from_config

        key = (name, str(candidate.version))
        granted = grant_from_config(
            name,
            candidate.manifest.permissions,
            self.config,
            package_dir=candidate.package_dir if candidate.source.target is None else None,
        )
        self._grants[key] = granted
        return granted

    # -- resolve ------------------------------------------------------------------------------

    async def resolve(self, *, extra_pins: Mapping[str, str] | None = None) -> Resolution:
        """Choose one version of every enabled plugin so that every dependency holds.

        Loads whatever is not loaded yet. A plugin that cannot be resolved is FAILED alone;
        active plugins keep the version they run, and so do those in ``extra_pins``
        (name -> version; hot reload keeps a reloading plugin's dependents that way).
        """
        from clawhost.host import warmstart
        from clawhost.resolution.resolve import resolve_plan

        if self._discovery is None:
            self.discover()
        # A first resolve with inputs unchanged since the last clean one is answered from
        # the outcome stored then (clawhost.host.warmstart), without parsing a manifest.
        warm = self._warm
        built = self._records.values() if warm is None else warm.filled
        first = (
            not extra_pins
            and (warm is None or not warm.resolved)
            and all(record.state in (S.DISCOVERED, S.DISABLED) for record in built)
        )
        recalled = warm.resolve(self._records) if first and warm is not None else None
        if recalled is not None:
            self._resolution = recalled
            logger.info("Resolved %d plugin(s) from the warm start", len(recalled.selected))
            return recalled
        self._warm = None
        for record in self._records.values():
            if record.state is S.DISCOVERED:
                self._load(record)
        started = time.perf_counter()
        pinned = {
            name: str(record.selected.version)
            for name, record in self._records.items()
            if record.selected is not None
            and record.state in (S.ACTIVE, S.ACTIVATING, S.DEACTIVATING)
        }
        candidates = [
            candidate
            for name, record in self._records.items()
            if record.state
            in (S.LOADED, S.RESOLVED, S.INACTIVE, S.ACTIVE, S.ACTIVATING, S.DEACTIVATING)
            for candidate in self._eligible.get(name, record.candidates)
        ]
        disabled = [name for name, record in self._records.items() if record.state is S.DISABLED]
        broken = {
            name: (record.failure.stage, record.failure.reason)
            for name, record in self._records.items()
            if record.state is S.FAILED and record.failure is not None
        }
        with _telemetry.span("clawhost.resolve", {"clawhost.candidates": len(candidates)}):
            resolution = resolve_plan(
                candidates,
                host_version=self.host_version,
                disabled=disabled,
                pinned=pinned,
                failed=broken,
            )
        self._resolution = resolution
        elapsed = time.perf_counter() - started
        for name, chosen in resolution.selected.items():
            record = self._records[name]
            if record.state in (S.LOADED, S.RESOLVED, S.INACTIVE):
                record.selected = chosen
                record.move(S.RESOLVED)
                record.time("resolve", elapsed)
                self.tools.undeclare(name)
                self.tools.declare(name, chosen.manifest.capabilities.tools)
        for name, error in resolution.failures.items():
            failed = self._records.get(name)
            if failed is not None and failed.state in (S.LOADED, S.RESOLVED, S.INACTIVE):
                self.tools.undeclare(name)
                failed.fail("resolve", str(error), error)
        logger.info(
            "Resolved %d plugin(s) in %.1f ms%s",
            len(resolution.selected),
            elapsed * 1e3,
            f"; {len(resolution.failures)} could not be resolved" if resolution.failures else "",
        )
        if first:
            warmstart.remember(self, resolution)
        return resolution
