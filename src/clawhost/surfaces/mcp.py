"""The bridge from a PluginHost to an MCP server: every plugin's tools, over stdio.

Tools are listed from the host's ``ToolRegistry`` (``Tool.schema("mcp")``) and called
through ``host.tools.invoke``: argument validation, deadlines, concurrency limits,
permissions, lazy activation and held calls during a hot reload, as for any call. What
goes wrong is an error *result* (``isError``) naming the tool, plugin or field. When the
tool set changes, clients are told: ``notifications/tools/list_changed`` on handshake-era
connections, a ``ToolsListChanged`` event on 2026-era ``subscriptions/listen`` streams.
The SDK (``mcp>=2``, the ``mcp`` extra) is imported only when a server is built.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

import anyio

from clawhost._version import __version__
from clawhost.errors import ClawhostError

if TYPE_CHECKING:
    import mcp_types
    from mcp.server import ServerRequestContext
    from mcp.server.lowlevel import Server
    from mcp.server.session import ServerSession

    from clawhost.reload.reports import ReloadEvent
    from clawhost.runtime.events import EventBus
    from clawhost.runtime.records import PluginRecord
    from clawhost.runtime.registry import ToolRegistry

__all__ = ["MCP_EXTRA_HINT", "McpBridge", "require_mcp", "serve_stdio"]

logger = logging.getLogger("clawhost.mcp")


class McpHost(Protocol):
    """What the MCP bridge needs of its host (a ``PluginHost`` is one)."""

    @property
    def tools(self) -> ToolRegistry: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def plugins(self) -> Mapping[str, PluginRecord]: ...

    def on_reload(self, callback: Callable[[ReloadEvent], Any]) -> Callable[[], None]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


MCP_EXTRA_HINT = "pip install 'clawhost[mcp]'"
#: The owner the bridge's event handlers are registered under: not a valid plugin name.
_OWNER = "<clawhost mcp>"
_CHUNK = 65536
#: How long a burst of changes (a reload deactivates, then activates) settles, in seconds.
_SETTLE = 0.05

Fingerprint = tuple[tuple[str, str, bool, float | None], ...]


def require_mcp() -> None:
    """``ImportError``, saying how to get it, unless the MCP SDK (``mcp>=2``) is there."""
    try:
        found = importlib.util.find_spec("mcp") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
        found = False
    if not found or sys.modules.get("mcp", ...) is None:
        raise ImportError(
            f"the MCP server needs the MCP Python SDK (mcp>=2.0), from the 'mcp' extra: "
            f"{MCP_EXTRA_HINT}",
            name="mcp",
        )
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import InvalidVersion, Version

    try:
        installed = version("mcp")
        too_old = Version(installed).major < 2
    except (PackageNotFoundError, InvalidVersion):  # vendored or unusual: try it as it is
        return
    if too_old:
        raise ImportError(
            f"the MCP server needs mcp>=2.0, but mcp {installed} is installed: {MCP_EXTRA_HINT}",
            name="mcp",
        )


class McpBridge:
    """An MCP server (the SDK's low-level ``Server``, as ``server``) of ``host``'s tools.

    ``run(read, write)`` serves one connection over SDK streams, watching the tool set;
    ``poll_interval`` bounds how late a change no event announces is noticed."""

    def __init__(
        self, host: McpHost, *, name: str = "clawhost", poll_interval: float = 1.0
    ) -> None:
        require_mcp()
        import mcp_types as types
        from mcp.server.lowlevel import Server
        from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler

        self.host = host
        self.poll_interval = poll_interval
        self._bus = InMemorySubscriptionBus()
        self.server: Server[Any] = Server(
            name,
            version=__version__,
            title="clawhost",
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=ListenHandler(self._bus),
        )
        self.server.add_notification_handler(
            "notifications/initialized", types.NotificationParams, self._initialized
        )
        self._sessions: list[ServerSession] = []  # handshake-era connections, to notify
        self._seen: Fingerprint = ()
        self._wake: anyio.Event  # made by run(): an Event needs the running loop
        self._serving = False
        self._subscribed = False

    def tools(self) -> list[mcp_types.Tool]:
        """Every tool as MCP lists it: registered ones with their schemas, and those a lazy
        plugin declares (any arguments; their schema is listed once it is activated)."""
        import mcp_types as types

        from clawhost.errors import NotRegistered

        registry = self.host.tools
        listed: dict[str, types.Tool] = {}
        for info in registry.list():
            if not info.registered:
                listed[info.name] = types.Tool(
                    name=info.name,
                    description=f"A tool of plugin {info.plugin!r}, activated on its first "
                    "call; its parameters are listed from then on.",
                    input_schema={"type": "object"},
                )
                continue
            try:
                schema = registry.get(info.name).schema("mcp")
                listed[info.name] = types.Tool.model_validate(schema)
            except NotRegistered:  # deactivated since list(): it is simply gone
                continue
            except Exception as exc:  # a signature pydantic cannot describe: skip that one
                why = f"{type(exc).__name__}: {exc}"
                logger.warning(
                    "Tool %r of plugin %r is not listed: %s", info.name, info.plugin, why
                )
        return list(listed.values())

    async def call(
        self, name: str, arguments: Mapping[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        """Call a tool through ``host.tools.invoke_jsonable``: its result, or an error result."""
        try:
            result = await self.host.tools.invoke_jsonable(name, dict(arguments or {}))
        except Exception as exc:  # ToolFailed, ToolArgumentsInvalid, PluginTimeout, ...
            text = str(exc)  # clawhost's errors name the tool, plugin or field themselves
            if not isinstance(exc, ClawhostError):  # Withdrawn (gone after a reload), ...
                text = f"tool {name!r} failed: {type(exc).__name__}: {exc}"
            logger.warning("MCP call of tool %r failed: %s", name, " ".join(text.split()))
            logger.debug("traceback of the failed call of %r", name, exc_info=exc)
            return _error(text)
        return _success(result)

    # -- the SDK's handlers ---------------------------------------------------------------

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.PaginatedRequestParams | None
    ) -> mcp_types.ListToolsResult:
        import mcp_types as types

        return types.ListToolsResult(tools=self.tools())

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.CallToolRequestParams
    ) -> mcp_types.CallToolResult:
        return await self.call(params.name, params.arguments)

    async def _initialized(
        self, ctx: ServerRequestContext[Any, Any], params: mcp_types.NotificationParams
    ) -> None:
        # A handshake-era connection: list changes go out on its standalone channel.
        self._sessions.append(ctx.session)

    # -- watching the tool set ------------------------------------------------------------

    def _fingerprint(self) -> Fingerprint:
        """The tool set without building a schema: names, owners, registered or not, and
        when each plugin was last activated (a reload re-activates it: new code)."""
        plugins = self.host.plugins
        return tuple(
            (
                info.name,
                info.plugin,
                info.registered,
                record.activated_at if (record := plugins.get(info.plugin)) else None,
            )
            for info in self.host.tools.list()
        )

    def _poke(self, *_: Any) -> None:
        if self._serving:
            self._wake.set()

    async def check(self) -> bool:
        """Compare the tool set with the last one seen; if it changed, tell every client
        (handshake-era connections and listen streams). Returns whether it changed."""
        from mcp.server.subscriptions import ToolsListChanged

        current = self._fingerprint()
        if current == self._seen:
            return False
        self._seen = current
        logger.info("Tool list changed (%d tool(s)); notifying MCP clients", len(current))
        await self._bus.publish(ToolsListChanged())
        for session in list(self._sessions):
            await session.send_tool_list_changed()  # best effort: never raises
        return True

    async def _watch(self) -> None:
        while True:
            with anyio.move_on_after(self.poll_interval):
                await self._wake.wait()
            if self._wake.is_set():
                await anyio.sleep(_SETTLE)
                self._wake = anyio.Event()
            await self.check()

    async def run(self, read_stream: Any, write_stream: Any) -> None:
        """Serve one MCP connection over the SDK's streams until the client goes away."""
        from mcp.server.lowlevel import NotificationOptions

        options = self.server.create_initialization_options(NotificationOptions(tools_changed=True))
        if not self._subscribed:  # the event bus has no unsubscribe: once per bridge
            self._subscribed = True
            for event in ("on_plugin_activated", "on_plugin_deactivated"):
                self.host.events.subscribe(_OWNER, event, self._poke)  # takes no payload
        stop_listening = self.host.on_reload(self._poke)
        self._seen, self._wake = self._fingerprint(), anyio.Event()
        self._serving = True
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch)
                await self.server.run(read_stream, write_stream, options)
                logger.info("MCP client disconnected")
                group.cancel_scope.cancel()
        finally:
            stop_listening()
            self._serving = False
            self._sessions.clear()


def _error(text: str) -> mcp_types.CallToolResult:
    import mcp_types as types

    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)


def _success(value: Any) -> mcp_types.CallToolResult:
    """A string as text; anything else as JSON text (an object also as structuredContent)."""
    import mcp_types as types
    from pydantic_core import to_jsonable_python

    if isinstance(value, str):
        return types.CallToolResult(content=[types.TextContent(type="text", text=value)])
    try:
        data = to_jsonable_python(value, fallback=repr)
        text = json.dumps(data, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. bytes that are not UTF-8
        data, text = None, repr(value)
    structured = cast("dict[str, Any]", data) if isinstance(data, dict) else None
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structured_content=structured
    )


# -- stdio ------------------------------------------------------------------------------------


class _ClientLines:
    """The client's messages, line by line, from a private copy of fd 0. A pipe, socket or
    terminal is polled, not read in a worker thread, so a signal stops the server while
    the client keeps its end open (the SDK's reader blocks in a thread nothing cancels);
    anything else (a file, the null device) is read in a thread: it never waits long."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._pollable = True
        self._eof = False

    def __aiter__(self) -> _ClientLines:
        return self

    async def __anext__(self) -> str:
        while "\n" not in self._pending:
            if self._eof:
                rest, self._pending = self._pending, ""
                if rest:
                    return rest
                raise StopAsyncIteration
            chunk = await self._read()
            self._eof = not chunk
            self._pending += self._decoder.decode(chunk, final=self._eof)
        line, _, self._pending = self._pending.partition("\n")
        return line + "\n"

    async def _read(self) -> bytes:
        while self._pollable:
            try:
                await anyio.wait_readable(self._fd)
            except (OSError, NotImplementedError):  # epoll refuses regular files
                self._pollable = False
                break
            try:
                return os.read(self._fd, _CHUNK)
            except BlockingIOError:  # a spurious wake-up on a non-blocking descriptor
                continue
        return await anyio.to_thread.run_sync(os.read, self._fd, _CHUNK)


def _flush_stdout(*, line_buffering: bool = False) -> None:
    with contextlib.suppress(Exception):  # sys.stdout may be anything, or closed
        sys.stdout.flush()
        if line_buffering:
            sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """Raise an error the SDK's task groups wrapped alone as itself (a ``ClawhostError``)."""
    try:
        yield
    except BaseExceptionGroup as group:
        error: BaseException = group
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        raise error from None


@contextlib.contextmanager
def _claim_stdin() -> Iterator[int | None]:
    """Move the client's stream off fd 0 (which then reads the null device, so plugin
    code reading stdin cannot steal protocol bytes); yield the private descriptor, or
    ``None`` where this is not possible (the SDK then claims fd 0 itself)."""
    if sys.platform == "win32":
        yield None
        return
    import fcntl

    try:
        wire = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    except OSError:  # no stdin at all
        yield None
        return
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        yield wire
    finally:
        with contextlib.suppress(OSError):
            os.dup2(wire, 0)
        os.close(wire)


async def serve_stdio(
    host: McpHost,
    *,
    manage_host: bool = True,
    name: str = "clawhost",
    poll_interval: float = 1.0,
) -> None:
    """Serve ``host``'s tools to the MCP client on stdin/stdout until it disconnects.

    While serving, fd 1 is the protocol's alone: what plugins print goes to stderr. With
    ``manage_host`` (the default) the host is started after fd 1 is claimed and stopped
    before it is released; otherwise the caller starts and stops it."""
    require_mcp()
    from mcp.server.stdio import stdio_server

    bridge = McpBridge(host, name=name, poll_interval=poll_interval)
    with _claim_stdin() as wire, _unwrapped():
        # stdio_server only iterates over its stdin: a _ClientLines does that.
        stdin = None if wire is None else cast("anyio.AsyncFile[str]", _ClientLines(wire))
        async with stdio_server(stdin=stdin) as (read_stream, write_stream):
            _flush_stdout(line_buffering=True)  # fd 1 is stderr now: show prints as they come
            try:
                if manage_host:
                    await host.start()
                tools = host.tools.list()
                waiting = sum(not info.registered for info in tools)
                logger.info(
                    "MCP server ready on stdio: %d tool(s)%s",
                    len(tools),
                    f", {waiting} activated on first call" if waiting else "",
                )
                await bridge.run(read_stream, write_stream)
            finally:
                if manage_host:
                    with anyio.CancelScope(shield=True):
                        await host.stop()
                _flush_stdout()  # before fd 1 is the wire again
