"""Watching plugin folders and sites.

A changed plugin is hot-reloaded (``PluginHost.reload``); a change that may add or remove
plugins (a folder in a plugin directory, a distribution's metadata in a site) makes the
host discover again (``PluginHost.rescan``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from clawhost.core.state import PluginState
from clawhost.discovery.discover import SourceKind
from clawhost.errors import ReloadError

if TYPE_CHECKING:
    from clawhost.reload.reports import ReloadEvent, RescanReport
    from clawhost.runtime.records import PluginRecord

__all__ = ["RESCAN", "relevant", "watch", "watch_roots", "watch_sites"]

logger = logging.getLogger("clawhost.reload")
S = PluginState


class WatchedHost(Protocol):
    """What the watcher needs of its host (a ``PluginHost`` is one)."""

    @property
    def _records(self) -> Mapping[str, PluginRecord]: ...

    @property
    def _dirs(self) -> Sequence[Path]: ...

    @property
    def _path(self) -> Sequence[str] | None: ...

    @property
    def plan(self) -> Any: ...

    async def reload(self, name: str) -> ReloadEvent: ...

    async def rescan(self) -> RescanReport: ...


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


def watch_roots(host: WatchedHost) -> dict[str, Path]:
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


def watch_sites(host: WatchedHost) -> list[Path]:
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

    def __init__(self, host: WatchedHost, observer: Any, handler: Any) -> None:
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
    host: WatchedHost, *, interval: float, on_ready: Callable[[], None] | None = None
) -> None:
    """Watch plugin sources and reload what changed, one reload per burst of events; watch
    plugin directories and sites for plugins added or removed (``PluginHost.rescan``).

    ``interval`` is the debounce window: a reload starts once no event has arrived for
    that long (at most five windows after the first event of a burst).
    """
    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    token = anyio.lowlevel.current_token()
    send, receive = anyio.create_memory_object_stream[str](max_buffer_size=10_000)
    pending = _Pending()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            for path in (event.src_path, getattr(event, "dest_path", "")):
                text = os.fsdecode(path) if path else ""
                if not text or not relevant(text):
                    continue
                name = sources.owner_of(os.path.abspath(text))
                # Only a plugin's first event of a burst crosses to the event loop (each
                # crossing waits for the loop, and for the GIL when the loop is busy);
                # the later ones only move the burst's last-event time.
                if name is not None and pending.note(name):
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
                await _handle_changes(host, await _burst(receive, interval, pending))
                sources.follow()
    finally:
        with anyio.CancelScope(shield=True):  # cancelled (the host closes): stop it anyway
            await anyio.to_thread.run_sync(_stop, observer)
        send.close()


class _Pending:
    """The plugins with events not yet handled, and when the latest event came (written
    by watchdog's thread, read by the event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self.last = 0.0

    def note(self, name: str) -> bool:
        """Record an event for ``name``; whether it is the first of its burst."""
        with self._lock:
            self.last = time.monotonic()
            if name in self._names:
                return False
            self._names.add(name)
            return True

    def take(self, names: set[str]) -> None:
        """``names`` are being handled: their next events start a new burst."""
        with self._lock:
            self._names -= names


async def _burst(receive: Any, interval: float, pending: _Pending) -> set[str]:
    """The names of one burst of events: until none came for ``interval`` (at most five)."""
    changed = {await receive.receive()}
    deadline = anyio.current_time() + interval * 5
    while True:
        quiet_at = pending.last + interval - time.monotonic() + anyio.current_time()
        wait = min(quiet_at, deadline) - anyio.current_time()
        if wait <= 0:
            pending.take(changed)
            return changed
        with anyio.move_on_after(wait):
            changed.add(await receive.receive())


async def _handle_changes(host: WatchedHost, changed: set[str]) -> None:
    """Reload changed plugins; discover again when plugins may have come or gone (also
    when a changed plugin's manifest is gone: it was removed, not edited)."""
    gone = {
        name
        for name in changed
        if name != RESCAN
        and (record := host._records.get(name)) is not None
        and (plugin := record.plugin) is not None
        and not plugin.manifest_path.exists()
    }
    if RESCAN in changed or gone:
        report = await host.rescan()
        changed -= {RESCAN, *report.added, *report.removed, *report.changed}
    await _reload_changed(host, {name for name in changed if name in host._records})


def _stop(observer: Any) -> None:
    observer.stop()
    observer.join(timeout=5)


async def _reload_changed(host: WatchedHost, changed: set[str]) -> None:
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
