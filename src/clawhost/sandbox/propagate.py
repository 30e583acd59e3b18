"""Making the sandbox scope follow plugin code, and remembering what granted names resolve to.

Installed together with the audit hook (``install_audit_hook``), never by themselves:

* ``threading.Thread.start`` and ``_thread.start_new_thread``: a thread started inside a
  scope runs in a copy of the starting code's context, so in the same scope;
* ``ThreadPoolExecutor.submit`` (and so ``loop.run_in_executor``): each work item runs in
  its submitter's scope;
* ``socket.getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``: the addresses a name
  resolved to are remembered by the current scope;
* ``SourceFileLoader.set_data``: a module imported inside a scope gets its bytecode
  cached (``patch_bytecode_cache``).

Threads started by host code, and host code's lookups, are left exactly as they were.
"""

from __future__ import annotations

import _thread
import contextvars
import functools
import os
import py_compile
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from importlib.machinery import SourceFileLoader
from importlib.util import cache_from_source
from typing import Any, TypeVar

from clawhost.core.netrules import IPAddress, parse_host, parse_ip
from clawhost.sandbox.scope import _CURRENT

__all__ = ["patch_bytecode_cache", "patch_resolvers", "patch_threads"]

T = TypeVar("T")


def _run_as_host(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    token = _CURRENT.set(None)
    try:
        return fn(*args, **kwargs)
    finally:
        _CURRENT.reset(token)


def patch_threads() -> None:
    """Make threads and executor work started inside a scope run in that scope."""
    original_start: Callable[[threading.Thread], None] = threading.Thread.start
    original_start_new: Callable[..., int] = _thread.start_new_thread
    original_submit: Callable[..., Future[Any]] = ThreadPoolExecutor.submit

    @functools.wraps(original_start)
    def start(self: threading.Thread) -> None:
        if _CURRENT.get() is not None:
            # An instance attribute shadows run() for subclasses too, and runs it in a copy
            # of the starting code's context (3.14's Thread(context=...) does the same).
            run = functools.partial(contextvars.copy_context().run, self.run)
            self.run = run  # type: ignore[method-assign]
        original_start(self)

    @functools.wraps(original_start_new)
    def start_new_thread(
        function: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> int:
        if _CURRENT.get() is not None:
            args = (function, *args)
            function = contextvars.copy_context().run
        return original_start_new(function, args, kwargs or {})

    @functools.wraps(original_submit)
    def submit(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Future[Any]:
        # Executor threads outlive the call that started them, so each work item runs in
        # its submitter's scope, never in whatever scope its thread was started from.
        if _CURRENT.get() is not None:
            return original_submit(self, contextvars.copy_context().run, fn, *args, **kwargs)
        return original_submit(self, _run_as_host, fn, *args, **kwargs)

    threading.Thread.start = start  # type: ignore[method-assign]
    _thread.start_new_thread = start_new_thread
    _thread.start_new = start_new_thread
    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign,assignment]


def _addresses(infos: list[Any]) -> list[IPAddress]:
    found = []
    for info in infos:
        address = (
            parse_ip(str(info[4][0])) if info[0] in (socket.AF_INET, socket.AF_INET6) else None
        )
        if address is not None:
            found.append(address)
    return found


def patch_resolvers() -> None:
    """Remember, per scope, the addresses granted names resolve to.

    The ``socket.getaddrinfo`` audit event fires before the lookup, so the answer is only
    known to a wrapper around the function. Code that kept a reference to the original
    (``from socket import getaddrinfo`` before the hook was installed) is not seen: it can
    then connect to granted names, but not to the addresses they resolved to.
    """
    original_getaddrinfo = socket.getaddrinfo
    original_byname = socket.gethostbyname
    original_byname_ex = socket.gethostbyname_ex

    def learn(host: Any, addresses: list[IPAddress]) -> None:
        scope = _CURRENT.get()
        if scope is not None and isinstance(host, str | bytes) and addresses:
            name = parse_host(host.decode("ascii", "replace") if isinstance(host, bytes) else host)
            if isinstance(name, str):
                scope.remember_resolution(name, addresses)

    @functools.wraps(original_getaddrinfo)
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        infos = original_getaddrinfo(host, port, *args, **kwargs)
        learn(host, _addresses(infos))
        return infos

    @functools.wraps(original_byname)
    def gethostbyname(hostname: str) -> str:
        address = original_byname(hostname)
        learn(hostname, [ip for ip in [parse_ip(address)] if ip is not None])
        return address

    @functools.wraps(original_byname_ex)
    def gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
        answer = original_byname_ex(hostname)
        learn(hostname, [ip for ip in map(parse_ip, answer[2]) if ip is not None])
        return answer

    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex


def patch_bytecode_cache() -> None:
    """Let the import system cache the bytecode of modules imported inside a scope.

    A plugin may not write to its own folder, so Python could not write the
    ``__pycache__`` of a plugin installed without bytecode (uv's default), and compiled it
    again at every start. When the import system caches a module's bytecode inside a
    scope, for a source file the plugin may read, at that file's own cache path, the
    bytecode is compiled again from the file with the host's rights and written there:
    what lands on disk is the source's bytecode, never bytes plugin code chose. Any other
    ``set_data`` is judged as the plugin's own write, as before.
    """
    original: Callable[..., None] = SourceFileLoader.set_data

    @functools.wraps(original)
    def set_data(self: SourceFileLoader, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        scope = _CURRENT.get()
        if scope is None:
            return original(self, path, data, _mode=_mode)
        try:
            own_cache = path == cache_from_source(self.path)
        except (NotImplementedError, ValueError):  # no cache tag, or an unusable name
            own_cache = False
        source = os.path.realpath(self.path)
        if not own_cache or not os.path.isfile(source) or not scope.permissions.may_read(source):
            return original(self, path, data, _mode=_mode)
        token = _CURRENT.set(None)
        try:
            py_compile.compile(self.path, cfile=path, doraise=False, quiet=2)
        finally:
            _CURRENT.reset(token)
        return None

    SourceFileLoader.set_data = set_data  # type: ignore[method-assign,assignment]
