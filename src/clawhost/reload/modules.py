"""A plugin's modules: which they are, forgetting them, putting them back.

Bytecode: a ``.pyc`` records its source's mtime in whole seconds and its size, so an edit
in the same second that keeps the size would be served stale. A reload deletes the
plugin's cached bytecode before importing, so the source is always recompiled.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from clawhost.core.importpath import release
from clawhost.discovery.discover import SourceKind

if TYPE_CHECKING:
    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.runtime.records import PluginRecord

__all__ = [
    "drop_modules",
    "forget_bytecode",
    "forget_modules",
    "plugin_modules",
    "plugin_root",
    "restore_modules",
]


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


def forget_bytecode(modules: Iterable[ModuleType], root: Path | None) -> None:
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
        drop_modules(modules)
        if bytecode:
            forget_bytecode(modules.values(), plugin_root(plugin) if plugin is not None else None)
        importlib.invalidate_caches()
    record.modules = frozenset()


def drop_modules(modules: Iterable[str]) -> None:
    for name in modules:
        sys.modules.pop(name, None)


def restore_modules(old: dict[str, ModuleType], root: Path | None) -> None:
    """Put the old modules back, removing whatever the failed import left behind."""
    prefix = (os.fspath(root) + os.sep) if root is not None else None
    for name, module in list(sys.modules.items()):
        location = getattr(module, "__file__", None) if module is not None else None
        if name in old or (prefix and location and os.path.abspath(location).startswith(prefix)):
            del sys.modules[name]
    sys.modules.update(old)
