"""Importing a plugin's code and registering it with pluggy (the first half of activation).

Nothing here runs at discovery or load: plugin code is imported when the plugin is
activated, under its limits and permissions.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pluggy

from clawhost import hookspecs
from clawhost.core.importpath import Clash, hold_folder, hold_place, hold_site
from clawhost.discovery.discover import SourceKind

if TYPE_CHECKING:
    from clawhost.discovery.discover import DiscoveredPlugin

__all__ = [
    "Implementation",
    "LoadProblem",
    "import_plugin",
    "new_plugin_manager",
    "register",
    "unregister",
]


class LoadProblem(Exception):
    """Why a plugin's code could not be imported or registered (becomes its failure)."""


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, used to check plugins, not to call them.

    It skips dunder attributes when it looks for hook implementations: ``register``
    inspects every attribute of a plugin with ``inspect.getattr_static``; a class instance
    has thirty-odd dunders and no hook can be one, so skipping them makes registration
    several times cheaper without hiding a misspelled hook.

    The host calls hook implementations from each record's own list (``register``'s
    result), never through ``manager.hook``; so ``register`` lets pluggy check a plugin
    and then takes it out of pluggy's per-hook lists again, keeping the plugin in
    ``registered``. pluggy inserts into those lists with a scan of every implementation
    already there, and checks a new plugin against every registered one: kept full, they
    make registering N plugins cost O(N²).
    """

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        #: The hook implementations found by the registration under way: name -> options.
        self.found: dict[str, pluggy.HookimplOpts] = {}
        #: The plugins registered (checked) and not unregistered: name -> object, and the
        #: objects' ids -> name (pluggy refuses one object under two names; so does this).
        self.registered: dict[str, object] = {}
        self.names_by_id: dict[int, str] = {}

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        if name.startswith("__") and name.endswith("__"):
            return None
        options = super().parse_hookimpl_opts(plugin, name)
        if options is not None:
            self.found[name] = options
        return options


def new_plugin_manager() -> pluggy.PluginManager:
    manager = _PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


def import_plugin(
    candidate: DiscoveredPlugin, holder: object | None = None
) -> tuple[object, frozenset[str]]:
    """Import the object a plugin's entry names; returns it and the modules it imported.

    A class is instantiated (with no arguments); a module or any other object is used as
    it is. Runs plugin code: call it under the plugin's limits. A directory plugin's
    folder, or a site the host was given, is importable while ``holder`` (the plugin's
    record) holds it (``clawhost.core.importpath``); ``sys.path`` is left as it is.
    """
    source = candidate.source
    if source.kind is SourceKind.MEMORY:
        given = source.target
        return (given() if isinstance(given, type) else given), frozenset()
    module_name, _, attribute = source.entry.partition(":")
    holder = holder if holder is not None else candidate
    root = source.import_folder
    if source.kind in (SourceKind.DIRECTORY, SourceKind.PROJECT):
        # A project's source tree wins over an installed copy of the same package.
        replace = source.kind is SourceKind.PROJECT
        _prepare_directory_import(candidate.name, module_name, root, holder, replace=replace)
    else:
        _make_reachable(module_name, root, candidate.package_folder, holder)
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
    # Only the plugin's own package counts as its code (hot reload drops these, and finds
    # any other module by its file location); the libraries it imports are not its own.
    return target, frozenset({module_name, _top(module_name)})


def _top(module_name: str) -> str:
    return module_name.split(".", 1)[0]


def _prepare_directory_import(
    plugin: str, module_name: str, root: str, holder: object, *, replace: bool = False
) -> None:
    top = _top(module_name)
    existing = sys.modules.get(top)
    if existing is not None:
        location = getattr(existing, "__file__", None) or ""
        if not os.path.abspath(location).startswith(os.path.abspath(root) + os.sep):
            if not replace:
                raise _clash(plugin, top, root, location or "elsewhere")
            # imported from elsewhere (an installed copy): import it afresh
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]
    try:
        hold_folder(root, top, holder, borrowed=top in sys.modules)
    except Clash as clash:
        raise _clash(plugin, top, root, clash.other) from None


def _clash(plugin: str, module: str, root: str, other: str) -> LoadProblem:
    return LoadProblem(
        f"plugin {plugin!r} in {root}: module {module!r} is already imported from {other} "
        f"(by a plugin of a host that is still open); directory plugins loaded at the "
        f"same time need module names of their own"
    )


def _make_reachable(module: str, path_entry: str, package_dir: str, holder: object) -> None:
    """A distribution found on a path the host was given (``PluginHost(path=...)``) is
    imported from there: the site is held for it while it is loaded. One on ``sys.path``
    only counts as a user of its package's folder. Modules imported before (by the
    application) are borrowed: the host does not drop them."""
    borrowed = _top(module) in sys.modules
    if path_entry not in sys.path and os.path.isdir(path_entry):
        hold_site(path_entry, holder, borrowed=borrowed)
    else:
        hold_place(package_dir, holder, borrowed=borrowed)


@dataclass(frozen=True, slots=True)
class Implementation:
    """One hook implementation of one plugin: the callable and the arguments it takes."""

    hook: str
    function: Callable[..., Any]
    argnames: tuple[str, ...]


def _argnames(function: Callable[..., Any]) -> tuple[str, ...]:
    """The arguments a hook implementation asks for, as pluggy counts them (required,
    positional; ``self`` is already bound away)."""
    parameters = inspect.signature(function).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind in kinds and p.default is p.empty)


def register(
    manager: pluggy.PluginManager, name: str, target: object
) -> dict[str, list[Implementation]]:
    """Register ``target`` with pluggy as plugin ``name``, refusing unknown hooks; returns
    its hook implementations by hook name.

    pluggy checks each implementation's argument names against its spec; a hook name
    with no spec (a typo such as ``activte``) is refused here rather than silently ignored.
    The implementations are returned, and the host calls them from there: with the
    host's manager (``new_plugin_manager``) the plugin is out of pluggy's per-hook lists
    again once checked (``_PluginManager``); ``unregister`` forgets it.
    """
    found: dict[str, pluggy.HookimplOpts] = {}
    checker = manager if isinstance(manager, _PluginManager) else None
    if checker is not None:
        checker.found = found
        if name in checker.registered:
            raise LoadProblem(f"Plugin name already registered: {name}")
        other = checker.names_by_id.get(id(target))
        if other is not None:
            raise LoadProblem(f"Plugin already registered under a different name: {other}")
    try:
        manager.register(target, name=name)
    except pluggy.PluginValidationError as exc:
        raise LoadProblem(str(exc)) from exc
    except ValueError as exc:  # already registered under another name
        raise LoadProblem(str(exc)) from exc
    try:
        implementations = _implementations(manager, target, found)
    except LoadProblem:
        manager.unregister(name=name)
        raise
    if checker is not None:  # checked: out of pluggy's lists again (see _PluginManager)
        checker.unregister(name=name)
        checker.registered[name] = target
        checker.names_by_id[id(target)] = name
    return implementations


def _implementations(
    manager: pluggy.PluginManager, target: object, found: dict[str, pluggy.HookimplOpts]
) -> dict[str, list[Implementation]]:
    known = sorted({*hookspecs.LIFECYCLE_HOOKS, *hookspecs.EVENT_HOOKS})
    implementations: dict[str, list[Implementation]] = {}
    for attribute, options in found.items():
        hook_name = options.get("specname") or attribute
        if getattr(manager.hook, hook_name).spec is None:
            raise LoadProblem(f"unknown hook {hook_name!r}; the hooks are: {', '.join(known)}")
        if options.get("hookwrapper") or options.get("wrapper"):
            raise LoadProblem(f"hook {hook_name!r} may not be a wrapper in a clawhost plugin")
        function = getattr(target, attribute)
        # pluggy has just worked the argument names out (``HookImpl.argnames``, what it
        # checked against the spec); inspect.signature again would cost as much.
        argnames = next(
            (
                tuple(impl.argnames)
                for impl in getattr(manager.hook, hook_name).get_hookimpls()
                if impl.plugin is target and impl.function == function
            ),
            None,
        )
        implementations.setdefault(hook_name, []).append(
            Implementation(
                hook_name, function, argnames if argnames is not None else _argnames(function)
            )
        )
    return implementations


def unregister(manager: pluggy.PluginManager, name: str) -> None:
    """Forget plugin ``name`` (registered with ``register``), if it is registered."""
    if isinstance(manager, _PluginManager):
        target = manager.registered.pop(name, None)
        if target is not None:
            manager.names_by_id.pop(id(target), None)
    if manager.has_plugin(name):
        manager.unregister(name=name)
