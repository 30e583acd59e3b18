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
is only logged. Each request has the plugin's per-call deadline, as a tool call does
(``record.timeout``: ``max_wall_time_secs`` and ``max_cpu_time_secs``, see
``SandboxConfig.call_deadline``); at the deadline the app is cancelled and, if it had not
started its response, the client gets a 504 JSON answer naming the plugin, else the
response is cut off (the server closes it). Either way the gateway goes on serving.
``lifespan`` events are answered here and never forwarded to plugin apps.

``serve(app)`` runs the application under uvicorn (``pip install clawhost[cli]``). The
routes table is ``clawhost.runtime.routes``, the status page ``clawhost.surfaces.statuspage``
and the path checks ``clawhost.surfaces.paths``.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from clawhost._version import __version__
from clawhost.errors import PluginTimeout
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
from clawhost.sandbox.limits import call_plugin
from clawhost.surfaces.paths import path_problem, strip_root, strip_root_raw
from clawhost.surfaces.statuspage import CONTENT_SECURITY_POLICY, render_page

if TYPE_CHECKING:
    from clawhost.runtime.records import HealthReport, PluginRecord
    from clawhost.runtime.registry import AdminRegistry

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


class ServedHost(Protocol):
    """What the gateway app needs of its host (a ``PluginHost`` is one)."""

    @property
    def plugins(self) -> Mapping[str, PluginRecord]: ...

    @property
    def admin(self) -> AdminRegistry: ...

    async def health(self) -> dict[str, HealthReport]: ...

    async def health_check(self, name: str, *, limit: float = ...) -> HealthReport: ...


#: Admin commands, when the gateway has an admin token: ``POST /admin/<namespace.method>``.
ADMIN_PREFIX = "/admin/"

_METHODS = ("GET", "HEAD")


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
        host: ServedHost,
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
        route = strip_root(path, root)
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
            raw_route = strip_root_raw(raw_path, root)
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
        method, path = scope["method"], scope["path"]
        head = method == "HEAD"
        started = False
        operation = f"HTTP {method} {path}"

        async def watched_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        record.gate.enter()
        try:
            # As a tool call: in the plugin's sandbox scope, under its per-call deadline
            # (record.timeout, from max_wall_time_secs and max_cpu_time_secs).
            await call_plugin(
                app,
                scope,
                receive,
                watched_send,
                plugin=name,
                operation=operation,
                timeout=record.timeout,
                scope=record.scope,
                sync_in_thread=False,
            )
        except PluginTimeout as exc:
            if exc.plugin != name or exc.operation != operation:  # a call it made timed out
                await self._failed(name, scope, send, exc, started)
                return
            logger.warning(
                "the HTTP app of plugin %r did not finish %s %s within its limit of %gs; %s",
                name,
                method,
                path,
                exc.limit,
                "the response is aborted" if started else "answered 504",
            )
            if not started:
                error = f"the HTTP app of plugin {name!r} did not answer within {exc.limit:g}s"
                payload = {"error": error, "plugin": name, "limit": exc.limit}
                await _json(send, 504, payload, head=head)
            return
        except Exception as exc:
            await self._failed(name, scope, send, exc, started)
            return
        finally:
            record.gate.exit()
        if not started:
            logger.error(
                "the HTTP app of plugin %r returned without a response to %s %s",
                name,
                method,
                path,
            )
            error = f"the HTTP app of plugin {name!r} returned without a response"
            await _json(send, 500, {"error": error, "plugin": name}, head=head)

    async def _failed(
        self, name: str, scope: Scope, send: Send, exc: Exception, started: bool
    ) -> None:
        """A plugin app raised: logged, and a 500 unless it had started its response."""
        logger.exception(
            "the HTTP app of plugin %r failed on %s %s",
            name,
            scope["method"],
            scope["path"],
            exc_info=exc,
        )
        if not started:
            error = f"the HTTP app of plugin {name!r} failed ({type(exc).__name__})"
            head = scope["method"] == "HEAD"
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
