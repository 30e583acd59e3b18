"""The PEP 578 audit hook that checks plugin code against its ``SandboxScope``.

``sys.addaudithook`` can never be undone, so the hook is installed once, on first need, and
costs one context-variable read per audit event while no scope is current (host code).
Inside a scope, file, network and process events are checked against the scope's
``EffectivePermissions`` and refused with ``PermissionDenied``.

Installing the hook also installs ``_propagate``'s patches, which make the scope follow
plugin code into threads and executors and let it remember what granted names resolved
to. docs/sandbox.md lists exactly what is and is not covered.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import threading
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from types import FrameType
from typing import Any
from urllib.parse import unquote

from clawhost.core.netrules import IPAddress, parse_host
from clawhost.errors import PermissionDenied
from clawhost.sandbox.propagate import patch_bytecode_cache, patch_resolvers, patch_threads
from clawhost.sandbox.scope import _CURRENT, SandboxScope, resolve_path, set_hook_installer

__all__ = ["audit_hook_installed", "install_audit_hook"]

Handler = Callable[[SandboxScope, tuple[Any, ...]], None]

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_MAX_RESOURCE = 200

# -- files ------------------------------------------------------------------------------------


def _fd_path(fd: int) -> str | None:
    """The path a directory descriptor refers to, where the OS can tell."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")  # Linux
    except OSError:
        pass
    try:
        import fcntl

        raw = fcntl.fcntl(fd, getattr(fcntl, "F_GETPATH"), b"\0" * 1024)  # noqa: B009 (macOS only)
    except (AttributeError, OSError, ImportError):
        return None
    return os.fsdecode(raw.rstrip(b"\0"))


def _rmtree_dir_fd() -> int | None:
    """The directory descriptor ``shutil.rmtree`` is opening a name relative to, if it is.

    The ``open`` audit event carries no ``dir_fd``; ``rmtree`` opens every subfolder
    relative to its parent's descriptor, so without this, deleting a tree inside a
    granted folder would be refused. Only shutil's own helper is recognised.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_globals is globals():
        frame = frame.f_back
    if frame is None or frame.f_globals.get("__name__") != "shutil":
        return None
    name = frame.f_code.co_name
    local = {"_rmtree_safe_fd": "topfd", "_rmtree_safe_fd_step": "dirfd"}.get(name)
    value = frame.f_locals.get(local) if local else None
    return value if isinstance(value, int) else None


def _deny_fs(scope: SandboxScope, resource: str, write: bool) -> PermissionDenied:
    roots = ", ".join(scope.permissions.filesystem) or "none"
    if write:
        detail = f"writing needs a path inside its filesystem permissions ({roots})"
    else:
        detail = (
            f"reading needs a path inside its filesystem permissions ({roots}), "
            "its own package or Python's libraries"
        )
    return PermissionDenied(scope.plugin, "filesystem", resource, detail)


def _check_path(
    scope: SandboxScope, raw: Any, *, write: bool, follow: bool = True, dir_fd: Any = None
) -> None:
    if raw is None:
        raw = "."
    if isinstance(raw, int):
        return  # an already open descriptor: checked when it was opened (see the docs)
    path = os.fsdecode(os.fspath(raw))
    if isinstance(dir_fd, int) and dir_fd >= 0 and not os.path.isabs(path):
        base = _fd_path(dir_fd)
        if base is None:
            raise PermissionDenied(
                scope.plugin, "filesystem", path, "relative to a descriptor it cannot resolve"
            )
        path = os.path.join(base, path)
    resolved = resolve_path(path, follow=follow)
    permissions = scope.permissions
    if permissions.may_write(resolved) if write else permissions.may_read(resolved):
        return
    raise _deny_fs(scope, resolved, write)


def _on_open(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    path, mode, flags = args
    if isinstance(path, int):
        return
    if isinstance(flags, int) and flags:
        write = bool(flags & _WRITE_FLAGS)
        exclusive = flags & os.O_CREAT and flags & os.O_EXCL
        follow = not (flags & _NOFOLLOW or exclusive)
    else:
        write = isinstance(mode, str) and any(c in mode for c in "wax+")
        follow = True
    dir_fd = None
    if not os.path.isabs(os.fsdecode(os.fspath(path))):
        dir_fd = _rmtree_dir_fd()
    _check_path(scope, path, write=write, follow=follow, dir_fd=dir_fd)


def _path_event(index: int, *, write: bool, follow: bool, dir_fd: int | None) -> Handler:
    """A handler for an ``os.*`` event whose path is ``args[index]``."""

    def handler(scope: SandboxScope, args: tuple[Any, ...]) -> None:
        fd = args[dir_fd] if dir_fd is not None and len(args) > dir_fd else None
        _check_path(scope, args[index], write=write, follow=follow, dir_fd=fd)

    return handler


def _on_rename(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    src, dst, src_dir_fd, dst_dir_fd = args
    _check_path(scope, src, write=True, follow=False, dir_fd=src_dir_fd)
    _check_path(scope, dst, write=True, follow=False, dir_fd=dst_dir_fd)


def _on_link(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    # A hard link inside a granted folder to a file outside it would hand out that file.
    src, dst, src_dir_fd, dst_dir_fd = args
    _check_path(scope, src, write=True, dir_fd=src_dir_fd)
    _check_path(scope, dst, write=True, follow=False, dir_fd=dst_dir_fd)


def _on_sqlite(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    database = args[0]
    if isinstance(database, int):
        return
    text = os.fsdecode(os.fspath(database))
    if text in ("", ":memory:"):
        return
    write = True
    if text.startswith("file:"):  # a URI (uri=True); a plain name "file:x" is rare
        location, _, query = text[5:].partition("?")
        if "mode=memory" in query or location in ("", ":memory:"):
            return
        write = "mode=ro" not in query
        text = unquote(location[2:] if location.startswith("//") else location)
        text = text[text.index("/") :] if not text.startswith("/") and "/" in text else text
    _check_path(scope, text, write=write)


# -- network ----------------------------------------------------------------------------------


def _network_allowed(scope: SandboxScope, host: IPAddress | str, port: int | None) -> bool:
    rules = scope.permissions.network
    if any(rule.matches(host, port) for rule in rules):
        return True
    if isinstance(host, str):
        return False
    return any(rule.matches(name, port) for name in scope.resolved_names(host) for rule in rules)


def _endpoint(host: IPAddress | str, port: int | None) -> str:
    shown = f"[{host}]" if isinstance(host, IPv6Address) else str(host)
    return f"{shown}:{'*' if port is None else port}"


def _deny_net(scope: SandboxScope, host: IPAddress | str, port: int | None) -> PermissionDenied:
    granted = ", ".join(map(str, scope.permissions.network)) or "none"
    return PermissionDenied(
        scope.plugin, "network", _endpoint(host, port), f"granted network: {granted}"
    )


def _inet_host(raw: Any, family: int) -> IPAddress | str:
    host = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    if host == "":  # the C socket module reads "" as INADDR_ANY, "<broadcast>" as broadcast
        return IPv4Address(0) if family == socket.AF_INET else IPv6Address(0)
    if host == "<broadcast>":
        return IPv4Address("255.255.255.255")
    return parse_host(host)


def _check_address(scope: SandboxScope, family: int, address: Any, *, bind: bool) -> None:
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple):
        host = _inet_host(address[0], family)
        port = address[1] if isinstance(address[1], int) else None
        if _network_allowed(scope, host, port):
            return
        raise _deny_net(scope, host, port)
    if family == getattr(socket, "AF_UNIX", None) and isinstance(address, str | bytes):
        text = os.fsdecode(address)
        if text.startswith("\0") or not text:
            raise PermissionDenied(
                scope.plugin, "network", f"unix:@{text[1:]}", "abstract unix sockets are refused"
            )
        # A unix socket is a file: connecting or binding writes to it.
        _check_path(scope, text, write=True, follow=not bind)
        return
    if any(rule.kind == "any" and rule.port is None for rule in scope.permissions.network):
        return
    raise PermissionDenied(
        scope.plugin,
        "network",
        f"family {family}: {address!r}"[:_MAX_RESOURCE],
        "only '*:*' grants address families other than IP and unix",
    )


def _on_connect(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    sock, address = args[0], args[1]
    if address is not None:  # sendmsg without an address uses the connected one
        _check_address(scope, sock.family, address, bind=False)


def _on_bind(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    _check_address(scope, args[0].family, args[1], bind=True)


def _service_port(port: Any) -> int | None:
    if isinstance(port, int):
        return port or None
    if isinstance(port, str | bytes):
        text = port.decode("ascii", "replace") if isinstance(port, bytes) else port
        if text.isdigit():
            return int(text) or None
        try:
            return socket.getservbyname(text)
        except OSError:
            return None
    return None


def _on_lookup(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    raw = args[0]
    if raw is None:
        return  # local addresses only: no lookup happens
    host = _inet_host(raw, socket.AF_INET)
    port = _service_port(args[1]) if len(args) > 1 else None
    if not _network_allowed(scope, host, port):
        raise _deny_net(scope, host, port)


def _on_getnameinfo(scope: SandboxScope, args: tuple[Any, ...]) -> None:
    sockaddr = args[0]
    host = _inet_host(sockaddr[0], socket.AF_INET)
    port = sockaddr[1] if len(sockaddr) > 1 and isinstance(sockaddr[1], int) else None
    if not _network_allowed(scope, host, port):
        raise _deny_net(scope, host, port)


# -- processes --------------------------------------------------------------------------------


def _command(value: Any) -> str:
    if isinstance(value, str | bytes | os.PathLike):
        text = os.fsdecode(os.fspath(value))
    elif isinstance(value, list | tuple):
        text = shlex.join(os.fsdecode(os.fspath(part)) for part in value)
    else:
        text = repr(value)
    return text[:_MAX_RESOURCE]


def _process_event(describe: Callable[[tuple[Any, ...]], str]) -> Handler:
    def handler(scope: SandboxScope, args: tuple[Any, ...]) -> None:
        if not scope.permissions.subprocess:
            raise PermissionDenied(
                scope.plugin, "subprocess", describe(args), "subprocess permission not granted"
            )

    return handler


_HANDLERS: dict[str, Handler] = {
    "open": _on_open,
    "os.remove": _path_event(0, write=True, follow=False, dir_fd=1),
    "os.rmdir": _path_event(0, write=True, follow=False, dir_fd=1),
    "os.mkdir": _path_event(0, write=True, follow=False, dir_fd=2),
    "os.rename": _on_rename,
    "os.link": _on_link,
    "os.symlink": _path_event(1, write=True, follow=False, dir_fd=2),
    "os.chmod": _path_event(0, write=True, follow=True, dir_fd=2),
    "os.chown": _path_event(0, write=True, follow=True, dir_fd=3),
    "os.chflags": _path_event(0, write=True, follow=True, dir_fd=None),
    "os.lchflags": _path_event(0, write=True, follow=False, dir_fd=None),
    "os.utime": _path_event(0, write=True, follow=True, dir_fd=3),
    "os.truncate": _path_event(0, write=True, follow=True, dir_fd=None),
    "os.setxattr": _path_event(0, write=True, follow=True, dir_fd=None),
    "os.removexattr": _path_event(0, write=True, follow=True, dir_fd=None),
    "os.getxattr": _path_event(0, write=False, follow=True, dir_fd=None),
    "os.listxattr": _path_event(0, write=False, follow=True, dir_fd=None),
    "os.listdir": _path_event(0, write=False, follow=True, dir_fd=None),
    "os.scandir": _path_event(0, write=False, follow=True, dir_fd=None),
    "os.chdir": _path_event(0, write=False, follow=True, dir_fd=None),
    # Checked up front, so a refused tree is not left half deleted.
    "shutil.rmtree": _path_event(0, write=True, follow=False, dir_fd=1),
    "sqlite3.connect": _on_sqlite,
    "socket.connect": _on_connect,
    "socket.sendto": _on_connect,
    "socket.sendmsg": _on_connect,
    "socket.bind": _on_bind,
    "socket.getaddrinfo": _on_lookup,
    "socket.gethostbyname": _on_lookup,
    "socket.gethostbyname_ex": _on_lookup,
    "socket.gethostbyaddr": _on_lookup,
    "socket.getnameinfo": _on_getnameinfo,
    "subprocess.Popen": _process_event(lambda a: _command(a[1] if a[1] is not None else a[0])),
    "os.system": _process_event(lambda a: _command(a[0])),
    "os.exec": _process_event(lambda a: _command(a[1] or a[0])),
    "os.posix_spawn": _process_event(lambda a: _command(a[1] or a[0])),
    "os.spawn": _process_event(lambda a: _command(a[2] or a[1])),
    "os.fork": _process_event(lambda a: "fork()"),
    "os.forkpty": _process_event(lambda a: "forkpty()"),
    "pty.spawn": _process_event(lambda a: _command(a[0])),
    "os.startfile": _process_event(lambda a: _command(a[0])),
    "os.startfile/2": _process_event(lambda a: _command(a[0])),
    "os.kill": _process_event(lambda a: f"kill(pid={a[0]}, signal={a[1]})"),
    "os.killpg": _process_event(lambda a: f"killpg(pgid={a[0]}, signal={a[1]})"),
    "signal.pthread_kill": _process_event(lambda a: f"pthread_kill({a[0]}, signal={a[1]})"),
}


def _hook(
    event: str,
    args: tuple[Any, ...],
    _get: Callable[[], SandboxScope | None] = _CURRENT.get,
    _handlers: dict[str, Handler] = _HANDLERS,
) -> None:
    scope = _get()
    if scope is None:  # host code: the fast path every audit event of the process takes
        return
    handler = _handlers.get(event)
    if handler is not None:
        handler(scope, args)


_installed = False
_install_lock = threading.Lock()


def install_audit_hook() -> None:
    """Install the sandbox's audit hook (once; it can never be removed).

    Until a scope is entered the hook returns at once for every event. Creating a
    ``SandboxScope`` calls this, so the host rarely needs to.
    """
    global _installed
    if _installed:
        return
    with _install_lock:
        if not _installed:  # another thread may have won the race for the lock
            patch_threads()
            patch_resolvers()
            patch_bytecode_cache()
            sys.addaudithook(_hook)
            _installed = True


def audit_hook_installed() -> bool:
    """Whether ``install_audit_hook`` has run in this process."""
    return _installed


set_hook_installer(install_audit_hook)
