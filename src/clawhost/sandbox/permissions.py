"""Per-plugin permissions: what a plugin may touch, and which plugin is running now.

``grant_permissions`` turns what a manifest asks for into ``EffectivePermissions``, within
what the host config allows, or refuses the plugin with every reason at once. A
``SandboxScope`` pairs those permissions with the plugin; the host enters it (a context
variable) around every call into the plugin's code, and the audit hook in ``_audit``
checks file, network and process operations against the scope that is current.

This is a guard rail against mistakes, not a security boundary: see docs/sandbox.md.
"""

from __future__ import annotations

import functools
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clawhost.core.importpath import held_places
from clawhost.core.netrules import IPAddress, NetworkRule, parse_host
from clawhost.errors import PermissionsRefused

if TYPE_CHECKING:
    from clawhost.discovery.manifest import (
        Permissions,
    )  # pydantic: not needed to enforce permissions

__all__ = [
    "SYSTEM_READABLE",
    "EffectivePermissions",
    "SandboxScope",
    "current_scope",
    "enter_scope",
    "grant_permissions",
    "leave_scope",
    "memory_limit_warning",
    "resolve_path",
    "sandbox_scope",
]

#: Files outside Python's own directories that the standard library reads by itself
#: (time zones, MIME types, the OS release) and that every plugin may therefore read.
SYSTEM_READABLE: tuple[str, ...] = (
    os.devnull,
    "/dev/urandom",
    "/dev/random",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/usr/lib/zoneinfo",
    "/usr/share/lib/zoneinfo",
    "/etc/zoneinfo",
    "/etc/mime.types",
    "/etc/httpd/mime.types",
    "/etc/httpd/conf/mime.types",
    "/etc/apache/mime.types",
    "/etc/apache2/mime.types",
    "/usr/local/etc/httpd/conf/mime.types",
    "/usr/local/lib/netscape/mime.types",
    "/usr/local/etc/mime.types",
    "/etc/os-release",
    "/usr/lib/os-release",
)
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
_MAX_FOLDERS = 1024


def _real_folder(folder: str) -> str:
    try:
        info = os.stat(folder)
    except OSError:
        return os.path.realpath(folder)
    cached = _folders.get(folder)
    if cached is not None and cached[0] == info.st_dev and cached[1] == info.st_ino:
        return cached[2]
    real = os.path.realpath(folder)
    if len(_folders) >= _MAX_FOLDERS:
        _folders.clear()
    _folders[folder] = (info.st_dev, info.st_ino, real)
    return real


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
        found.update(
            os.path.realpath(entry or ".") for entry in entries if os.path.isdir(entry or ".")
        )
        roots = frozenset(os.path.realpath(root) for root in found)
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


def grant_permissions(
    plugin: str,
    asked: Permissions,
    *,
    fs_allowed: Sequence[str],
    net_allowed: Sequence[str],
    allow_subprocess: bool,
    package_dir: Path | None,
) -> EffectivePermissions:
    """The permissions ``plugin`` gets: everything its manifest asks for, or nothing.

    A manifest path is granted when it lies inside an ``fs_allowed`` folder (compared after
    resolving ``..`` and symlinks, whole components only); ``~`` and ``$VARS`` in manifest
    paths are expanded. A network pattern is granted when a host pattern covers it
    (``*.example.com:443`` covers ``api.example.com:443``; ``*`` ports cover any port).
    Anything not granted raises ``PermissionsRefused`` listing every refused item and why.
    A malformed ``net_allowed`` entry is the host's mistake: ``ValueError``.
    """
    refused: list[str] = []
    host_roots = [os.path.realpath(os.path.expanduser(root)) for root in fs_allowed]
    host_write = frozenset(host_roots), _prefixes(host_roots)
    filesystem: list[str] = []
    for entry in asked.filesystem:
        expanded = os.path.expanduser(os.path.expandvars(entry))
        if not os.path.isabs(expanded):
            refused.append(f"filesystem {entry}: not an absolute path")
            continue
        resolved = os.path.realpath(expanded)
        if not _within(resolved, *host_write):
            shown = entry if resolved == os.path.normpath(entry) else f"{entry} ({resolved})"
            refused.append(f"filesystem {shown}: outside fs_allowed")
        elif resolved not in filesystem:
            filesystem.append(resolved)
    host_rules: list[NetworkRule] = []
    for text in net_allowed:
        try:
            host_rules.append(NetworkRule.parse(text))
        except ValueError as exc:
            raise ValueError(f"[plugins.sandbox] net_allowed: {exc}") from None
    network: list[NetworkRule] = []
    for text in asked.network:
        try:
            rule = NetworkRule.parse(text)
        except ValueError as exc:
            refused.append(f"network {text}: {exc}")
            continue
        if not any(granted.covers(rule) for granted in host_rules):
            refused.append(f"network {text}: not in [plugins.sandbox] net_allowed")
        elif rule not in network:
            network.append(rule)
    if asked.subprocess and not allow_subprocess:
        refused.append("subprocess: allow_subprocess is false")
    if refused:
        raise PermissionsRefused(plugin, tuple(refused))
    readable = [os.path.realpath(package_dir)] if package_dir is not None else []
    readable.extend(_system_readable())
    return EffectivePermissions(
        plugin=plugin,
        filesystem=tuple(filesystem),
        network=tuple(network),
        subprocess=asked.subprocess,
        readable=tuple(dict.fromkeys(readable)),
    )


@functools.cache
def _system_readable() -> tuple[str, ...]:
    """``SYSTEM_READABLE`` resolved, once: every grant shares it."""
    return tuple(os.path.realpath(path) for path in SYSTEM_READABLE)


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
        from clawhost.sandbox.audit import install_audit_hook

        install_audit_hook()

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


def memory_limit_warning(max_memory_mb: int | None) -> str | None:
    """What the host logs at start-up when ``max_memory_mb`` is set but cannot be enforced.

    Plugins share the host's process and heap; no per-plugin memory limit can hold there.
    The host does not log it for plugins with ``isolation = "process"``, whose worker
    process enforces the limit.
    Returns ``None`` when no limit is configured.
    """
    if not max_memory_mb:
        return None
    return (
        f"[plugins.sandbox] max_memory_mb = {max_memory_mb} is not enforced: plugins run "
        "inside the host process, where Python cannot limit one plugin's memory. Limiting "
        'memory needs a plugin running in its own process: isolation = "process" (in '
        "[plugins.sandbox] or a plugin's own table) enforces it; otherwise, only install "
        "plugins you trust not to exhaust memory."
    )
