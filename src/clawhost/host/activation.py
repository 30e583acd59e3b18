"""Activation and deactivation in dependency order, each plugin failing alone.

A plugin is imported, registered with pluggy and its ``activate`` hook called inside its
sandbox scope; one that fails has its partial registrations rolled back and its dependents
skipped with the reason. Deactivation runs in reverse order and removes everything the
plugin registered.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.core import telemetry as _telemetry
from clawhost.core.state import PluginState, check_transition
from clawhost.discovery.discover import (
    Diagnostic,
    DiscoveredPlugin,
)
from clawhost.errors import (
    DependencyFailed,
    PluginFailed,
)
from clawhost.hookspecs import EVENT_HOOKS
from clawhost.host.stages import HostStages, _reason
from clawhost.reload.modules import forget_modules
from clawhost.runtime.context import HostContext
from clawhost.runtime.hostguard import call_plugin_code, monitored
from clawhost.runtime.loader import import_plugin, register, unregister
from clawhost.runtime.records import (
    PluginRecord,
    needs_eager_activation,
)
from clawhost.surfaces.channels import ChannelSupervisor

if TYPE_CHECKING:
    from clawhost.runtime.context import PluginContext

__all__ = ["HostActivation", "full_collections_paused"]

logger = logging.getLogger("clawhost.lifecycle")
S = PluginState

_pause_lock = threading.Lock()
_pause_depth = 0
_paused: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # (saved, set) thresholds


@contextlib.contextmanager
def full_collections_paused() -> Iterator[None]:
    """No automatic full (generation 2) garbage collection while a host starts plugins.

    Start-up creates a great many long-lived objects (modules, functions, manifests,
    tools): each full collection scans the whole heap and frees nothing, and at a few
    thousand plugins they were a quarter of start-up. Young generations are still
    collected; the thresholds are restored when the last starting host is done (unless
    the application changed them meanwhile).
    """
    global _pause_depth, _paused
    with _pause_lock:
        _pause_depth += 1
        if _pause_depth == 1:
            saved = gc.get_threshold()
            paused = (*saved[:2], 1 << 30)
            gc.set_threshold(*paused)
            _paused = (saved, paused)
    try:
        yield
    finally:
        with _pause_lock:
            _pause_depth -= 1
            if _pause_depth == 0 and _paused is not None:
                if gc.get_threshold() == _paused[1]:
                    gc.set_threshold(*_paused[0])
                _paused = None


class HostActivation(HostStages):
    """Activation and deactivation, in dependency order (``PluginHost`` is the API)."""

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
            if logger.isEnabledFor(logging.INFO):
                tools = self._context.tools.owned_by(record.name)
                logger.info(
                    "Plugin %r v%s active in %.1f ms%s",
                    record.name,
                    version,
                    elapsed * 1e3,
                    f" (tools: {', '.join(tools)})" if tools else "",
                )
        await self.events.dispatch("on_plugin_activated", plugin=record.name, version=version)
        self._start_channels(record)

    def _start_channels(self, record: PluginRecord) -> None:
        """Run the plugin's configured channel instances (``[plugins.<name>.channels]``)."""
        configured = self.config.plugins.plugin_settings.get(record.name)
        if configured is None:  # no [plugins.<name>] table: no channels (and no model built)
            return
        for instance, settings in configured.channels.items():
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
        from clawhost.host.supervision import worker_died

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
        unregister(self._manager, record.name)
        record.target, record.context, record.hooks = None, None, {}
        if forget:
            forget_modules(record)

    def _check_declared(self, record: PluginRecord) -> None:
        manifest = record.manifest
        if manifest is None or record.name not in self._records:
            return
        context, declared = self._context, manifest.capabilities
        missing: list[str] = []
        for kind, names, registry in (
            ("tools", declared.tools, context.tools),
            ("channels", declared.channels, context.channels),
            ("pipeline_stages", declared.pipeline_stages, context.pipeline),
            ("providers", declared.providers, context.providers),
        ):
            if names:  # only the kinds it declares are looked up
                have = set(registry.owned_by(record.name))
                missing.extend(f"{kind[:-1]} {name!r}" for name in names if name not in have)
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

        # Without a [plugins.<name>] table there are no values (settings_for would build
        # a default model to say so).
        settings = self.config.plugins.plugin_settings.get(record.name)
        return validate_plugin_config(
            record.name,
            candidate.manifest.config,
            settings.config if settings is not None else {},
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
        # A warm start knows which plugins need eager activation without building the
        # records of the others (clawhost.host.warmstart).
        warm = self._warm if only_eager else None
        eager = warm.eager if warm is not None else None
        with full_collections_paused():
            for level in plan.levels:
                async with anyio.create_task_group() as group:
                    for name in level:
                        if eager is not None and name not in eager:
                            continue
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

    def _enforces_capabilities(self, name: str, candidate: DiscoveredPlugin) -> bool:
        """Whether registrations must be declared: always for a discovered plugin, and for
        an in-memory one offered with a manifest."""
        return candidate.source.target is None or name in self._memory_manifests
