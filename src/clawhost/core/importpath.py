"""Where plugin code is imported from, without putting plugin folders on ``sys.path``.

A directory plugin's folder (or a project's source tree) and a site the host was given
(``PluginHost(path=[...])``) are reachable while a plugin from them is loaded, through
two finders on ``sys.meta_path`` rather than through ``sys.path``:

* the *folder finder* sits just before the standard ``PathFinder``, so a plugin's folder
  wins over an installed copy of the same module (as a ``sys.path.insert(0, ...)`` did);
  it knows each folder's top-level module names, looked up in a dict, so it costs nothing
  for every other import;
* the *site finder* sits at the end: a given site is searched only for what ``sys.path``
  does not have (as a ``sys.path.append(...)`` did), for modules and for distribution
  metadata.

Each plugin that imports from a place *holds* it; when the last holder lets go (its host
closed, or the plugin was disabled, removed or failed), the place is unreachable again,
the finders leave ``sys.meta_path`` once they hold nothing, and the caller drops the
plugin's modules. ``sys.path`` itself is never changed.
"""

from __future__ import annotations

import functools
import importlib.machinery
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from importlib.abc import MetaPathFinder
from importlib.metadata import Distribution, DistributionFinder, MetadataPathFinder
from types import ModuleType
from typing import Any

__all__ = ["Clash", "held_places", "hold_folder", "hold_place", "hold_site", "release"]

_lock = threading.RLock()
_SUFFIXES = tuple(importlib.machinery.all_suffixes())


class Clash(Exception):
    """A folder's module name is already taken by another folder that is still held."""

    def __init__(self, module: str, other: str) -> None:
        self.module = module
        self.other = other
        super().__init__(module, other)


class _FolderFinder(MetaPathFinder):
    """Top-level modules of held plugin folders, by name."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}  # module name -> folder

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None:  # a submodule: its package's __path__ finds it
            return None
        folder = self.names.get(fullname)
        if folder is None:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, [folder], target)


class _SiteFinder(MetaPathFinder):
    """What held sites have that ``sys.path`` does not: modules and distributions."""

    def __init__(self) -> None:
        self.sites: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or not self.sites:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, list(self.sites), target)

    def find_distributions(
        self,
        context: DistributionFinder.Context = DistributionFinder.Context(),  # noqa: B008
    ) -> Iterator[Distribution]:
        if "path" in vars(context) or not self.sites:  # asked about a path of its own
            return iter(())
        return iter(
            MetadataPathFinder.find_distributions(
                DistributionFinder.Context(name=context.name, path=list(self.sites))
            )
        )


_folders = _FolderFinder()
_site_finder = _SiteFinder()
#: place -> the ids of its holders; holder id -> (kind, place, weak reference).
_holders: dict[str, set[int]] = {}
_held: dict[int, tuple[str, str, Any]] = {}
_places: tuple[str, ...] = ()
#: Whether ``_places`` must be recomputed (it is, lazily, by ``held_places``): holding
#: a thousand plugins' places one by one must not rebuild the tuple a thousand times.
_stale = False
#: Places whose plugin modules were imported before any plugin held them.
_borrowed: set[str] = set()


def _changed() -> None:
    global _stale
    _stale = True


def hold_folder(folder: str, module: str, holder: object, *, borrowed: bool = False) -> None:
    """Make ``folder``'s top-level modules importable while ``holder`` holds it.

    Raises ``Clash`` when ``module`` (the plugin's top-level module) is the name of a
    module of another folder that is still held: ``sys.modules`` has room for one.
    ``borrowed``: the plugin's module was imported before (by the application, a test):
    its modules are not the host's to drop when the place is let go.
    """
    folder = os.path.abspath(folder)
    with _lock:
        other = _folders.names.get(module)
        if other is not None and other != folder and _holders.get(other):
            raise Clash(module, other)
        _hold("folder", folder, holder, borrowed)
        names = _module_names(folder)
        names.add(module)
        for name in names:
            current = _folders.names.get(name)
            if current is None or current == folder or not _holders.get(current):
                _folders.names[name] = folder
        _install(_folders, front=True)
    importlib.invalidate_caches()


def hold_site(site: str, holder: object, *, borrowed: bool = False) -> None:
    """Make ``site`` (a path entry not on ``sys.path``) importable while held."""
    with _lock:
        _hold("site", site, holder, borrowed)
        if site not in _site_finder.sites:
            _site_finder.sites.append(site)
        _install(_site_finder, front=False)
    importlib.invalidate_caches()


def hold_place(place: str, holder: object, *, borrowed: bool = False) -> None:
    """Count ``holder`` as a user of ``place`` (an installed package's folder, already
    importable): ``release`` then tells whether another holder still uses its modules."""
    with _lock:
        _hold("place", os.path.abspath(place), holder, borrowed)


def release(holder: object) -> bool:
    """Let go of what ``holder`` holds; whether nothing else holds that place now and its
    modules were imported for a plugin (the caller may then drop them). ``False`` if it
    held nothing, or the modules were borrowed (imported before any plugin held it)."""
    return _release(id(holder))


def held_places() -> tuple[str, ...]:
    """Every folder and site held now (the sandbox lets plugins read them). Read on every
    file access a sandboxed plugin makes: no lock unless something changed since."""
    global _places, _stale
    if _stale:
        with _lock:
            _stale = False
            _places = tuple(place for place, holders in _holders.items() if holders)
    return _places


def _hold(kind: str, place: str, holder: object, borrowed: bool) -> None:
    key = id(holder)
    previous = _held.get(key)
    if previous is not None:
        if previous[1] == place:
            return
        _release(key)
    if borrowed and not _holders.get(place):
        _borrowed.add(place)
    try:
        reference: Any = weakref.ref(holder, functools.partial(_collected, key))
    except TypeError:  # not weakly referable: released only when asked
        reference = None
    _held[key] = (kind, place, reference)
    _holders.setdefault(place, set()).add(key)
    _changed()


def _collected(key: int, _: object, *, finalizing: Callable[[], bool] = sys.is_finalizing) -> None:
    """A holder was collected. Not while the interpreter exits: a host kept in a module
    global is collected as the modules are torn down, when ``sys`` has lost
    ``path_importer_cache`` (and this module, perhaps, its globals), and there is nothing
    left to clean up for."""
    if not finalizing():
        _release(key)


def _release(key: int) -> bool:
    with _lock:
        entry = _held.pop(key, None)
        if entry is None:
            return False
        kind, place, _ = entry
        holders = _holders.get(place, set())
        holders.discard(key)
        if holders:
            return False
        _holders.pop(place, None)
        _changed()
        owned = place not in _borrowed
        _borrowed.discard(place)
        if kind == "folder":
            for name in [n for n, folder in _folders.names.items() if folder == place]:
                del _folders.names[name]
        elif kind == "site" and place in _site_finder.sites:
            _site_finder.sites.remove(place)
        sys.path_importer_cache.pop(place, None)
        if not _folders.names:
            _uninstall(_folders)
        if not _site_finder.sites:
            _uninstall(_site_finder)
        return owned


def _install(finder: MetaPathFinder, *, front: bool) -> None:
    if finder in sys.meta_path:
        return
    if not front:
        sys.meta_path.append(finder)
        return
    index = next(
        (i for i, item in enumerate(sys.meta_path) if item is importlib.machinery.PathFinder),
        len(sys.meta_path),
    )
    sys.meta_path.insert(index, finder)


def _uninstall(finder: MetaPathFinder) -> None:
    while finder in sys.meta_path:
        sys.meta_path.remove(finder)


def _module_names(folder: str) -> set[str]:
    """The top-level module names a folder provides: modules, packages, namespace folders."""
    names: set[str] = set()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return names
    for entry in entries:
        name = entry.name
        if name.startswith((".", "__pycache__")):
            continue
        if entry.is_dir():
            if name.isidentifier():
                names.add(name)
        elif name.endswith(_SUFFIXES):
            stem = name.split(".", 1)[0]
            if stem.isidentifier():
                names.add(stem)
    return names
