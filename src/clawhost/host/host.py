"""PluginHost: discover → load → resolve → activate → deactivate, one plugin failing alone.

``async with PluginHost.from_config("config.toml") as host`` runs the whole lifecycle; each
stage is also a method of its own. A plugin that cannot be loaded, resolved or activated
is FAILED with its stage and reason, its partial registrations are removed, the plugins
depending on it are skipped with "dependency X failed", and every other plugin goes on.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.core.state import PluginState
from clawhost.discovery.discover import (
    DiscoveredPlugin,
    PluginSource,
    SourceKind,
)
from clawhost.errors import (
    PluginFailed,
)
from clawhost.host.activation import HostActivation, full_collections_paused
from clawhost.host.stages import _reason
from clawhost.host.supervision import cancel_restart
from clawhost.reload.modules import forget_modules
from clawhost.runtime.hostguard import CallMonitor
from clawhost.runtime.records import (
    HealthReport,
    PluginRecord,
    is_pending,
    needs_eager_activation,
    retry_resolution_failures,
)

if TYPE_CHECKING:
    from clawhost.discovery.manifest import Manifest
    from clawhost.discovery.project import PluginProject
    from clawhost.reload.reports import ReloadEvent, RescanReport
    from clawhost.surfaces.http import GatewayApp

__all__ = ["PluginHost"]

logger = logging.getLogger("clawhost.lifecycle")
S = PluginState


class PluginHost(HostActivation):
    """Discovers, loads, resolves, activates and deactivates plugins into a HostContext.

    Use it as an async context manager (``start()`` on entry, ``stop()`` on exit), or call
    the stages yourself: ``discover()``, ``load(name)``, ``resolve()``, ``activate(name)``,
    ``deactivate(name)``, ``health_check(name)``.
    """

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> PluginHost:
        """A host configured from a ``config.toml`` (``ConfigError`` if it is invalid)."""
        from clawhost.config.host import load_host_config

        return cls(config=load_host_config(path), **overrides)

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
        with full_collections_paused():  # see there: long-lived objects, nothing to free
            if self._discovery is None:
                self.discover()
            await self.resolve()
            self._warn_about_memory_limits()
            await self.activate_all(only_eager=self.lazy)
        self._running = True
        if self.config.plugins.hot_reload:
            await self._start_watching()
        # Records a warm start has not built yet are RESOLVED or DISABLED: not counted.
        built = self._records.values() if self._warm is None else self._warm.filled
        failed = sorted(record.name for record in built if record.state is S.FAILED)
        active = sum(record.state is S.ACTIVE for record in built)
        logger.info(
            "Host started: %d active%s%s",
            active,
            f", {len(self._records) - active - len(failed)} waiting" if self.lazy else "",
            f", failed: {', '.join(failed)}" if failed else "",
        )

    def _warn_about_memory_limits(self) -> None:
        from clawhost.sandbox.permissions import memory_limit_warning

        plugins = self.config.plugins
        configured = [name for name in plugins.plugin_settings if name in self._records]
        sandboxes = list(map(self.config.sandbox_for, configured))
        if len(configured) < len(self._records):  # the others share [plugins.sandbox]
            sandboxes.append(plugins.sandbox)
        limits = {  # a worker process enforces its own limit (isolation = "process")
            sandbox.max_memory_mb for sandbox in sandboxes if sandbox.isolation != "process"
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
                    if record is not None and not is_pending(record) and record.is_active:
                        group.start_soon(self._deactivate_one, record)
        # Records a warm start has not built yet were never active: left unbuilt.
        built = [record for record in self._records.values() if not is_pending(record)]
        for record in built:  # anything outside the plan
            if record.state is S.ACTIVE:
                await self._deactivate_one(record)
        for record in built:  # a closed host leaves no module behind
            forget_modules(record, bytecode=False)
        self._running = False

    def add_call_monitor(self, monitor: CallMonitor) -> Callable[[], None]:
        """Tell ``monitor`` (``before``/``after`` methods) about every call into plugin code:
        lifecycle hooks, tools, event handlers, stages. Returns a function that removes it.

        With no monitor installed, this costs nothing (``clawhost.testing.HookRecorder``
        is built on it).
        """
        return self._guard.add_monitor(monitor)

    # -- hot reload -------------------------------------------------------------------------

    async def reload(self, name: str) -> ReloadEvent:
        """Swap a plugin's code for what is on disk now, holding its calls meanwhile.

        Its dependents are re-activated against the new version. On failure the old
        version keeps serving and ``ReloadError`` says at which stage and why.
        """
        from clawhost.host.reloading import reload_plugin

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
        from clawhost.reload.watch import watch

        await watch(self, interval=self.config.plugins.watch_interval_secs)

    async def rescan(self) -> RescanReport:
        """Discover again: activate plugins added since (folders dropped into a plugin
        directory, distributions installed), deactivate and forget those removed, reload
        those whose installed version changed. The watcher calls it on such changes."""
        from clawhost.host.rescan import rescan

        return await rescan(self)

    async def _start_watching(self) -> None:
        """Run the watcher in the background until ``stop()``; returns once it watches."""
        from clawhost.reload.watch import watch

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
