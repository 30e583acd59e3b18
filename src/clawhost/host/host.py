"""PluginHost: discover → load → resolve → activate → deactivate, one plugin failing alone.

``async with PluginHost.from_config("config.toml") as host`` runs the whole lifecycle; each
stage is also a method of its own. A plugin that cannot be loaded, resolved or activated
is FAILED with its stage and reason, its partial registrations are removed, the plugins
depending on it are skipped with "dependency X failed", and every other plugin goes on.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType
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
    PluginSource,
    SourceKind,
    discover_plugins,
)
from clawhost.errors import (
    ClawhostError,
    DependencyFailed,
    PluginFailed,
    PluginNotFound,
)
from clawhost.hookspecs import EVENT_HOOKS
from clawhost.reload.transaction import forget_modules
from clawhost.runtime.context import HostContext
from clawhost.runtime.hostguard import CallMonitor, HostGuard, call_plugin_code, monitored
from clawhost.runtime.loader import LoadProblem, import_plugin, new_plugin_manager, register
from clawhost.runtime.records import (
    HealthReport,
    PluginRecord,
    needs_eager_activation,
    retry_resolution_failures,
)
from clawhost.surfaces.channels import ChannelHandler, ChannelSupervisor, default_handler
from clawhost.worker.supervise import cancel_restart

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.cache import DiscoveryCache
    from clawhost.discovery.manifest import Manifest
    from clawhost.discovery.project import PluginProject
    from clawhost.reload.rescan import RescanReport
    from clawhost.reload.transaction import ReloadEvent
    from clawhost.resolution.resolve import Resolution
    from clawhost.runtime.context import PluginContext
    from clawhost.runtime.events import EventBus, Pipeline
    from clawhost.runtime.registry import (
        AdminRegistry,
        ChannelRegistry,
        ProviderRegistry,
        ToolRegistry,
    )
    from clawhost.surfaces.http import GatewayApp

__all__ = ["PluginHost"]

logger = logging.getLogger("clawhost.lifecycle")
S = PluginState


def _reason(error: BaseException) -> str:
    if isinstance(error, (ClawhostError, LoadProblem)):
        return str(error)
    return f"{type(error).__name__}: {error}"


class PluginHost:
    """Discovers, loads, resolves, activates and deactivates plugins into a HostContext.

    Use it as an async context manager (``start()`` on entry, ``stop()`` on exit), or call
    the stages yourself: ``discover()``, ``load(name)``, ``resolve()``, ``activate(name)``,
    ``deactivate(name)``, ``health_check(name)``.
    """

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
        self._guard = HostGuard(self)
        self._context = context if context is not None else HostContext()
        self._context._guard = self._guard
        self._manager = new_plugin_manager()
        self._memory: list[DiscoveredPlugin] = []
        self._discovery: DiscoveryResult | None = None
        self._resolution: Resolution | None = None
        self._eligible: dict[str, list[DiscoveredPlugin]] = {}
        # Effective permissions granted at load, by (plugin, version): reused at activation.
        self._grants: dict[tuple[str, str], Any] = {}
        self.diagnostics: list[Diagnostic] = []
        self._running = False
        self._reload_lock = anyio.Lock()
        # Supervision of worker processes (clawhost.worker.supervise): background tasks, and
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

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> PluginHost:
        """A host configured from a ``config.toml`` (``ConfigError`` if it is invalid)."""
        from clawhost.config.host import load_host_config

        return cls(config=load_host_config(path), **overrides)

    # -- what applications use -------------------------------------------------------------

    @property
    def context(self) -> HostContext:
        """The HostContext holding everything the plugins registered."""
        return self._context

    @property
    def tools(self) -> ToolRegistry:
        return self._context.tools

    @property
    def channels(self) -> ChannelRegistry:
        return self._context.channels

    @property
    def pipeline(self) -> Pipeline:
        return self._context.pipeline

    @property
    def admin(self) -> AdminRegistry:
        """Admin commands: ``await host.admin.call("weather.cache_clear", {...})``."""
        return self._context.admin

    @property
    def providers(self) -> ProviderRegistry:
        return self._context.providers

    @property
    def events(self) -> EventBus:
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
        result = DiscoveryResult(
            (*self._memory, *found.plugins), found.diagnostics, found.from_cache
        )
        self._discovery = result
        self.diagnostics = list(result.diagnostics)
        for name, candidates in result.versions().items():
            record = self._records.get(name)
            settings = self.config.settings_for(name)
            if record is None:
                self._records[name] = PluginRecord(name, candidates, enabled=settings.enabled)
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
        from clawhost.sandbox.permissions import grant_permissions

        key = (name, str(candidate.version))
        sandbox = self.config.sandbox_for(name)
        granted = grant_permissions(
            name,
            candidate.manifest.permissions,
            fs_allowed=[str(path) for path in sandbox.fs_allowed],
            net_allowed=sandbox.net_allowed,
            allow_subprocess=sandbox.allow_subprocess,
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
        from clawhost.resolution.resolve import resolve_plan

        if self._discovery is None:
            self.discover()
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
        return resolution

    # -- activate -----------------------------------------------------------------------------

    async def activate(self, name: str, context: HostContext | None = None) -> PluginRecord:
        """Activate a plugin (its dependencies first); raises ``PluginFailed`` if it fails.

        ``context`` may name the HostContext to register into, as long as no plugin is
        active yet (the product guide's test flow); by default it is ``host.context``.
        """
        if context is not None and context is not self._context:
            if any(record.state is S.ACTIVE for record in self._records.values()):
                raise ValueError("plugins are active in another HostContext; deactivate them first")
            context._guard = self._guard
            self._context = context
        record = self._record(name)
        if record.state in (S.DISCOVERED, S.LOADED):
            await self.resolve()
        check_transition(name, record.state, S.ACTIVATING)
        await self._activate_with_dependencies(record, chain=())
        if record.state is not S.ACTIVE:
            failure = record.failure
            reason = failure.reason if failure else f"ended {record.state.name}"
            raise PluginFailed(name, "activate", reason) from (failure.error if failure else None)
        return record

    async def _activate_with_dependencies(
        self, record: PluginRecord, chain: tuple[str, ...]
    ) -> None:
        plan = self.plan
        for dependency in sorted(plan.requires(record.name)) if plan is not None else ():
            other = self._records[dependency]
            if other.state in (S.RESOLVED, S.INACTIVE, S.ACTIVATING) and dependency not in chain:
                await self._activate_with_dependencies(other, (*chain, record.name))
            if other.state is not S.ACTIVE:
                self._skip(record, dependency)
                return
        await self._activate_one(record)

    def _skip(self, record: PluginRecord, dependency: str) -> None:
        other = self._records[dependency]
        failure = other.failure
        cause = failure.reason if failure else f"it is {other.state.name}"
        error = DependencyFailed(
            record.name, dependency, cause, stage=failure.stage if failure else None
        )
        if record.state is S.ACTIVATING:
            record.fail("activate", str(error), error)
        else:
            record.move(S.ACTIVATING)
            record.fail("activate", str(error), error)

    async def _activate_one(self, record: PluginRecord) -> None:
        """Import, register and activate one plugin whose dependencies are active.

        Never raises for the plugin's own failures: they are recorded on the record.
        """
        async with record.lock:
            if record.state is S.ACTIVE:
                return
            if record.state not in (S.RESOLVED, S.INACTIVE):
                return
            record.move(S.ACTIVATING)
            candidate = record.selected
            assert candidate is not None
            version = str(candidate.version)
            logger.info("Activating %r v%s", record.name, version)
            started = time.perf_counter()
            ok = False
            with _telemetry.span(
                "clawhost.activate", {"clawhost.plugin": record.name, "clawhost.version": version}
            ):
                try:
                    await self._bring_up(record, candidate)
                    ok = True
                except Exception as exc:
                    await self._roll_back(record, forget=True)
                    record.fail("activate", _reason(exc), exc)
                except BaseException:  # cancelled mid-activation: leave nothing behind
                    with anyio.CancelScope(shield=True):
                        await self._roll_back(record, forget=True)
                    record.fail("activate", "cancelled")
                    raise
            elapsed = time.perf_counter() - started
            record.time("activate", elapsed)
            _telemetry.record_lifecycle(record.name, "activate", elapsed, ok)
            if not ok:
                return
            record.activated_at = time.time()
            record.move(S.ACTIVE)
            self._check_declared(record)
            registered = self._context.registrations(record.name)
            logger.info(
                "Plugin %r v%s active in %.1f ms%s",
                record.name,
                version,
                elapsed * 1e3,
                f" (tools: {', '.join(registered.tools)})" if registered.tools else "",
            )
        await self.events.dispatch("on_plugin_activated", plugin=record.name, version=version)
        self._start_channels(record)

    def _start_channels(self, record: PluginRecord) -> None:
        """Run the plugin's configured channel instances (``[plugins.<name>.channels]``)."""
        for instance, settings in self.config.settings_for(record.name).channels.items():
            supervisor = ChannelSupervisor(self, record.name, instance, settings)
            self._channel_supervisors[(record.name, instance)] = supervisor
            self._background.start_soon(("channel", record.name, instance), supervisor.run)

    async def _stop_channels(self, name: str) -> None:
        for key in self._background.running():
            if isinstance(key, tuple) and key[:2] == ("channel", name):
                await self._background.stop(key)

    def channel_status(self) -> list[dict[str, Any]]:
        """Every supervised channel instance now: plugin, channel, instance, state
        (starting, running, backoff, stopped, failed), last error, restarts, since and
        the next restart's time (``time.time()``)."""
        return [
            supervisor.status().to_dict()
            for _, supervisor in sorted(self._channel_supervisors.items())
        ]

    async def _bring_up(self, record: PluginRecord, candidate: DiscoveredPlugin) -> None:
        self._prepare_limits(record, candidate)
        record.config = self._plugin_config(record, candidate)
        # -- process isolation (clawhost.worker.isolation): a worker process imports and
        # activates the plugin; proxies are registered here, the worker's close() is a
        # context cleanup (so _roll_back reaps it) and record.hooks reach it.
        sandbox = self.config.sandbox_for(record.name)
        if sandbox.isolation == "process":
            from clawhost.worker.isolation import activate_isolated

            enforce = self._enforces_capabilities(record.name, candidate)
            await activate_isolated(
                self._new_context(record, candidate, enforce),
                record,
                candidate,
                sandbox=sandbox,
                enforce_capabilities=enforce,
                on_death=self._worker_died,
            )
            return
        # -- end of process isolation
        target, modules = await self._lifecycle_call(
            # Inline on the loop thread, under the watchdog: imports serialize on the import
            # lock anyway, and a hundred concurrent worker threads only fight over it.
            record,
            import_plugin,
            candidate,
            record,
            operation="import",
            inline=True,
        )
        record.hooks = register(self._manager, record.name, target)
        record.target, record.modules = target, modules
        context = self._new_context(
            record, candidate, self._enforces_capabilities(record.name, candidate)
        )
        for hook in EVENT_HOOKS:
            for implementation in record.hooks.get(hook, ()):
                self.events.subscribe(
                    record.name,
                    hook,
                    implementation.function,
                    argnames=tuple(implementation.argnames),
                )
        for implementation in record.hooks.get("activate", ()):
            await self._lifecycle_call(
                record,
                implementation.function,
                *self._hook_args(implementation, context),
                operation="activate",
            )

    def _new_context(
        self, record: PluginRecord, candidate: DiscoveredPlugin, enforce: bool
    ) -> PluginContext:
        """The plugin's ``ctx`` for this activation, set as ``record.context``."""
        record.context = self._context.plugin_context(
            record.name,
            version=str(candidate.version),
            manifest=candidate.manifest,
            config=record.config,
            enforce_capabilities=enforce,
        )
        return record.context

    def _worker_died(self, worker: Any, error: BaseException | None) -> None:
        """A plugin's worker process ended unasked (``WorkerPlugin.on_death``)."""
        from clawhost.worker.supervise import worker_died

        record = self._records.get(worker.plugin)
        if record is not None:
            key = ("died", worker.plugin, id(worker))
            self._background.start_soon(key, worker_died, self, record, worker, error)

    @staticmethod
    def _hook_args(implementation: Any, context: Any) -> list[Any]:
        return [context for _ in implementation.argnames]

    async def _roll_back(self, record: PluginRecord, *, forget: bool = False) -> None:
        """Undo a partial activation: cleanups, registrations, the pluggy registration;
        with ``forget`` (a failed activation) also its modules, so a fix is imported."""
        await self._stop_channels(record.name)  # before what they use goes away
        context = record.context
        if context is not None:
            context._close()  # from now on a late registration is refused, not leaked
            for cleanup in context._take_cleanups():
                try:
                    await self._lifecycle_call(record, cleanup, operation="cleanup")
                except Exception as exc:
                    logger.warning(
                        "Plugin %r: a cleanup failed during rollback: %s", record.name, _reason(exc)
                    )
        self._context.remove_owner(record.name)
        if self._manager.has_plugin(record.name):
            self._manager.unregister(name=record.name)
        record.target, record.context, record.hooks = None, None, {}
        if forget:
            forget_modules(record)

    def _check_declared(self, record: PluginRecord) -> None:
        manifest = record.manifest
        if manifest is None or record.name not in self._records:
            return
        registered = self._context.registrations(record.name)
        declared = manifest.capabilities
        missing = [
            f"{kind[:-1]} {name!r}"
            for kind, names, have in (
                ("tools", declared.tools, registered.tools),
                ("channels", declared.channels, registered.channels),
                ("pipeline_stages", declared.pipeline_stages, registered.pipeline_stages),
                ("providers", declared.providers, registered.providers),
            )
            for name in names
            if name not in have
        ]
        if missing:
            diagnostic = Diagnostic(
                record.name,
                str(record.plugin.source) if record.plugin else "",
                "activate",
                f"declared but not registered: {', '.join(missing)}",
                severity="warning",
            )
            record.diagnostics.append(diagnostic)
            self.diagnostics.append(diagnostic)
            logger.warning("Plugin %r: %s", record.name, diagnostic.message)

    def _prepare_limits(self, record: PluginRecord, candidate: DiscoveredPlugin) -> None:
        from clawhost.sandbox.limits import plugin_limiter
        from clawhost.sandbox.permissions import SandboxScope

        sandbox = self.config.sandbox_for(record.name)
        # In-process: min(max_cpu_time_secs, max_wall_time_secs), as wall-clock time (a
        # worker process, which clears this, limits CPU time with RLIMIT_CPU instead).
        record.timeout = sandbox.call_deadline()
        granted = self._grants.get((record.name, str(candidate.version)))
        record.permissions = granted if granted is not None else self._grant(record.name, candidate)
        record.scope = SandboxScope(record.permissions)
        record.limiter = plugin_limiter(sandbox.max_concurrency)

    def _plugin_config(
        self, record: PluginRecord, candidate: DiscoveredPlugin
    ) -> Mapping[str, Any]:
        from clawhost.config.plugin import validate_plugin_config

        settings = self.config.settings_for(record.name)
        return validate_plugin_config(
            record.name,
            candidate.manifest.config,
            settings.config,
            file=self.config.file,
            environ=self._environ,
        )

    async def _ensure_active(self, name: str) -> None:
        record = self._records.get(name)
        if record is None or record.state is S.ACTIVE:
            return
        if record.state is S.ACTIVATING:
            async with record.lock:
                pass
        elif record.state in (S.RESOLVED, S.INACTIVE) and self.lazy:
            await self._activate_with_dependencies(record, chain=())
        state: PluginState = record.state  # changed by the awaits above
        if state is not S.ACTIVE:
            failure = record.failure
            reason = failure.reason if failure else f"it is {record.state.name.lower()}"
            raise PluginFailed(name, failure.stage if failure else "activate", reason)

    async def activate_all(self, *, only_eager: bool = False) -> None:
        """Activate every resolved plugin, level by level of the plan, each level's
        independent plugins concurrently.

        With ``only_eager`` (what ``start()`` does when activation is lazy), plugins that
        offer nothing but tools wait for the first call of one of them; plugins offering
        channels, pipeline stages or providers, or declaring nothing (event hooks only),
        cannot be reached by a call and are activated now, with their dependencies.
        """
        plan = self.plan
        if plan is None:
            await self.resolve()
            plan = self.plan
        for level in plan.levels:
            async with anyio.create_task_group() as group:
                for name in level:
                    record = self._records[name]
                    if record.state not in (S.RESOLVED, S.INACTIVE):
                        continue
                    if only_eager and not needs_eager_activation(record):
                        continue
                    group.start_soon(self._activate_with_dependencies, record, ())

    # -- deactivate ---------------------------------------------------------------------------

    async def deactivate(self, name: str) -> PluginRecord:
        """Deactivate a plugin, and first the active plugins that depend on it."""
        record = self._record(name)
        check_transition(name, record.state, S.DEACTIVATING)
        plan = self.plan
        for dependent in reversed(plan.dependents(name)) if plan is not None else ():
            other = self._records.get(dependent)
            if other is not None and other.state is S.ACTIVE:
                await self._deactivate_one(other)
        await self._deactivate_one(record)
        return record

    async def _deactivate_one(self, record: PluginRecord) -> None:
        async with record.lock:
            if record.state is not S.ACTIVE:
                return
            version = str(record.version)
            logger.info("Deactivating %r v%s", record.name, version)
            record.move(S.DEACTIVATING)
            started = time.perf_counter()
            failures: list[str] = []
            context = record.context
            with _telemetry.span("clawhost.deactivate", {"clawhost.plugin": record.name}):
                with anyio.CancelScope(shield=True):
                    for implementation in record.hooks.get("deactivate", ()):
                        try:
                            await self._lifecycle_call(
                                record,
                                implementation.function,
                                *self._hook_args(implementation, context),
                                operation="deactivate",
                            )
                        except Exception as exc:
                            failures.append(f"deactivate: {_reason(exc)}")
                    await self._roll_back(record)
            elapsed = time.perf_counter() - started
            record.time("deactivate", elapsed)
            _telemetry.record_lifecycle(record.name, "deactivate", elapsed, not failures)
            record.move(S.INACTIVE)
            if failures:
                message = "; ".join(failures) + " (everything it registered was removed anyway)"
                logger.warning("Plugin %r: %s", record.name, message)
                record.diagnostics.append(
                    Diagnostic(
                        record.name,
                        str(record.plugin.source) if record.plugin else "",
                        "deactivate",
                        message,
                    )
                )
        await self.events.dispatch("on_plugin_deactivated", plugin=record.name)

    # -- enable / disable at run time ---------------------------------------------------------

    async def disable(self, name: str) -> PluginRecord:
        """Switch a plugin off while the host runs: deactivate it (its active dependents
        first) and keep it DISABLED until ``enable``. Its dependents cannot resolve without
        it, so they are FAILED with a ``MissingDependency`` that says it is disabled.

        Only this host changes; ``clawhost plugins disable`` is what writes config.toml.
        """
        async with self._reload_lock:
            record = self._record(name)
            cancel_restart(self, name)
            if record.state is S.DISABLED:
                return record
            while True:
                if record.state in (S.ACTIVE, S.ACTIVATING):
                    async with record.lock:  # let an activation in progress finish
                        pass
                if record.state is S.ACTIVE:
                    await self.deactivate(name)
                async with record.lock:  # a lazy call may have activated it meanwhile
                    if record.state not in (S.ACTIVE, S.ACTIVATING):
                        record.move(S.DISABLED)
                        break
            record.selected = None
            self.tools.undeclare(name)
            forget_modules(record, bytecode=False)
            logger.info("Plugin %r disabled", name)
            if self._resolution is not None:
                await self.resolve()
            return record

    async def enable(self, name: str) -> PluginRecord:
        """Switch a disabled plugin back on: load, resolve and (unless activation is lazy
        and it offers only tools) activate it, with the plugins that failed for want of
        it. Raises ``PluginFailed`` if it does not come back."""
        async with self._reload_lock:
            record = self._record(name)
            if record.state is not S.DISABLED:
                return record
            record.move(S.DISCOVERED)
            # and the dependents that failed without it
            retried = [record, *retry_resolution_failures(self._records)]
            logger.info("Plugin %r enabled", name)
            await self.resolve()
            for other in retried:
                if other.state is S.RESOLVED and (not self.lazy or needs_eager_activation(other)):
                    await self._activate_with_dependencies(other, chain=())
            state: PluginState = record.state  # changed by the awaits above
            if state is S.FAILED:
                failure = record.failure
                raise PluginFailed(
                    name, failure.stage if failure else "enable", failure.reason if failure else ""
                ) from (failure.error if failure else None)
            return record

    # -- health -------------------------------------------------------------------------------

    async def health_check(self, name: str, *, limit: float = 5.0) -> HealthReport:
        """Run a plugin's health check within ``limit`` seconds; an inactive plugin is
        unhealthy."""
        record = self._record(name)
        started = time.perf_counter()
        if record.state is not S.ACTIVE:
            why = (
                str(record.failure)
                if record.failure
                else f"not active ({record.state.name.lower()})"
            )
            return HealthReport(name, False, why, 0.0)
        healthy: bool = True
        reason: str | None = None
        try:
            with anyio.fail_after(limit):
                for implementation in record.hooks.get("health_check", ()):
                    result = await self._guard.call(
                        name,
                        implementation.function,
                        *self._hook_args(implementation, record.context),
                        operation="health check",
                    )
                    if result is False or isinstance(result, str):
                        healthy, reason = False, result or "reported unhealthy"
        except TimeoutError:
            healthy, reason = False, f"health check did not finish within {limit:g}s"
        except Exception as exc:
            healthy, reason = False, _reason(exc)
        return HealthReport(name, healthy, reason, time.perf_counter() - started)

    async def health(self) -> dict[str, HealthReport]:
        """Every active plugin's health."""
        return {
            name: await self.health_check(name)
            for name, record in sorted(self._records.items())
            if record.state is S.ACTIVE
        }

    # -- the whole lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Discover, load, resolve, then activate everything (unless activation is lazy)."""
        if self._discovery is None:
            self.discover()
        await self.resolve()
        self._warn_about_memory_limits()
        await self.activate_all(only_eager=self.lazy)
        self._running = True
        if self.config.plugins.hot_reload:
            await self._start_watching()
        failed = sorted(name for name, record in self._records.items() if record.state is S.FAILED)
        active = sum(record.state is S.ACTIVE for record in self._records.values())
        logger.info(
            "Host started: %d active%s%s",
            active,
            f", {len(self._records) - active - len(failed)} waiting" if self.lazy else "",
            f", failed: {', '.join(failed)}" if failed else "",
        )

    def _warn_about_memory_limits(self) -> None:
        from clawhost.sandbox.permissions import memory_limit_warning

        limits = {  # a worker process enforces its own limit (isolation = "process")
            sandbox.max_memory_mb
            for sandbox in map(self.config.sandbox_for, self._records)
            if sandbox.isolation != "process"
        }
        for limit in sorted(limit for limit in limits if limit):
            message = memory_limit_warning(limit)
            if message:
                logger.warning("%s", message)

    async def stop(self) -> None:
        """Deactivate every active plugin, dependents before their dependencies."""
        await self._background.aclose()  # pending worker restarts, supervision
        self._backoffs.clear()
        plan = self.plan
        levels: Iterable[Sequence[str]] = reversed(plan.levels) if plan is not None else ()
        for level in levels:
            async with anyio.create_task_group() as group:
                for name in level:
                    record = self._records.get(name)
                    if record is not None and record.state is S.ACTIVE:
                        group.start_soon(self._deactivate_one, record)
        for record in list(self._records.values()):  # anything outside the plan
            if record.state is S.ACTIVE:
                await self._deactivate_one(record)
        for record in self._records.values():  # a closed host leaves no module behind
            forget_modules(record, bytecode=False)
        self._running = False

    def add_call_monitor(self, monitor: CallMonitor) -> Callable[[], None]:
        """Tell ``monitor`` (``before``/``after`` methods) about every call into plugin code:
        lifecycle hooks, tools, event handlers, stages. Returns a function that removes it.

        With no monitor installed, this costs nothing (``clawhost.testing.HookRecorder``
        is built on it).
        """
        self._guard.monitors.append(monitor)

        def remove() -> None:
            if monitor in self._guard.monitors:
                self._guard.monitors.remove(monitor)

        return remove

    async def _lifecycle_call(
        self,
        record: PluginRecord,
        function: Callable[..., Any],
        *args: Any,
        operation: str,
        inline: bool = False,
    ) -> Any:
        """A lifecycle hook (or import, or cleanup): limits and scope, no gate, no slot."""
        call = call_plugin_code(
            record, function, *args, operation=operation, limited=False, inline=inline
        )
        if not self._guard.monitors:
            return await call
        return await monitored(list(self._guard.monitors), record.name, operation, args, {}, call)

    # -- hot reload -------------------------------------------------------------------------

    async def reload(self, name: str) -> ReloadEvent:
        """Swap a plugin's code for what is on disk now, holding its calls meanwhile.

        Its dependents are re-activated against the new version. On failure the old
        version keeps serving and ``ReloadError`` says at which stage and why.
        """
        from clawhost.reload.transaction import reload_plugin

        cancel_restart(self, name)
        async with self._reload_lock:
            return await reload_plugin(self, name)

    def on_reload(self, callback: Callable[[ReloadEvent], Any]) -> Callable[[], None]:
        """Call ``callback(event)`` (sync or async) after every reload, successful or not.
        Returns a function that unsubscribes it."""
        self._reload_listeners.append(callback)

        def remove() -> None:
            if callback in self._reload_listeners:
                self._reload_listeners.remove(callback)

        return remove

    async def _notify_reload(self, event: ReloadEvent) -> None:
        for listener in list(self._reload_listeners):
            try:
                result = listener(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("a reload listener failed")

    async def watch(self) -> None:
        """Watch plugin sources, plugin directories and sites: reload each changed plugin
        once per burst of file events (``[plugins] watch_interval_secs`` is the debounce
        window), bring up plugins added and take down plugins removed (``rescan``).
        Runs until cancelled. With ``[plugins] hot_reload = true`` the host runs it from
        ``start()`` until ``stop()``; call it yourself only when hot reload is off."""
        from clawhost.reload.transaction import watch

        await watch(self, interval=self.config.plugins.watch_interval_secs)

    async def rescan(self) -> RescanReport:
        """Discover again: activate plugins added since (folders dropped into a plugin
        directory, distributions installed), deactivate and forget those removed, reload
        those whose installed version changed. The watcher calls it on such changes."""
        from clawhost.reload.rescan import rescan

        return await rescan(self)

    async def _start_watching(self) -> None:
        """Run the watcher in the background until ``stop()``; returns once it watches."""
        from clawhost.reload.transaction import watch

        ready = anyio.Event()

        async def run() -> None:
            try:
                await watch(
                    self, interval=self.config.plugins.watch_interval_secs, on_ready=ready.set
                )
            finally:
                ready.set()

        if self._background.start_soon(("watch",), run):
            await ready.wait()

    async def serve(self) -> None:
        """Run until cancelled (Ctrl-C, or the application's task group). Hot reload, when
        ``[plugins] hot_reload`` is on, runs from ``start()`` whether or not this is
        called. Call it inside ``async with``."""
        await anyio.sleep_forever()

    async def __aenter__(self) -> PluginHost:
        try:
            await self.start()
        except BaseException:  # cancelled (Ctrl-C) or failed mid-start: leave nothing running
            with anyio.CancelScope(shield=True):
                await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.stop()

    # -- in-memory plugins (tests, and applications that build plugins in code) ------------

    @classmethod
    def test_instance(cls, *plugins: object, **options: Any) -> PluginHost:
        """A host with only the given in-memory plugins: no entry points, no directories,
        no cache. Each plugin is an object (or class, or module) with ``@hookimpl`` hooks,
        or a ``(name, object)`` pair; see ``add_plugin`` for more control."""
        options = {"dirs": (), "path": (), "cache": False, **options}
        host = cls(**options)
        for plugin in plugins:
            if isinstance(plugin, tuple):
                name, target = plugin
                host.add_plugin(target, name=name)
            else:
                host.add_plugin(plugin)
        return host

    def add_plugin(
        self,
        target: object,
        *,
        name: str | None = None,
        version: str = "0.1.0",
        manifest: Manifest | Mapping[str, Any] | None = None,
    ) -> DiscoveredPlugin:
        """Offer an in-memory plugin object, as if it had been discovered.

        With a ``manifest`` (a Manifest or its ``[plugin]`` table as a dict), what the
        plugin registers must be declared in it, as for an installed plugin; without one,
        the plugin may register anything.
        """
        from clawhost.discovery.manifest import Manifest

        plugin_name = name or _name_of(target)
        if manifest is None:
            model = Manifest(name=plugin_name, version=version)
        elif isinstance(manifest, Manifest):
            model = manifest
        else:
            model = Manifest.model_validate({"name": plugin_name, "version": version, **manifest})
        candidate = DiscoveredPlugin(
            plugin_name,
            model.version or version,
            PluginSource(SourceKind.MEMORY, repr(target), "<memory>", "<memory>", target=target),
            "<memory>",
            manifest=model,
        )
        self._memory.append(candidate)
        if manifest is not None:
            self._memory_manifests = self._memory_manifests | {plugin_name}
        if self._discovery is not None:
            self.discover()
        return candidate

    _memory_manifests: frozenset[str] = frozenset()

    def http_app(
        self,
        *,
        channel_status: Callable[[], list[dict[str, Any]]] | None = None,
        admin_token: str | None = None,
    ) -> GatewayApp:
        """The gateway's ASGI application: the status page at ``/``, ``/status.json``,
        ``/health``, each plugin's ``/plugins/<name>/health``, and the HTTP apps plugins
        register (``ctx.register_http_app``) under ``/plugins/<name>/``. Serve it with any
        ASGI server (``clawhost.surfaces.http.serve`` runs uvicorn on 127.0.0.1)."""
        from clawhost.surfaces.http import GatewayApp

        statuses = channel_status if channel_status is not None else self.channel_status
        return GatewayApp(
            self, self._context.http, channel_status=statuses, admin_token=admin_token
        )

    def add_project(self, path: str | Path) -> list[DiscoveredPlugin]:
        """Offer the plugins of a plugin project folder (``clawhost plugins create``'s
        layout, or a folder with ``plugin.toml``), imported from its source tree, not
        installed: what ``clawhost.testing`` does with a ``pathlib.Path``.

        They are directory plugins in all but location: discovered as they are now, their
        manifests enforced, and runnable in-process or in a worker process. Raises
        ``InvalidPluginProject`` or ``ManifestError`` when the folder is not a project.
        """
        from clawhost.discovery.project import read_project

        return [self._add_project(project) for project in read_project(Path(path))]

    def _add_project(self, project: PluginProject) -> DiscoveredPlugin:
        source = PluginSource(
            SourceKind.PROJECT,
            project.entry,
            project.root,
            project.import_root,
            distribution=project.distribution,
        )
        candidate = DiscoveredPlugin(
            project.name,
            project.version,
            source,
            str(project.manifest_path),
            manifest=project.manifest,
        )
        self._memory.append(candidate)
        if self._discovery is not None:
            self.discover()
        return candidate

    def _enforces_capabilities(self, name: str, candidate: DiscoveredPlugin) -> bool:
        """Whether registrations must be declared: always for a discovered plugin, and for
        an in-memory one offered with a manifest."""
        return candidate.source.target is None or name in self._memory_manifests

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin as a JSON-ready dict: name, version, state, capabilities, source, error."""
        rows = []
        for name, record in sorted(self._records.items()):
            row = record.to_dict()
            manifest = record.manifest
            row["capabilities"] = manifest.capabilities.model_dump() if manifest else {}
            row["registered"] = self._context.registrations(name).as_dict()
            rows.append(row)
        return rows


def _name_of(target: object) -> str:
    """A plugin name for an in-memory object: its ``name``, or its module's or class's name."""
    import re
    import types

    explicit = getattr(target, "name", None)
    if isinstance(explicit, str):
        return explicit
    if isinstance(target, types.ModuleType):
        raw = target.__name__.rsplit(".", 1)[-1]
    else:
        raw = (target if isinstance(target, type) else type(target)).__name__
        raw = re.sub(r"(?<!^)(?=[A-Z])", "-", raw)
    return re.sub(r"[^a-z0-9]+", "-", raw.lower()).strip("-") or "plugin"
