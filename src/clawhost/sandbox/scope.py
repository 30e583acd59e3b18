"""Which plugin is running now, and what it may touch: the sandbox's bottom layer.

``EffectivePermissions`` is what one plugin was granted (``clawhost.sandbox.permissions``
grants it); a ``SandboxScope`` pairs it with the plugin, and the context variable here says
which scope is current. The audit hook (``clawhost.sandbox.audit``) and the patches that
carry the scope into threads (``clawhost.sandbox.propagate``) read it; both sit above this
module, which imports neither. Creating the first scope installs the audit hook through
``set_hook_installer``, which ``clawhost.sandbox.audit`` calls when it is imported
(``clawhost.sandbox.permissions`` imports it, so every public way to a scope has it).
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from clawhost.core.importpath import held_places
from clawhost.core.netrules import IPAddress, NetworkRule, parse_host

__all__ = [
    "EffectivePermissions",
    "SandboxScope",
    "current_scope",
    "enter_scope",
    "leave_scope",
    "resolve_path",
    "sandbox_scope",
    "set_hook_installer",
]

# Writing to the null device discards data; subprocess.DEVNULL opens it read-write.
_ALWAYS_WRITABLE = frozenset({os.devnull})
# Memory of DNS answers per scope is bounded; past this it starts afresh.
_MAX_REMEMBERED_ADDRESSES = 4096


def resolve_path(path: str, *, follow: bool = True) -> str:
    """The absolute, real path the OS will act on: ``..`` and symlinks resolved.

    With ``follow=False`` the last component is not resolved (``unlink``, ``rename`` and
    ``mkdir`` act on a symlink itself, not on what it points to).
    """
    head, tail = os.path.split(path)
    if tail in ("", ".", "..") or ".." in head.split(os.sep):
        return os.path.realpath(path)  # ".." after a symlink is not lexical: the slow way
    if follow:
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return os.path.realpath(path)
        except OSError:
            pass  # nothing there yet (a file about to be created), or unreadable: as named
    return os.path.join(_real_folder(head or "."), tail)


# folder as named -> (device, inode, real path). ``os.path.realpath`` is pure Python and
# costs about 2 us a component; a folder is looked up once and then re-validated with one
# stat: if the name still leads to the same directory (device and inode), the real path
# is the same, so a symlink re-pointed since is noticed.
_folders: dict[str, tuple[int, int, str]] = {}
_MAX_FOLDERS = 8192


def _real_folder(folder: str) -> str:
    try:
        info = os.stat(folder)
    except OSError:
        return os.path.realpath(folder)
    cached = _folders.get(folder)
    if cached is not None and cached[0] == info.st_dev and cached[1] == info.st_ino:
        return cached[2]
    real = _real_from_parent(folder)
    if len(_folders) >= _MAX_FOLDERS:
        _folders.clear()
    _folders[folder] = (info.st_dev, info.st_ino, real)
    return real


def _real_from_parent(folder: str) -> str:
    """``os.path.realpath(folder)`` from its parent's (looked up, usually known): a folder
    that is not a symlink is its parent's real path plus its name. A plugin's
    ``__pycache__`` is new to the cache, the site it lives in is not."""
    parent, name = os.path.split(folder)
    if not os.path.isabs(folder) or name in ("", ".", "..") or parent == folder:
        return os.path.realpath(folder)
    try:
        if stat.S_ISLNK(os.lstat(folder).st_mode):
            return os.path.realpath(folder)
    except OSError:
        return os.path.realpath(folder)
    return os.path.join(_real_folder(parent), name)


def _prefixes(roots: Iterable[str]) -> tuple[str, ...]:
    # "/data/plugins" must not contain "/data/plugins-evil": compare whole components.
    return tuple(root if root.endswith(os.sep) else root + os.sep for root in roots)


def _within(path: str, roots: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    return path in roots or path.startswith(prefixes)


_python_cache: tuple[tuple[str, ...], frozenset[str], tuple[str, ...]] = ((), frozenset(), ())


def _python_roots() -> tuple[frozenset[str], tuple[str, ...]]:
    """Every directory on ``sys.path`` now, and every plugin folder or site a loaded plugin
    imports from (``clawhost.core.importpath``), resolved; recomputed only when they changed."""
    global _python_cache
    entries = (*sys.path, *held_places())
    cached_entries, roots, prefixes = _python_cache
    if entries != cached_entries:
        found = {os.path.dirname(os.__file__)}  # the standard library, even under -I -S
        # Through the folder cache: each plugin activated adds its folder here, and
        # resolving every entry afresh each time would cost O(plugins) realpaths a plugin.
        found.update(_real_folder(entry or ".") for entry in entries if os.path.isdir(entry or "."))
        roots = frozenset(_real_folder(root) for root in found)
        prefixes = _prefixes(roots)
        _python_cache = (entries, roots, prefixes)
    return roots, prefixes


@dataclass(frozen=True, slots=True)
class EffectivePermissions:
    """What one plugin may do: what its manifest asked for, as the host granted it.

    ``filesystem`` holds resolved folders the plugin may read and write under;
    ``readable`` holds what it may only read (its own package, the standard library,
    ``SYSTEM_READABLE``); every directory on ``sys.path`` is readable too, as it is when
    checked. ``network`` holds the granted ``host:port`` rules; ``subprocess`` whether it
    may start (and signal) processes.
    """

    plugin: str
    filesystem: tuple[str, ...] = ()
    network: tuple[NetworkRule, ...] = ()
    subprocess: bool = False
    readable: tuple[str, ...] = ()
    _write_roots: frozenset[str] = field(init=False, repr=False, compare=False)
    _write_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _read_roots: frozenset[str] = field(init=False, repr=False, compare=False)
    _read_prefixes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        write_roots = frozenset(self.filesystem)
        read_roots = write_roots | frozenset(self.readable)
        object.__setattr__(self, "_write_roots", write_roots | _ALWAYS_WRITABLE)
        object.__setattr__(self, "_write_prefixes", _prefixes(write_roots))
        object.__setattr__(self, "_read_roots", read_roots)
        object.__setattr__(self, "_read_prefixes", _prefixes(read_roots))

    def may_write(self, resolved: str) -> bool:
        """Whether the plugin may create, change or delete the (resolved) path."""
        return _within(resolved, self._write_roots, self._write_prefixes)

    def may_read(self, resolved: str) -> bool:
        """Whether the plugin may read the (resolved) path or list the folder."""
        if _within(resolved, self._read_roots, self._read_prefixes):
            return True
        roots, prefixes = _python_roots()
        return _within(resolved, roots, prefixes)

    def may_connect(self, host: IPAddress | str, port: int | None) -> bool:
        """Whether a rule allows ``host`` (an address or a name, see ``parse_host``) on
        ``port`` (``None``: any port, as for a name lookup without one)."""
        if isinstance(host, str) and (parsed := parse_host(host)) != host:
            host = parsed
        return any(rule.matches(host, port) for rule in self.network)


#: Installs the audit hook (idempotent); set by ``clawhost.sandbox.audit`` on import.
_install_hook: Callable[[], None] | None = None


def set_hook_installer(install: Callable[[], None]) -> None:
    """Have every new ``SandboxScope`` call ``install`` (the audit hook's installer)."""
    global _install_hook
    _install_hook = install


class SandboxScope:
    """A plugin and its permissions, entered around every call into the plugin's code.

    Create one per plugin (creating the first installs the audit hook) and enter it per
    call with ``sandbox_scope`` or ``enter_scope``/``leave_scope``. The scope also
    remembers which addresses the plugin's granted names resolved to, so connecting to an
    address a granted name resolved to is allowed.
    """

    __slots__ = ("_learned", "permissions")

    def __init__(self, permissions: EffectivePermissions) -> None:
        self.permissions = permissions
        self._learned: dict[IPAddress, frozenset[str]] = {}
        if _install_hook is None:
            raise RuntimeError(
                "the sandbox's audit hook is not loaded: import clawhost.sandbox.permissions "
                "before creating a SandboxScope"
            )
        _install_hook()

    @property
    def plugin(self) -> str:
        """The plugin's name."""
        return self.permissions.plugin

    def __repr__(self) -> str:
        return f"SandboxScope({self.plugin!r})"

    def remember_resolution(self, name: str, addresses: Iterable[IPAddress]) -> None:
        """Record that granted ``name`` resolved to ``addresses`` (called after lookups)."""
        learned = self._learned
        if len(learned) > _MAX_REMEMBERED_ADDRESSES:
            learned.clear()
        for address in addresses:
            learned[address] = learned.get(address, frozenset()) | {name}

    def resolved_names(self, address: IPAddress) -> frozenset[str]:
        """The granted names that resolved to ``address`` in this scope."""
        return self._learned.get(address, frozenset())


_CURRENT: ContextVar[SandboxScope | None] = ContextVar("clawhost_sandbox_scope", default=None)


def current_scope() -> SandboxScope | None:
    """The scope of the plugin whose code is running now; ``None`` in host code."""
    return _CURRENT.get()


def enter_scope(scope: SandboxScope | None) -> Token[SandboxScope | None]:
    """Make ``scope`` current (``None``: host code) until ``leave_scope(token)``."""
    return _CURRENT.set(scope)


def leave_scope(token: Token[SandboxScope | None]) -> None:
    """Restore the scope that was current before the matching ``enter_scope``."""
    _CURRENT.reset(token)


@contextmanager
def sandbox_scope(scope: SandboxScope | None) -> Iterator[SandboxScope | None]:
    """Run the ``with`` block as ``scope``'s plugin (``None``: as host code).

    Host services that plugin code calls and that must act with the host's rights (say,
    writing the host's own log or database) can wrap that work in ``sandbox_scope(None)``.
    """
    token = _CURRENT.set(scope)
    try:
        yield scope
    finally:
        _CURRENT.reset(token)
