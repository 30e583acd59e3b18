"""Hot reload: swap a plugin's code in a running host without failing a call.

The transaction, for a changed plugin P (and the active plugins that depend on it):

1. hold new calls to P and its dependents (they wait at the plugins' call gates);
2. let the calls in flight finish, up to ``PluginHost.drain_timeout``;
3. deactivate the dependents, then P (reverse activation order);
4. drop P's modules from ``sys.modules`` and their bytecode caches;
5. re-read P's manifest, re-import it, re-resolve (every other plugin keeps its version);
6. activate the new P, then its dependents (against the new P);
7. release the held calls, which now reach the new code.

If any step fails (a syntax error, an activate that raises, a manifest that no longer
resolves), the old modules go back into ``sys.modules``, the old version is activated
again with its dependents, the held calls are released to it, and ``ReloadError`` says
why. A plugin that was FAILED is simply tried again from fresh code.

Bytecode: a ``.pyc`` records its source's mtime in whole seconds and its size, so an edit
in the same second that keeps the size would be served stale. The reload deletes the
plugin's cached bytecode before importing, so the source is always recompiled.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio

from clawhost.core.importpath import release
from clawhost.core.state import PluginState
from clawhost.discovery.discover import SourceKind
from clawhost.errors import IllegalTransition, ReloadError

if TYPE_CHECKING:
    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.discovery.discovered import DiscoveryResult
    from clawhost.host.host import PluginHost
    from clawhost.runtime.records import PluginRecord

__all__ = ["RESCAN", "ReloadEvent", "plugin_modules", "reload_plugin", "watch_roots", "watch_sites"]

logger = logging.getLogger("clawhost.reload")
S = PluginState


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """What one reload did; applications receive it through ``PluginHost.on_reload``."""

    plugin: str
    ok: bool
    old_version: str | None
    new_version: str | None
    duration: float
    #: Calls that waited at the gate during the reload, and the longest wait, in seconds.
    held_calls: int
    longest_hold: float
    #: When the reload failed: the stage and the reason (it was rolled back).
    stage: str | None = None
    reason: str | None = None
    dependents: tuple[str, ...] = ()


def plugin_root(plugin: DiscoveredPlugin) -> Path | None:
    """The folder holding a plugin's own code: what is watched and whose modules reload."""
    if plugin.source.kind in (SourceKind.DIRECTORY, SourceKind.PROJECT):
        return plugin.source.import_root
    if plugin.source.kind is SourceKind.DISTRIBUTION:
        return plugin.package_dir
    return None


def plugin_modules(record: PluginRecord) -> dict[str, ModuleType]:
    """The modules that belong to a plugin: what it imported, and anything loaded from its
    own folder."""
    plugin = record.plugin
    root = plugin_root(plugin) if plugin is not None else None
    prefix = (os.fspath(root) + os.sep) if root is not None else None
    found: dict[str, ModuleType] = {}
    modules: dict[str, Any] = dict(sys.modules)  # values may be None at runtime
    for name, module in modules.items():
        if not isinstance(module, ModuleType):
            continue
        if name in record.modules:
            found[name] = module
            continue
        location = getattr(module, "__file__", None)
        if prefix and location and os.path.abspath(location).startswith(prefix):
            found[name] = module
    return found


def _forget_bytecode(modules: Iterable[ModuleType], root: Path | None) -> None:
    """Delete cached bytecode so the next import compiles the current source."""
    paths: set[str] = set()
    for module in modules:
        cached = getattr(module, "__cached__", None)
        if cached:
            paths.add(cached)
    if root is not None and root.is_dir():
        paths.update(str(path) for path in root.rglob("__pycache__/*.pyc"))
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def forget_modules(record: PluginRecord, *, bytecode: bool = True) -> None:
    """Forget a plugin's imported modules: after a failed activation (with their
    bytecode, so that activating it again, once fixed, imports what is on disk now), and
    when the plugin goes for good (its host closes, it is disabled or removed).

    The folder it was imported from stops being importable; the modules stay while
    another plugin (of another host) imported from the same place still holds it.
    """
    if release(record):
        modules = plugin_modules(record)
        plugin = record.plugin
        _drop(modules)
        if bytecode:
            _forget_bytecode(modules.values(), plugin_root(plugin) if plugin is not None else None)
        importlib.invalidate_caches()
    record.modules = frozenset()


def _drop(modules: Iterable[str]) -> None:
    for name in modules:
        sys.modules.pop(name, None)


def _restore(old: dict[str, ModuleType], root: Path | None) -> None:
    """Put the old modules back, removing whatever the failed import left behind."""
    prefix = (os.fspath(root) + os.sep) if root is not None else None
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None) if module is not None else None
        if name in old or (prefix and location and os.path.abspath(location).startswith(prefix)):
            del sys.modules[name]
    sys.modules.update(old)


async def reload_plugin(host: PluginHost, name: str) -> ReloadEvent:
    """Run the reload transaction for ``name``; raise ``ReloadError`` after a rollback."""
    record = host._record(name)
    if record.state is S.DISABLED:
        raise IllegalTransition(name, "DISABLED", "LOADED", "it is disabled; enable it first")
    if record.state in (S.ACTIVATING, S.DEACTIVATING):
        async with record.lock:  # a reload during a (lazy) activation waits for its end
            pass
    started = time.perf_counter()
    plan = host.plan
    dependents = tuple(
        other
        for other in (plan.dependents(name) if plan is not None else ())
        if host._records[other].state is S.ACTIVE
    )
    chain = (name, *dependents)
    records = [host._records[item] for item in chain]
    old_version = str(record.version) if record.version else None
    was_active = record.state is S.ACTIVE
    was_failed = record.state is S.FAILED
    logger.info("Plugin %r changed, reloading...", name)
    guard = host._guard
    guard.reloading.update(chain)
    for item in records:
        item.gate.longest_hold = 0.0
    try:
        if was_active and host.config.sandbox_for(name).isolation == "process":
            failure = await _trial(host, record)
            if failure is not None:  # the old worker never stopped serving
                event = _event(name, records, started, old_version, None, dependents, failure)
                logger.error(
                    "Plugin %r reload failed at %s: %s", name, failure.stage, failure.reason
                )
                await host._notify_reload(event)
                raise ReloadError(name, failure.stage, failure.reason) from failure.__cause__
        for item in records:
            await _close(item, host.drain_timeout)
        snapshot = _Snapshot.take(host, records)
        try:
            new_version = await _swap(host, record, dependents, was_active, was_failed)
        except _Failed as failure:
            await _roll_back(host, snapshot, failure)
            event = _event(name, records, started, old_version, None, dependents, failure)
            await host._notify_reload(event)
            raise ReloadError(name, failure.stage, failure.reason) from failure.__cause__
    finally:
        for item in records:
            item.gate.open()
        guard.reloading.difference_update(chain)
    event = _event(name, records, started, old_version, new_version, dependents, None)
    logger.info(
        "Plugin %r reloaded successfully (v%s, %.1f ms)", name, new_version, event.duration * 1e3
    )
    await host._notify_reload(event)
    return event


def _manifest_failure(found: DiscoveryResult, path: str) -> _Failed | None:
    """The edited manifest at ``path`` no longer parses: a failure at the load stage."""
    for diagnostic in found.diagnostics:
        if diagnostic.severity == "error" and str(diagnostic.file) == path:
            problems = "; ".join(str(problem) for problem in diagnostic.problems)
            return _Failed("load", f"{path}: {diagnostic.message}: {problems}".rstrip(": "))
    return None


async def _trial(host: PluginHost, record: PluginRecord) -> _Failed | None:
    """Try the code on disk in a worker of its own (process isolation): the failure, if
    it does not start."""
    from clawhost.worker.isolation import trial_isolated

    plugin = record.plugin
    assert plugin is not None
    path = str(plugin.manifest_path)
    found = host.discover()
    failure = _manifest_failure(found, path)
    if failure is not None:
        return failure
    candidate = next((item for item in found.plugins if str(item.manifest_path) == path), plugin)
    try:
        await trial_isolated(
            record,
            candidate,
            sandbox=host.config.sandbox_for(record.name),
            enforce_capabilities=host._enforces_capabilities(record.name, candidate),
            host=host._context,
        )
    except Exception as exc:
        failure = _Failed("activate", f"{type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure
    return None


async def _close(record: PluginRecord, drain_timeout: float) -> None:
    if not await record.gate.close(drain_timeout):
        logger.warning(
            "Plugin %r: %d call(s) still running after %gs; reloading anyway",
            record.name,
            record.gate.inflight,
            drain_timeout,
        )


class _Failed(Exception):
    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage}: {reason}")


@dataclass
class _Snapshot:
    selected: dict[str, Any]
    states: dict[str, PluginState]
    modules: dict[str, ModuleType]
    root: Path | None
    resolution: Any
    candidates: list[Any]
    active: frozenset[str]  # every plugin active before the reload

    @classmethod
    def take(cls, host: PluginHost, records: list[PluginRecord]) -> _Snapshot:
        main = records[0]
        plugin = main.plugin
        return cls(
            selected={item.name: item.selected for item in records},
            states={item.name: item.state for item in records},
            modules=plugin_modules(main),
            root=plugin_root(plugin) if plugin is not None else None,
            resolution=host._resolution,
            candidates=list(main.candidates),
            active=frozenset(
                name for name, record in host._records.items() if record.state is S.ACTIVE
            ),
        )


async def _swap(
    host: PluginHost,
    record: PluginRecord,
    dependents: tuple[str, ...],
    was_active: bool,
    was_failed: bool,
) -> str:
    name = record.name
    for dependent in reversed(dependents):
        await host._deactivate_one(host._records[dependent])
    if was_active:
        await host._deactivate_one(record)
    plugin = record.plugin
    root = plugin_root(plugin) if plugin is not None else None
    old_modules = plugin_modules(record)
    _drop(old_modules)
    _forget_bytecode(old_modules.values(), root)
    release(record)  # the import below holds the plugin's folder again
    importlib.invalidate_caches()
    record.modules = frozenset()
    # Re-read the manifest: discovery sees the change (the cache checks file stamps).
    found = host.discover()
    failure = _manifest_failure(found, str(plugin.manifest_path)) if plugin is not None else None
    if failure is not None:
        raise failure
    host._load(record)
    if record.state is S.FAILED:
        raise _Failed("load", record.failure.reason if record.failure else "cannot load")
    pins = {
        other: str(host._records[other].selected.version)  # type: ignore[union-attr]
        for other in dependents
        if host._records[other].selected is not None
    }
    await host.resolve(extra_pins=pins)
    if record.state is not S.RESOLVED or record.selected is None:
        reason = record.failure.reason if record.failure else f"ended {record.state.name}"
        raise _Failed("resolve", reason)
    new_version = str(record.selected.version)
    if not was_active and not was_failed:  # deactivated or never activated: stays so
        return new_version  # the new code is imported when it is next activated
    logger.info("Loading %r v%s", name, new_version)
    await host._activate_with_dependencies(record, chain=())
    if _state(record) is not S.ACTIVE:
        reason = record.failure.reason if record.failure else "did not activate"
        raise _Failed("activate", reason)
    for dependent in dependents:
        other = host._records[dependent]
        await host._activate_one(other)
        if other.state is not S.ACTIVE:
            reason = other.failure.reason if other.failure else "did not activate"
            raise _Failed(
                "activate", f"dependent {dependent} failed against v{new_version}: {reason}"
            )
    return new_version


async def _roll_back(host: PluginHost, snapshot: _Snapshot, failure: _Failed) -> None:
    """Bring the old version back: old modules, old selection, activated again."""
    names = list(snapshot.states)
    logger.error(
        "Plugin %r reload failed at %s: %s; rolling back", names[0], failure.stage, failure.reason
    )
    for name in reversed(names):
        record = host._records[name]
        if record.state is S.ACTIVE:
            await host._deactivate_one(record)
    plan = host.plan  # dependencies the reload activated go back down too
    order = [item for level in plan.levels for item in level] if plan is not None else []
    for name in reversed(order):
        record = host._records[name]
        if record.state is S.ACTIVE and name not in snapshot.active:
            await host._deactivate_one(record)
    _restore(snapshot.modules, snapshot.root)
    importlib.invalidate_caches()
    host._resolution = snapshot.resolution
    main = host._records[names[0]]
    main.candidates = snapshot.candidates
    host._eligible[main.name] = list(snapshot.candidates)
    for name in names:
        record = host._records[name]
        if snapshot.states[name] is not S.ACTIVE:
            continue
        record.selected = snapshot.selected[name]
        record.modules = frozenset(snapshot.modules) if name == names[0] else record.modules
        if record.state is S.FAILED:
            record.move(S.LOADED)
        if record.state in (S.LOADED, S.INACTIVE):
            record.move(S.RESOLVED)
        await host._activate_one(record)
        if record.state is not S.ACTIVE:
            logger.error("Plugin %r could not be restored after the failed reload", name)
        else:
            logger.info("Plugin %r rolled back to v%s", name, record.version)


def _state(record: PluginRecord) -> PluginState:
    """The record's state now (the awaits before reading it may have changed it)."""
    return record.state


def _event(  # noqa: PLR0917 - private, called twice
    name: str,
    records: list[PluginRecord],
    started: float,
    old_version: str | None,
    new_version: str | None,
    dependents: tuple[str, ...],
    failure: _Failed | None,
) -> ReloadEvent:
    return ReloadEvent(
        plugin=name,
        ok=failure is None,
        old_version=old_version,
        new_version=new_version,
        duration=time.perf_counter() - started,
        held_calls=sum(item.gate.held_total for item in records),
        longest_hold=max((item.gate.longest_hold for item in records), default=0.0),
        stage=failure.stage if failure else None,
        reason=failure.reason if failure else None,
        dependents=dependents,
    )


# -- watching files ---------------------------------------------------------------------------

_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")
_IGNORED_PARTS = frozenset({"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache"})


def relevant(path: str) -> bool:
    """Whether a changed file can change a plugin (source, manifest, data), ignoring
    bytecode, editor swap files and tool caches."""
    parts = Path(path).parts
    if any(part in _IGNORED_PARTS for part in parts):
        return False
    base = parts[-1] if parts else ""
    if base.startswith(".#") or (base.startswith(".") and base.endswith(".swp")):
        return False
    return not base.endswith(_IGNORED_SUFFIXES)


def watch_roots(host: PluginHost) -> dict[str, Path]:
    """Plugin name -> folder to watch: directory plugins and editable installs.

    Installed wheels are not watched (they change by reinstalling them).
    """
    roots: dict[str, Path] = {}
    for name, record in host._records.items():
        plugin = record.plugin
        if plugin is None or record.state is S.DISABLED:
            continue
        if plugin.source.kind in (SourceKind.DIRECTORY, SourceKind.PROJECT):
            roots[name] = plugin.source.import_root
        elif plugin.source.kind is SourceKind.DISTRIBUTION:
            info = plugin.distribution
            if info is not None and info.editable_root is not None:
                roots[name] = plugin.package_dir
    return roots


#: Marks a change that may add or remove plugins (a folder in a plugin directory, a
#: distribution's metadata in a site): the host discovers again.
RESCAN = "\0rescan"
_METADATA_SUFFIXES = (".dist-info", ".egg-info", ".egg-link", ".pth")


def watch_sites(host: PluginHost) -> list[Path]:
    """The folders distributions are installed into: an install or uninstall changes their
    top level (``*.dist-info``), so they are watched without recursion."""
    entries = host._path if host._path is not None else sys.path
    found: list[Path] = []
    for entry in entries:
        path = Path(entry or ".")
        if path.is_dir() and path.resolve() not in found and _has_metadata(path):
            found.append(path.resolve())
    return found


def _has_metadata(path: Path) -> bool:
    """Whether ``path`` is a site (holds distributions), not a source folder."""
    name = path.name
    return name in ("site-packages", "dist-packages") or any(path.glob("*.dist-info"))


class _Sources:
    """What the watcher watches, and which plugin (or a rescan) a changed path is for."""

    def __init__(self, host: PluginHost, observer: Any, handler: Any) -> None:
        self.host = host
        self.observer = observer
        self.handler = handler
        self.dirs = [path.resolve() for path in host._dirs if path.is_dir()]
        self.sites = watch_sites(host)
        self.dir_prefixes = tuple(os.fspath(path) + os.sep for path in self.dirs)
        self.site_names = frozenset(os.fspath(path) for path in self.sites)
        self.owners: list[tuple[str, str]] = []
        self.watched: dict[str, Any] = {}
        for folder in self.dirs:
            observer.schedule(handler, os.fspath(folder), recursive=True)
        for site in self.sites:
            observer.schedule(handler, os.fspath(site), recursive=False)

    def owner_of(self, path: str) -> str | None:
        for prefix, name in self.owners:
            if path.startswith(prefix):
                return name
        if path.startswith(self.dir_prefixes):
            return RESCAN  # not a known plugin's: a new plugin folder, or an old one's remains
        if os.path.dirname(path) in self.site_names and path.endswith(_METADATA_SUFFIXES):
            return RESCAN
        return None

    def follow(self) -> int:
        """Watch every plugin's source folder (again, after a rescan changed them)."""
        roots = watch_roots(self.host)
        self.owners = sorted(
            ((os.fspath(root) + os.sep, name) for name, root in roots.items()), reverse=True
        )
        wanted = {os.fspath(root) for root in roots.values() if root.is_dir()}
        wanted = {root for root in wanted if not root.startswith(self.dir_prefixes)}
        for root in set(self.watched) - wanted:
            self.observer.unschedule(self.watched.pop(root))
        for root in wanted - set(self.watched):
            self.watched[root] = self.observer.schedule(self.handler, root, recursive=True)
        return len(roots)


async def watch(
    host: PluginHost, *, interval: float, on_ready: Callable[[], None] | None = None
) -> None:
    """Watch plugin sources and reload what changed, one reload per burst of events; watch
    plugin directories and sites for plugins added or removed (``clawhost.reload.rescan``).

    ``interval`` is the debounce window: a reload starts once no event has arrived for
    that long (at most five windows after the first event of a burst).
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    token = anyio.lowlevel.current_token()
    send, receive = anyio.create_memory_object_stream[str](max_buffer_size=10_000)

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            for path in (event.src_path, getattr(event, "dest_path", "")):
                text = os.fsdecode(path) if path else ""
                if not text or not relevant(text):
                    continue
                name = sources.owner_of(os.path.abspath(text))
                if name is not None:
                    with contextlib.suppress(anyio.RunFinishedError, anyio.BrokenResourceError):
                        anyio.from_thread.run_sync(send.send_nowait, name, token=token)

    observer = Observer()
    sources = _Sources(host, observer, Handler())
    count = sources.follow()
    observer.start()
    logger.info(
        "Watching %d plugin(s), %d plugin director%s and %d site(s) for changes",
        count,
        len(sources.dirs),
        "y" if len(sources.dirs) == 1 else "ies",
        len(sources.sites),
    )
    try:
        if on_ready is not None:
            on_ready()
        async with receive:
            while True:
                await _handle_changes(host, await _burst(receive, interval))
                sources.follow()
    finally:
        with anyio.CancelScope(shield=True):  # cancelled (the host closes): stop it anyway
            await anyio.to_thread.run_sync(_stop, observer)
        send.close()


async def _burst(receive: Any, interval: float) -> set[str]:
    """The names of one burst of events: until none came for ``interval`` (at most five)."""
    changed = {await receive.receive()}
    deadline = anyio.current_time() + interval * 5
    while True:
        wait = min(interval, deadline - anyio.current_time())
        if wait <= 0:
            return changed
        with anyio.move_on_after(wait) as scope:
            changed.add(await receive.receive())
        if scope.cancelled_caught:
            return changed


async def _handle_changes(host: PluginHost, changed: set[str]) -> None:
    """Reload changed plugins; discover again when plugins may have come or gone (also
    when a changed plugin's manifest is gone: it was removed, not edited)."""
    from clawhost.reload.rescan import rescan

    gone = {
        name
        for name in changed
        if name != RESCAN
        and (record := host._records.get(name)) is not None
        and (plugin := record.plugin) is not None
        and not plugin.manifest_path.exists()
    }
    if RESCAN in changed or gone:
        report = await rescan(host)
        changed -= {RESCAN, *report.added, *report.removed, *report.changed}
    await _reload_changed(host, {name for name in changed if name in host._records})


def _stop(observer: Any) -> None:
    observer.stop()
    observer.join(timeout=5)


async def _reload_changed(host: PluginHost, changed: set[str]) -> None:
    plan = host.plan
    order = list(plan.order) if plan is not None else []
    # A dependency first: reloading it re-activates its dependents anyway.
    for name in sorted(
        changed, key=lambda item: order.index(item) if item in order else len(order)
    ):
        if plan is not None and any(dep in changed for dep in _ancestors(plan, name)):
            continue
        try:
            await host.reload(name)
        except ReloadError as exc:
            logger.error("%s", exc)


def _ancestors(plan: Any, name: str) -> set[str]:
    seen: set[str] = set()
    pending = list(plan.requires(name))
    while pending:
        item = pending.pop()
        if item not in seen:
            seen.add(item)
            pending.extend(plan.requires(item))
    return seen
