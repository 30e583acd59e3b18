"""The gateway's HTTP surface: one ASGI application, served by any ASGI server.

``GatewayApp(host, routes)`` answers:

* ``GET /``: the status page, one self-contained HTML document (no external resource):
  a table of plugins and one of channels, rendered by the server and refreshed from
  ``/status.json`` every 2 seconds by a small inline script;
* ``GET /status.json``: ``{"plugins": [...], "channels": [...], "host": {"version"}}``;
* ``GET /health``: every active plugin's health check; 200 when all are healthy, else 503;
* ``GET /plugins/<name>/health``: one plugin's health check (200, 503, or 404);
* ``/plugins/<name>/<rest>``, any method: the plugin's own ASGI app, mounted in
  ``HttpRoutes``, with ``root_path`` extended by ``/plugins/<name>`` and ``path`` (and
  ``raw_path``) the whole path, as uvicorn and Starlette's ``Mount`` give a mounted app
  (the app routes on ``path`` below ``root_path``); ``/plugins/<name>`` redirects (307) to
  ``/plugins/<name>/``. ``/plugins/<name>/health`` belongs to the host and is never
  forwarded. The app runs as the plugin's code (its sandbox scope, so its permissions
  hold), and waits while the plugin hot-reloads, as a tool call does; it gets 404 while
  nothing is mounted for the plugin and 503 while the plugin is not ACTIVE.

Host routes answer ``GET`` and ``HEAD`` (405 otherwise); any other path is a 404. When the
server gives a ``root_path`` (``uvicorn --root-path``), routes are matched below it, whether
or not the server also put it in front of ``path``. WebSocket connections are refused.

Before any routing, a request whose path could mean something else to a plugin app than
to this router is refused with 400: a ``.`` or ``..`` segment, an empty segment (``//``),
a backslash, a control character, or a percent-encoded slash, backslash or dot in
``raw_path``. Routing uses the decoded ``path``; a plugin only ever sees requests under its
own prefix, and no plugin can mount at ``/``, ``/health``, ``/status.json`` or another
plugin's prefix (a mount is named by its plugin, whose name cannot hold a slash).

A plugin app that raises, or returns without starting a response, gets a 500 JSON answer
in its place (logged under ``clawhost.http``); one that fails after starting its response
is only logged. Either way the gateway goes on serving. ``lifespan`` events are answered
here and never forwarded to plugin apps.

``serve(app)`` runs the application under uvicorn (``pip install clawhost[cli]``).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from clawhost._version import __version__
from clawhost.runtime.routes import (
    PLUGIN_NAME,
    PREFIX,
    ASGIApp,
    HttpRoutes,
    Message,
    Receive,
    Scope,
    Send,
)
from clawhost.sandbox.permissions import sandbox_scope
from clawhost.surfaces.statuspage import CONTENT_SECURITY_POLICY, render_page

if TYPE_CHECKING:
    from clawhost.host.host import PluginHost
    from clawhost.runtime.records import PluginRecord

__all__ = [
    "ASGIApp",
    "GatewayApp",
    "HttpRoutes",
    "Receive",
    "Scope",
    "Send",
    "serve",
]

logger = logging.getLogger("clawhost.http")

#: Admin commands, when the gateway has an admin token: ``POST /admin/<namespace.method>``.
ADMIN_PREFIX = "/admin/"

_METHODS = ("GET", "HEAD")
_ENCODED = re.compile(rb"%(2f|5c|2e)", re.IGNORECASE)
_ENCODED_NAMES = {b"2f": "slash", b"5c": "backslash", b"2e": "dot"}


# -- responses ---------------------------------------------------------------------------------


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    *,
    head: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"cache-control", b"no-store"),
                (b"x-content-type-options", b"nosniff"),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _json(
    send: Send,
    status: int,
    payload: Any,
    *,
    head: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = json.dumps(payload, default=str, ensure_ascii=False).encode("utf-8")
    await _respond(send, status, body, b"application/json", head=head, headers=headers)


# -- path safety -------------------------------------------------------------------------------


def path_problem(path: str, raw_path: bytes | None) -> str | None:
    """Why a request path is refused before routing, or ``None`` when it is acceptable."""
    if not path.startswith("/"):
        return "the path must start with '/'"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F for char in path):
        return "control character in the path"
    if "\\" in path:
        return "backslash in the path"
    if "//" in path:
        return "empty segment ('//') in the path"
    if any(segment in (".", "..") for segment in path.split("/")):
        return "'.' or '..' segment in the path"
    if raw_path is not None:
        encoded = _ENCODED.search(raw_path)
        if encoded is not None:
            what = _ENCODED_NAMES[encoded.group(1).lower()]
            return f"percent-encoded {what} ({encoded.group().decode('ascii')}) in the path"
        if any(byte < 0x20 or byte == 0x7F for byte in raw_path) or b"\\" in raw_path:
            return "control character or backslash in the raw path"
    return None


def _strip_root(path: str, root: str) -> str:
    """``path`` without the server's ``root_path``, when it starts with it (uvicorn's way)."""
    if root and (path == root or path.startswith(root + "/")):
        return path[len(root) :] or "/"
    return path


def _strip_root_raw(raw: bytes, root: str) -> bytes:
    encoded = root.encode("utf-8")
    if encoded and (raw == encoded or raw.startswith(encoded + b"/")):
        return raw[len(encoded) :] or b"/"
    return raw


# -- the application ---------------------------------------------------------------------------


class GatewayApp:
    """The gateway's ASGI 3 application: status page, health routes, plugin apps.

    ``channel_status``, when given, returns the channels' statuses for the status page
    and ``/status.json``: dicts with ``plugin``, ``channel``, ``instance``, ``state``,
    ``last_error``, ``restarts`` and ``since``.

    ``admin_token``, when given, serves ``POST /admin/<namespace.method>`` (a JSON object
    of arguments in, ``{"result": ...}`` out) to requests bearing it
    (``Authorization: Bearer <token>``); without one there is no admin route at all.
    """

    def __init__(
        self,
        host: PluginHost,
        routes: HttpRoutes,
        *,
        channel_status: Callable[[], list[dict[str, Any]]] | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.host = host
        self.routes = routes
        self.channel_status = channel_status
        self.admin_token = admin_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await _lifespan(receive, send)
        elif kind == "websocket":  # not served: refuse the handshake (403)
            await receive()
            await send({"type": "websocket.close", "code": 1008})
        else:
            raise ValueError(f"clawhost's gateway app does not handle {kind!r} scopes")

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What ``/status.json`` returns."""
        return {
            "plugins": [
                self._plugin_row(self.host.plugins[name]) for name in sorted(self.host.plugins)
            ],
            "channels": self._channels(),
            "host": {"version": __version__},
        }

    def _plugin_row(self, record: PluginRecord) -> dict[str, Any]:
        failure = record.failure
        return {
            "name": record.name,
            "version": str(record.version) if record.version is not None else None,
            "state": record.state.value,
            "failure": (
                {"stage": failure.stage, "reason": failure.reason} if failure is not None else None
            ),
            "restarts": record.restarts,
            "restart_at": record.restart_at,
            "http": self.routes.get(record.name) is not None,
        }

    def _channels(self) -> list[dict[str, Any]]:
        if self.channel_status is None:
            return []
        try:
            return list(self.channel_status())
        except Exception:
            logger.exception("the channel status callback failed")
            return []

    # -- routing ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        head = method == "HEAD"
        problem = path_problem(path, scope.get("raw_path"))
        if problem is not None:
            await _json(send, 400, {"error": f"refused: {problem}"}, head=head)
            return
        root: str = scope.get("root_path") or ""
        route = _strip_root(path, root)
        if route.startswith(PREFIX):
            await self._plugin(scope, receive, send, route, root)
            return
        if route.startswith(ADMIN_PREFIX) and self.admin_token is not None:
            await self._admin(scope, receive, send, route[len(ADMIN_PREFIX) :])
            return
        handler = {
            "/": self._page,
            "/status.json": self._status_json,
            "/health": self._health,
        }.get(route)
        if handler is None:
            await _json(send, 404, {"error": f"not found: {route}"}, head=head)
        elif method not in _METHODS:
            await _not_allowed(send, method, route, head)
        else:
            await handler(send, root, head)

    async def _admin(self, scope: Scope, receive: Receive, send: Send, command: str) -> None:
        """``POST /admin/<command>``: run an admin command for a caller with the token."""
        assert self.admin_token is not None
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"authorization", b"").decode("latin-1")
        expected = f"Bearer {self.admin_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            await _json(send, 401, {"error": "admin commands need the gateway's admin token"})
            return
        if scope["method"] != "POST":
            await _not_allowed(send, scope["method"], ADMIN_PREFIX + command, False, "POST")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            args = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            await _json(send, 400, {"error": f"the body is not JSON: {exc}"})
            return
        if not isinstance(args, dict):
            await _json(send, 400, {"error": "the body must be a JSON object of arguments"})
            return
        from clawhost.errors import NotRegistered

        try:
            result = await self.host.admin.call(command, args)
        except NotRegistered as exc:
            await _json(send, 404, {"error": str(exc)})
            return
        except Exception as exc:
            logger.warning("admin command %s failed: %s: %s", command, type(exc).__name__, exc)
            payload = {"error": f"{type(exc).__name__}: {exc}", "command": command}
            await _json(send, 500, payload)
            return
        await _json(send, 200, {"command": command, "result": result})

    async def _page(self, send: Send, root: str, head: bool) -> None:
        status = self.status()
        body = render_page(status, status_url=root + "/status.json").encode("utf-8")
        await _respond(
            send,
            200,
            body,
            b"text/html; charset=utf-8",
            head=head,
            headers=[(b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii"))],
        )

    async def _status_json(self, send: Send, root: str, head: bool) -> None:
        await _json(send, 200, self.status(), head=head)

    async def _health(self, send: Send, root: str, head: bool) -> None:
        reports = await self.host.health()
        healthy = all(report.healthy for report in reports.values())
        payload = {
            "healthy": healthy,
            "plugins": {
                name: {"healthy": report.healthy, "reason": report.reason}
                for name, report in reports.items()
            },
        }
        await _json(send, 200 if healthy else 503, payload, head=head)

    async def _plugin(
        self, scope: Scope, receive: Receive, send: Send, route: str, root: str
    ) -> None:
        name, slash, rest = route[len(PREFIX) :].partition("/")
        method: str = scope["method"]
        head = method == "HEAD"
        if not name:
            error = "refused: empty plugin name in the path"
            await _json(send, 400, {"error": error}, head=head)
            return
        record = self.host.plugins.get(name) if PLUGIN_NAME.fullmatch(name) else None
        if record is None:
            await _json(send, 404, {"error": f"no plugin named {name!r}"}, head=head)
            return
        if slash and rest == "health":  # the host's route, never the plugin's
            if method not in _METHODS:
                await _not_allowed(send, method, route, head)
                return
            report = await self.host.health_check(name)
            payload = {
                "plugin": name,
                "healthy": report.healthy,
                "reason": report.reason,
                "duration": report.duration,
            }
            await _json(send, 200 if report.healthy else 503, payload, head=head)
            return
        if not record.gate.is_open:  # hot reload in progress: wait, as tool calls do
            await record.gate.wait_open()
        app = self.routes.get(name)
        if app is None:
            await _json(send, 404, {"error": f"plugin {name!r} serves no HTTP app"}, head=head)
            return
        if record.state.name != "ACTIVE":
            why = str(record.failure) if record.failure else record.state.value
            payload = {"error": f"plugin {name!r} is not active ({why})", "plugin": name}
            await _json(send, 503, payload, head=head)
            return
        if not slash:  # /plugins/<name>: its app lives at /plugins/<name>/
            location = quote(f"{root}{PREFIX}{name}/", safe="/")
            query: bytes = scope.get("query_string") or b""
            if query:
                location += "?" + query.decode("latin-1")
            await _json(
                send,
                307,
                {"location": location},
                head=head,
                headers=[(b"location", location.encode("latin-1"))],
            )
            return
        # As uvicorn, Starlette's Mount and asgiref do: ``path`` stays the whole path and
        # ``root_path`` grows by the prefix, so the app's own URLs keep /plugins/<name>.
        child = dict(scope)
        child["root_path"] = f"{root}{PREFIX}{name}"
        child["path"] = f"{root}{PREFIX}{name}/{rest}"
        raw_path: bytes | None = scope.get("raw_path")
        if raw_path is not None:
            raw_route = _strip_root_raw(raw_path, root)
            if raw_route.count(b"/") != route.count("/"):
                error = "refused: raw_path does not match path"
                await _json(send, 400, {"error": error}, head=head)
                return
            prefix = f"{root}{PREFIX}{name}/".encode("latin-1")
            child["raw_path"] = prefix + raw_route.split(b"/", 3)[3]
        await self._forward(record, app, child, receive, send)

    async def _forward(
        self, record: PluginRecord, app: ASGIApp, scope: Scope, receive: Receive, send: Send
    ) -> None:
        name = record.name
        head = scope["method"] == "HEAD"
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        record.gate.enter()
        try:
            with sandbox_scope(record.scope):
                await app(scope, receive, watched_send)
        except Exception as exc:
            logger.exception(
                "the HTTP app of plugin %r failed on %s %s",
                name,
                scope["method"],
                scope["path"],
            )
            if not started:
                error = f"the HTTP app of plugin {name!r} failed ({type(exc).__name__})"
                await _json(send, 500, {"error": error, "plugin": name}, head=head)
            return
        finally:
            record.gate.exit()
        if not started:
            logger.error(
                "the HTTP app of plugin %r returned without a response to %s %s",
                name,
                scope["method"],
                scope["path"],
            )
            error = f"the HTTP app of plugin {name!r} returned without a response"
            await _json(send, 500, {"error": error, "plugin": name}, head=head)


async def _not_allowed(
    send: Send, method: str, route: str, head: bool, allow: str = ", ".join(_METHODS)
) -> None:
    await _json(
        send,
        405,
        {"error": f"method {method} is not allowed on {route}"},
        head=head,
        headers=[(b"allow", allow.encode("ascii"))],
    )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- serving -----------------------------------------------------------------------------------


async def serve(app: ASGIApp, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` with uvicorn on ``host:port`` until cancelled or interrupted.

    Cancelling it shuts the server down cleanly (it stops listening and closes its
    connections) before the cancellation goes on. Needs uvicorn: ``pip install
    clawhost[cli]``. ``OSError`` if the server cannot start (say, the port is taken).
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise ModuleNotFoundError(
            "serving the HTTP gateway needs uvicorn: pip install clawhost[cli]"
        ) from exc
    import anyio

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    outcome: list[BaseException] = []
    finished = anyio.Event()

    async def run() -> None:
        # Shielded: cancelling serve() asks the server to stop, it is not torn down.
        try:
            with anyio.CancelScope(shield=True):
                await server.serve()
        except BaseException as exc:  # raised below, outside the task group
            outcome.append(exc)
        finally:
            finished.set()

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        try:
            await finished.wait()
        finally:
            server.should_exit = True
            with anyio.CancelScope(shield=True):
                await finished.wait()
    if outcome:
        if isinstance(outcome[0], SystemExit):  # uvicorn exits when it cannot start
            raise OSError(f"the HTTP gateway could not start on {host}:{port}") from outcome[0]
        raise outcome[0]
