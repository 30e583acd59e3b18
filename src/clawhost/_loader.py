"""Importing a plugin's code and registering it with pluggy (the first half of activation).

Nothing here runs at discovery or load: plugin code is imported when the plugin is
activated, under its limits and permissions.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from ._discover import SourceKind

if TYPE_CHECKING:
    from ._discover import DiscoveredPlugin

__all__ = ["LoadProblem", "hook_implementations", "import_plugin", "new_plugin_manager", "register"]

# Imports of directory plugins change sys.path; one at a time.
_PATH_LOCK = threading.Lock()


class LoadProblem(Exception):
    """Why a plugin's code could not be imported or registered (becomes its failure)."""


def new_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def import_plugin(candidate: DiscoveredPlugin) -> tuple[object, frozenset[str]]:
    """Import the object a plugin's entry names; returns it and the modules it imported.

    A class is instantiated (with no arguments); a module or any other object is used as
    it is. Runs plugin code: call it under the plugin's limits.
    """
    source = candidate.source
    if source.kind is SourceKind.MEMORY:
        given = source.target
        return (given() if isinstance(given, type) else given), frozenset()
    module_name, _, attribute = source.entry.partition(":")
    if source.kind is SourceKind.DIRECTORY:
        _prepare_directory_import(module_name, os.fspath(source.import_root))
    else:
        _make_reachable(os.fspath(source.import_root))
    before = set(sys.modules)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise LoadProblem(
                f"cannot import {module_name!r}: module {exc.name!r} not found"
            ) from exc
        raise
    target: Any = module
    for part in filter(None, attribute.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LoadProblem(
                f"entry {source.entry!r}: {module_name} has no attribute {attribute!r}"
            ) from None
    if isinstance(target, type):
        target = target()
    imported = frozenset(set(sys.modules) - before) | frozenset(
        name
        for name in sys.modules
        if name == _top(module_name) or name.startswith(_top(module_name) + ".")
    )
    return target, imported


def _top(module_name: str) -> str:
    return module_name.split(".", 1)[0]


def _prepare_directory_import(module_name: str, root: str) -> None:
    top = _top(module_name)
    existing = sys.modules.get(top)
    if existing is not None:
        location = getattr(existing, "__file__", None) or ""
        if not os.path.abspath(location).startswith(os.path.abspath(root) + os.sep):
            raise LoadProblem(
                f"module {top!r} is already imported from {location or 'elsewhere'}; "
                f"directory plugins need module names of their own"
            )
    with _PATH_LOCK:
        if root not in sys.path:
            sys.path.insert(0, root)
    importlib.invalidate_caches()


def _make_reachable(path_entry: str) -> None:
    """A distribution found on a path the host was given (``PluginHost(path=...)``) is
    imported from there: its path entry is appended to ``sys.path`` if missing."""
    with _PATH_LOCK:
        if path_entry not in sys.path and os.path.isdir(path_entry):
            sys.path.append(path_entry)
            importlib.invalidate_caches()


def register(manager: pluggy.PluginManager, name: str, target: object) -> None:
    """Register ``target`` with pluggy as plugin ``name``, refusing unknown hooks.

    pluggy checks each implementation's argument names against its spec; a hook name
    with no spec (a typo such as ``activte``) is refused here rather than silently ignored.
    """
    try:
        manager.register(target, name=name)
    except pluggy.PluginValidationError as exc:
        raise LoadProblem(str(exc)) from exc
    except ValueError as exc:  # already registered under another name
        raise LoadProblem(str(exc)) from exc
    known = sorted({*hookspecs.LIFECYCLE_HOOKS, *hookspecs.EVENT_HOOKS})
    for caller in manager.get_hookcallers(target) or ():
        if caller.spec is None:
            manager.unregister(name=name)
            raise LoadProblem(f"unknown hook {caller.name!r}; the hooks are: {', '.join(known)}")
        for implementation in caller.get_hookimpls():
            if implementation.plugin_name == name and (
                implementation.hookwrapper or implementation.wrapper
            ):
                manager.unregister(name=name)
                raise LoadProblem(f"hook {caller.name!r} may not be a wrapper in a clawhost plugin")


def hook_implementations(
    manager: pluggy.PluginManager, hook: str, name: str
) -> list[pluggy.HookImpl]:
    """Plugin ``name``'s implementations of ``hook`` (usually zero or one)."""
    caller = getattr(manager.hook, hook)
    return [impl for impl in caller.get_hookimpls() if impl.plugin_name == name]
