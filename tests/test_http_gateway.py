"""The gateway's HTTP surface: status page, health routes, plugin apps under /plugins/<name>/.

Hosts run real directory plugins; requests go through the ASGI app with httpx (and, for
paths httpx would normalise first, as the exact ASGI scope a server would build), and once
through a real uvicorn server on 127.0.0.1. Plugin apps are mounted directly on
``HttpRoutes`` under the names of real plugins.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn

import clawhost
from clawhost import HostConfig, PluginHost, current_scope
from clawhost.surfaces.http import (
    CONTENT_SECURITY_POLICY,
    GatewayApp,
    HttpRoutes,
    path_problem,
    render_page,
    serve,
)

from ._site import directory_plugin

Scope = dict[str, Any]
Message = dict[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Any]

FINE = """
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    pass
"""

SICK = """
from clawhost import hookimpl

@hookimpl
def health_check(ctx):
    raise ConnectionError("upstream down")
"""

BROKEN = """
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    raise RuntimeError("no <b>credentials</b>")
"""


def make_host(tmp_path: Path, **plugins: str) -> PluginHost:
    """A host with one directory plugin per keyword (name=code); ``_`` in names is ``-``."""
    for name, code in plugins.items():
        directory_plugin(tmp_path / "plugins", name.replace("_", "-"), code)
    config = HostConfig.from_mapping(
        {"plugins": {"sandbox": {"max_cpu_time_secs": 2.0}}}, base_dir=tmp_path
    )
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def client(app: GatewayApp, **transport: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, **transport), base_url="http://test"
    )


async def read_body(receive: Callable[[], Awaitable[Message]]) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def send_json(send: Callable[[Message], Awaitable[None]], payload: Any) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def echo_app(plugin: str, seen: list[tuple[str, str]] | None = None) -> App:
    """A plugin's app: answers with what it was given, and records the paths it saw."""

    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        assert scope["type"] == "http"
        if seen is not None:
            seen.append((plugin, scope["path"]))
        body = await read_body(receive)
        sandbox = current_scope()
        raw = scope.get("raw_path")
        await send_json(
            send,
            {
                "plugin": plugin,
                "method": scope["method"],
                "path": scope["path"],
                "raw_path": raw.decode("latin-1") if raw is not None else None,
                "root_path": scope["root_path"],
                "query": scope["query_string"].decode(),
                "body": body.decode(),
                "sandbox": sandbox.plugin if sandbox is not None else None,
            },
        )

    return app


@asynccontextmanager
async def gateway(
    tmp_path: Path,
    mounts: dict[str, App] | None = None,
    channel_status: Callable[[], list[dict[str, Any]]] | None = None,
    **plugins: str,
) -> AsyncIterator[tuple[PluginHost, GatewayApp, httpx.AsyncClient]]:
    async with make_host(tmp_path, **plugins) as host:
        routes = HttpRoutes()
        for name, app in (mounts or {}).items():
            routes.mount(name, app)
        app = GatewayApp(host, routes, channel_status=channel_status)
        async with client(app) as http:
            yield host, app, http


async def call(
    app: GatewayApp,
    path: str,
    raw_path: bytes | None = None,
    *,
    method: str = "GET",
    root_path: str = "",
    body: bytes = b"",
) -> tuple[int, dict[str, str], Any]:
    """One request through the ASGI interface, with exactly the scope a server would build
    (httpx would normalise ``..`` away before sending)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": root_path,
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    if raw_path is None:
        del scope["raw_path"]
    received = False
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal received
        if received:
            await anyio.sleep_forever()
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *bodies = sent
    assert start["type"] == "http.response.start"
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    content = b"".join(message.get("body", b"") for message in bodies)
    is_json = headers.get("content-type") == "application/json"
    return start["status"], headers, json.loads(content) if is_json else content


# -- HttpRoutes ----------------------------------------------------------------------------------


def test_routes_hold_one_app_per_plugin() -> None:
    routes = HttpRoutes()
    first, second = echo_app("a"), echo_app("a")
    routes.mount("a", first)
    routes.mount("b-2_x", second)

    with pytest.raises(ValueError, match=r"plugin 'a' already has an HTTP app at /plugins/a/"):
        routes.mount("a", second)

    assert routes.get("a") is first
    assert routes.owners() == ["a", "b-2_x"]
    routes.remove_owner("a")
    routes.remove_owner("a")  # removing twice is harmless
    assert routes.get("a") is None
    assert routes.owners() == ["b-2_x"]


@pytest.mark.parametrize(
    "owner",
    ["", "A", "-a", "_a", "a/b", "a/../b", "..", ".", "a b", "a\n", "a\\b", "a.b", "é"],
)
def test_routes_refuse_anything_but_a_plugin_name(owner: str) -> None:
    routes = HttpRoutes()

    with pytest.raises(ValueError, match="not a plugin name"):
        routes.mount(owner, echo_app("x"))

    assert routes.owners() == []


def test_routes_refuse_what_is_not_callable() -> None:
    with pytest.raises(TypeError, match="not an ASGI callable"):
        HttpRoutes().mount("a", "not an app")  # type: ignore[arg-type]


# -- status page and status.json -------------------------------------------------------------


class Rows:
    """The rows of a table in an HTML document: data-<key> -> {cell class: text}."""

    def __init__(self, document: str, table: str, key: str) -> None:
        self.attributes: dict[str, str] = {}
        self.rows: dict[str, dict[str, str]] = {}
        found = re.search(rf'<table id="{table}"([^>]*)>(.*?)</table>', document, re.S)
        assert found is not None, f"no table {table!r} in the document"
        self.attributes = dict(re.findall(r'([\w-]+)="([^"]*)"', found.group(1)))
        for attrs, cells in re.findall(r"<tr ([^>]*)>(.*?)</tr>", found.group(2), re.S):
            name = re.search(rf'data-{key}="([^"]*)"', attrs)
            if name is None:
                continue
            self.rows[name.group(1)] = dict(
                re.findall(r'<td class="([\w-]+)"[^>]*>(.*?)</td>', cells, re.S)
            )


async def test_the_status_page_has_a_row_per_plugin(tmp_path: Path) -> None:
    async with gateway(tmp_path, alpha=FINE, beta=FINE, broken=BROKEN) as (host, _, http):
        response = await http.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    plugins = Rows(response.text, "plugins", "plugin")
    assert plugins.attributes["data-rendered"] == "server"
    assert sorted(plugins.rows) == ["alpha", "beta", "broken"] == sorted(host.plugins)
    assert plugins.rows["alpha"] == {
        "name": "alpha",
        "version": "1.0.0",
        "state": "active",
        "failure": "",
        "restarts": "0",
    }
    assert plugins.rows["broken"]["state"] == "failed"
    # The reason is text, escaped: never markup.
    assert plugins.rows["broken"]["failure"] == (
        "activate: RuntimeError: no &lt;b&gt;credentials&lt;/b&gt;"
    )
    assert "<b>credentials" not in response.text
    assert Rows(response.text, "channels", "channel").rows == {}
    assert "No channels." in response.text
    assert f'<span id="version">{clawhost.__version__}</span>' in response.text


async def test_the_status_page_is_self_contained_and_runs_only_its_own_script(
    tmp_path: Path,
) -> None:
    async with gateway(tmp_path, alpha=FINE) as (_, _, http):
        response = await http.get("/")

    page = response.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page
    assert "@import" not in page
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    (script,) = re.findall(r"<script>(.*?)</script>", page, re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    for source, directive in ((script, "script-src"), (style, "style-src")):
        digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy
    assert 'data-status-url="/status.json"' in page
    assert "setTimeout(loop, every)" in script
    assert 'data-refresh-ms="2000"' in page


async def test_the_status_page_escapes_channel_statuses(tmp_path: Path) -> None:
    def channels() -> list[dict[str, Any]]:
        return [
            {
                "plugin": "alpha",
                "channel": "chat",
                "instance": '"><script>alert(1)</script>',
                "state": "running",
                "last_error": "<img src=x onerror=alert(1)>",
                "restarts": 2,
                "since": 1700000000.5,
            }
        ]

    async with gateway(tmp_path, channel_status=channels, alpha=FINE) as (_, _, http):
        page = (await http.get("/")).text
        status = (await http.get("/status.json")).json()

    assert "<img src=x" not in page
    assert "<script>alert" not in page
    rows = Rows(page, "channels", "channel").rows
    (key,) = rows
    assert key == "alpha/chat/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert rows[key]["last_error"] == "&lt;img src=x onerror=alert(1)&gt;"
    assert rows[key]["restarts"] == "2"
    assert rows[key]["since"] == "1700000000.5"
    assert status["channels"] == channels()


def test_render_page_marks_empty_tables() -> None:
    page = render_page(
        {"plugins": [], "channels": [], "host": {"version": "9"}}, status_url="/gw/status.json"
    )

    assert 'data-status-url="/gw/status.json"' in page
    assert "No plugins." in page
    assert "No channels." in page
    assert Rows(page, "plugins", "plugin").rows == {}


async def test_status_json_lists_plugins_channels_and_the_host(tmp_path: Path) -> None:
    calls = 0

    def channels() -> list[dict[str, Any]]:
        nonlocal calls
        calls += 1
        return [{"plugin": "alpha", "channel": "console", "instance": "main", "state": "running"}]

    mounts = {"alpha": echo_app("alpha")}
    async with gateway(tmp_path, mounts, channels, alpha=FINE, broken=BROKEN) as (_, _, http):
        response = await http.get("/status.json")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    status = response.json()
    assert status["host"] == {"version": clawhost.__version__}
    assert status["channels"] == channels()
    assert calls == 2
    alpha, broken = status["plugins"]
    assert alpha == {
        "name": "alpha",
        "version": "1.0.0",
        "state": "active",
        "failure": None,
        "restarts": 0,
        "restart_at": None,
        "http": True,
    }
    assert broken["name"] == "broken"
    assert broken["state"] == "failed"
    assert broken["failure"] == {
        "stage": "activate",
        "reason": "RuntimeError: no <b>credentials</b>",
    }
    assert broken["http"] is False


async def test_a_failing_channel_status_callback_is_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def channels() -> list[dict[str, Any]]:
        raise RuntimeError("registry gone")

    async with gateway(tmp_path, channel_status=channels, alpha=FINE) as (_, _, http):
        with caplog.at_level(logging.ERROR, logger="clawhost.http"):
            response = await http.get("/status.json")
            page = await http.get("/")

    assert response.status_code == 200
    assert response.json()["channels"] == []
    assert page.status_code == 200
    assert "the channel status callback failed" in caplog.text


async def test_head_answers_the_headers_without_the_body(tmp_path: Path) -> None:
    async with gateway(tmp_path, alpha=FINE) as (_, _, http):
        response = await http.head("/")

    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) > 1000


# -- health --------------------------------------------------------------------------------------


async def test_health_is_200_when_every_active_plugin_is_healthy(tmp_path: Path) -> None:
    async with gateway(tmp_path, alpha=FINE, beta=FINE, broken=BROKEN) as (_, _, http):
        response = await http.get("/health")

    assert response.status_code == 200
    assert response.json() == {
        "healthy": True,
        "plugins": {  # only active plugins are checked
            "alpha": {"healthy": True, "reason": None},
            "beta": {"healthy": True, "reason": None},
        },
    }


async def test_health_is_503_when_a_health_check_raises(tmp_path: Path) -> None:
    async with gateway(tmp_path, alpha=FINE, sick=SICK) as (_, _, http):
        response = await http.get("/health")

    assert response.status_code == 503
    assert response.json() == {
        "healthy": False,
        "plugins": {
            "alpha": {"healthy": True, "reason": None},
            "sick": {"healthy": False, "reason": "ConnectionError: upstream down"},
        },
    }


async def test_one_plugins_health(tmp_path: Path) -> None:
    async with gateway(tmp_path, alpha=FINE, sick=SICK, broken=BROKEN) as (host, _, http):
        alpha = await http.get("/plugins/alpha/health")
        sick = await http.get("/plugins/sick/health")
        broken = await http.get("/plugins/broken/health")
        unknown = await http.get("/plugins/nobody/health")
        await host.deactivate("alpha")
        resting = await http.get("/plugins/alpha/health")

    assert alpha.status_code == 200
    assert alpha.json()["healthy"] is True
    assert alpha.json()["plugin"] == "alpha"
    assert sick.status_code == 503
    assert sick.json()["reason"] == "ConnectionError: upstream down"
    assert broken.status_code == 503
    assert broken.json()["reason"].startswith("activate: RuntimeError")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no plugin named 'nobody'"}
    assert resting.status_code == 503
    assert resting.json()["reason"] == "not active (inactive)"


async def test_a_plugin_app_never_sees_its_health_route(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    mounts = {"alpha": echo_app("alpha", seen)}
    async with gateway(tmp_path, mounts, sick=SICK, alpha=FINE) as (_, _, http):
        health = await http.get("/plugins/alpha/health")
        posted = await http.post("/plugins/alpha/health", content=b"x")
        nested = await http.get("/plugins/alpha/health/details")

    assert health.json()["plugin"] == "alpha"
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD"
    assert nested.json()["path"] == "/plugins/alpha/health/details"  # only the exact route
    assert seen == [("alpha", "/plugins/alpha/health/details")]


# -- forwarding to plugin apps --------------------------------------------------------------------


async def test_requests_reach_the_plugin_app_with_its_prefix_as_root_path(
    tmp_path: Path,
) -> None:
    mounts = {"alpha": echo_app("alpha")}
    async with gateway(tmp_path, mounts, alpha=FINE) as (_, _, http):
        got = (await http.get("/plugins/alpha/items/7?full=1")).json()
        root = (await http.get("/plugins/alpha/")).json()
        encoded = (await http.get("/plugins/alpha/caf%C3%A9/a%20b")).json()

    assert got == {
        "plugin": "alpha",
        "method": "GET",
        "path": "/plugins/alpha/items/7",  # the whole path, as uvicorn and Starlette's Mount
        "raw_path": "/plugins/alpha/items/7",
        "root_path": "/plugins/alpha",
        "query": "full=1",
        "body": "",
        "sandbox": "alpha",  # the app runs as the plugin's code, with its permissions
    }
    assert (root["path"], root["raw_path"], root["root_path"]) == (
        "/plugins/alpha/",
        "/plugins/alpha/",
        "/plugins/alpha",
    )
    assert encoded["path"] == "/plugins/alpha/café/a b"
    assert encoded["raw_path"] == "/plugins/alpha/caf%C3%A9/a%20b"


async def test_post_bodies_are_forwarded(tmp_path: Path) -> None:
    mounts = {"alpha": echo_app("alpha")}
    async with gateway(tmp_path, mounts, alpha=FINE) as (_, _, http):
        response = await http.post("/plugins/alpha/hook", content=b'{"n": 1}' * 10_000)
        deleted = await http.delete("/plugins/alpha/hook/3")

    assert response.status_code == 200
    assert response.json()["method"] == "POST"
    assert response.json()["body"] == '{"n": 1}' * 10_000
    assert deleted.json()["method"] == "DELETE"
    assert deleted.json()["path"] == "/plugins/alpha/hook/3"


async def test_the_servers_root_path_is_kept_in_front(tmp_path: Path) -> None:
    mounts = {"alpha": echo_app("alpha")}
    async with make_host(tmp_path, alpha=FINE) as host:
        routes = HttpRoutes()
        routes.mount("alpha", mounts["alpha"])
        app = GatewayApp(host, routes)
        # As uvicorn --root-path /gw gives it: path includes root_path.
        status, _, full = await call(
            app, "/gw/plugins/alpha/x", b"/gw/plugins/alpha/x", root_path="/gw"
        )
        # As some servers and test clients give it: path without root_path.
        async with client(app, root_path="/gw") as http:
            relative = (await http.get("/plugins/alpha/x")).json()
            page = (await http.get("/")).text
            moved = await http.get("/plugins/alpha")

    assert status == 200
    for got in (full, relative):
        assert (got["root_path"], got["path"], got["raw_path"]) == (
            "/gw/plugins/alpha",
            "/gw/plugins/alpha/x",
            "/gw/plugins/alpha/x",
        )
    assert 'data-status-url="/gw/status.json"' in page
    assert moved.status_code == 307
    assert moved.headers["location"] == "/gw/plugins/alpha/"


async def test_a_plugin_prefix_without_its_slash_redirects(tmp_path: Path) -> None:
    mounts = {"alpha": echo_app("alpha")}
    async with gateway(tmp_path, mounts, alpha=FINE) as (_, _, http):
        response = await http.get("/plugins/alpha?x=1")
        followed = await http.get("/plugins/alpha?x=1", follow_redirects=True)

    assert response.status_code == 307
    assert response.headers["location"] == "/plugins/alpha/?x=1"
    assert followed.json()["path"] == "/plugins/alpha/"
    assert followed.json()["query"] == "x=1"


async def test_unknown_routes_plugins_and_plugins_without_an_app_are_404(tmp_path: Path) -> None:
    mounts = {"alpha": echo_app("alpha")}
    async with gateway(tmp_path, mounts, alpha=FINE, beta=FINE) as (_, _, http):
        nothing = await http.get("/nothing")
        plugins = await http.get("/plugins")
        unknown = await http.get("/plugins/nobody/x")
        not_a_name = await http.get("/plugins/Alpha/x")
        no_app = await http.get("/plugins/beta/x")

    assert nothing.status_code == 404
    assert nothing.json() == {"error": "not found: /nothing"}
    assert plugins.status_code == 404
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "no plugin named 'nobody'"}
    assert not_a_name.status_code == 404
    assert no_app.status_code == 404
    assert no_app.json() == {"error": "plugin 'beta' serves no HTTP app"}


async def test_a_wrong_method_on_a_host_route_is_405(tmp_path: Path) -> None:
    async with gateway(tmp_path, alpha=FINE) as (_, _, http):
        responses = [
            await http.post("/"),
            await http.put("/status.json"),
            await http.delete("/health"),
        ]

    for response in responses:
        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"
        assert "is not allowed" in response.json()["error"]


async def test_a_failed_or_deactivated_plugin_is_503(tmp_path: Path) -> None:
    mounts = {"alpha": echo_app("alpha"), "broken": echo_app("broken")}
    async with gateway(tmp_path, mounts, alpha=FINE, broken=BROKEN) as (host, _, http):
        before = await http.get("/plugins/alpha/x")
        broken = await http.get("/plugins/broken/x")
        await host.deactivate("alpha")
        after = await http.post("/plugins/alpha/x", content=b"hello")

    assert before.status_code == 200
    assert broken.status_code == 503
    assert broken.json() == {
        "error": "plugin 'broken' is not active (activate: RuntimeError: no <b>credentials</b>)",
        "plugin": "broken",
    }
    assert after.status_code == 503
    assert after.json() == {"error": "plugin 'alpha' is not active (inactive)", "plugin": "alpha"}


async def test_requests_wait_while_the_plugin_reloads(tmp_path: Path) -> None:
    mounts = {"alpha": echo_app("alpha")}
    async with gateway(tmp_path, mounts, alpha=FINE) as (host, _, http):
        gate = host.plugins["alpha"].gate
        assert await gate.close(drain_timeout=0)  # what a hot reload does
        responses: list[httpx.Response] = []

        async def request() -> None:
            responses.append(await http.get("/plugins/alpha/x"))

        async with anyio.create_task_group() as group:
            group.start_soon(request)
            await anyio.sleep(0.2)
            assert responses == []
            assert gate.waiting == 1
            gate.open()

    assert [response.status_code for response in responses] == [200]


# -- a plugin app that fails -----------------------------------------------------------------------


def failing_app(how: str) -> App:
    async def app(
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        # the app's own route: the path below where it is mounted (root_path)
        if scope["path"].removeprefix(scope["root_path"]) == "/ok":
            await send_json(send, {"ok": True})
            return
        if how == "raise":
            raise RuntimeError("secret detail")
        if how == "after-start":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("mid-stream")
        # "silent": returns without a response

    return app


@pytest.mark.parametrize(
    ("how", "error", "logged"),
    [
        ("raise", "the HTTP app of plugin 'alpha' failed (RuntimeError)", "failed on GET"),
        (
            "silent",
            "the HTTP app of plugin 'alpha' returned without a response",
            "returned without a response to GET",
        ),
    ],
)
async def test_a_plugin_app_that_fails_gets_a_500_and_the_gateway_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str, error: str, logged: str
) -> None:
    mounts = {"alpha": failing_app(how), "beta": echo_app("beta")}
    async with gateway(tmp_path, mounts, alpha=FINE, beta=FINE) as (_, _, http):
        with caplog.at_level(logging.ERROR, logger="clawhost.http"):
            failed = await http.get("/plugins/alpha/boom")
        same = await http.get("/plugins/alpha/ok")
        other = await http.get("/plugins/beta/x")
        health = await http.get("/health")

    assert failed.status_code == 500
    assert failed.json() == {"error": error, "plugin": "alpha"}
    assert "secret detail" not in failed.text  # the log has it, the client does not
    (record,) = [r for r in caplog.records if r.name == "clawhost.http"]
    assert f"the HTTP app of plugin 'alpha' {logged} /plugins/alpha/boom" in record.getMessage()
    assert (record.exc_info is not None) == (how == "raise")
    assert same.json() == {"ok": True}
    assert other.status_code == 200
    assert health.status_code == 200


async def test_a_plugin_app_that_fails_mid_response_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with make_host(tmp_path, alpha=FINE) as host:
        routes = HttpRoutes()
        routes.mount("alpha", failing_app("after-start"))
        app = GatewayApp(host, routes)
        with caplog.at_level(logging.ERROR, logger="clawhost.http"):
            # The gateway returns normally; the server sees an unfinished response.
            status, _, body = await call(app, "/plugins/alpha/stream", b"/plugins/alpha/stream")
        after = await call(app, "/plugins/alpha/ok", b"/plugins/alpha/ok")

    assert status == 200  # already sent: nothing else can be said
    assert body == b"partial"
    assert "the HTTP app of plugin 'alpha' failed on GET /plugins/alpha/stream" in caplog.text
    assert after[2] == {"ok": True}


# -- path safety -----------------------------------------------------------------------------------

TRICKS = [
    # (path as the server decodes it, raw_path as received, what the 400 says)
    ("/plugins/a/../b/x", b"/plugins/a/../b/x", "'.' or '..' segment"),
    ("/plugins/a/./x", b"/plugins/a/./x", "'.' or '..' segment"),
    ("/plugins/a/..", b"/plugins/a/..", "'.' or '..' segment"),
    ("/plugins/a/../b", b"/plugins/a/%2e%2e/b", "'.' or '..' segment"),
    ("/plugins/a/x", b"/plugins/a/%2ex", "percent-encoded dot (%2e)"),
    ("/plugins/a/b/x", b"/plugins/a%2fb/x", "percent-encoded slash (%2f)"),
    ("/plugins/a/x/y", b"/plugins/a/x%2Fy", "percent-encoded slash (%2F)"),
    ("/plugins/a/x\\y", b"/plugins/a/x%5Cy", "backslash in the path"),
    ("/plugins/a/x\\..\\..\\b", b"/plugins/a/x\\..\\..\\b", "backslash in the path"),
    ("/plugins/a/x/\\b", b"/plugins/a/x/\\b", "backslash in the path"),
    ("/plugins/a/x\x00", b"/plugins/a/x%00", "control character"),
    ("/plugins/a/x\ny", b"/plugins/a/x%0Ay", "control character"),
    ("/plugins/a/x\x7f", b"/plugins/a/x%7F", "control character"),
    ("//plugins/a", b"//plugins/a", "empty segment ('//')"),
    ("/plugins//a/x", b"/plugins//a/x", "empty segment ('//')"),
    ("/plugins/a//x", b"/plugins/a//x", "empty segment ('//')"),
    ("/plugins/", b"/plugins/", "empty plugin name"),
    ("plugins/a/x", b"plugins/a/x", "must start with '/'"),
    ("/plugins/a/x", b"/plugins/a/%2E%2E%2Fb", "percent-encoded dot (%2E)"),
]


@pytest.mark.parametrize(("path", "raw_path", "problem"), TRICKS)
async def test_path_tricks_are_refused_before_routing(
    tmp_path: Path, path: str, raw_path: bytes, problem: str
) -> None:
    seen: list[tuple[str, str]] = []
    mounts = {"a": echo_app("a", seen), "b": echo_app("b", seen)}
    async with make_host(tmp_path, a=FINE, b=FINE) as host:
        routes = HttpRoutes()
        for name, app in mounts.items():
            routes.mount(name, app)
        app = GatewayApp(host, routes)
        status, _, body = await call(app, path, raw_path, method="POST")

    assert status == 400
    assert problem in body["error"]
    assert body["error"].startswith("refused: ")
    assert seen == []


async def test_path_tricks_are_refused_through_httpx_too(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    mounts = {"a": echo_app("a", seen), "b": echo_app("b", seen)}
    async with gateway(tmp_path, mounts, a=FINE, b=FINE) as (_, _, http):
        responses = [
            await http.get(url)
            for url in (
                "/plugins/a/%2e%2e/b",
                "/plugins/a%2fb/x",
                "/plugins/a/x%2Fy",
                "/plugins/a/x%5cy",
                "/plugins/a\\x",
                "http://test//plugins/a",
                "/plugins/a/x%00",
            )
        ]

    assert [response.status_code for response in responses] == [400] * len(responses)
    assert seen == []


def test_path_problem_accepts_ordinary_paths() -> None:
    for path in ("/", "/plugins/a/", "/plugins/a/x.json", "/plugins/a/..x/y..", "/a/.well-known"):
        assert path_problem(path, path.encode()) is None, path
    assert path_problem("/plugins/a/x y", b"/plugins/a/x%20y") is None
    assert path_problem("/plugins/a/x", None) is None  # servers may omit raw_path


async def test_plugin_a_never_receives_a_request_for_b(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    mounts = {"a": echo_app("a", seen), "b": echo_app("b", seen), "ab": echo_app("ab", seen)}
    attempts = [
        ("/plugins/b/x", b"/plugins/b/x"),
        ("/plugins/ab/x", b"/plugins/ab/x"),
        ("/plugins/a/../b/x", b"/plugins/a/../b/x"),
        ("/plugins/a/../b/x", b"/plugins/a/%2e%2e/b/x"),
        ("/plugins/a/../b/x", b"/plugins/a/..%2fb/x"),
        ("/plugins/b/../a/x", b"/plugins/b/../a/x"),
        ("/plugins/a/b/x", b"/plugins/a%2Fb/x"),
        ("/plugins/b", b"/plugins/b"),
        ("/plugins/b/", b"/plugins/b/"),
        ("/plugins/b/health", b"/plugins/b/health"),
        ("/plugins/a/x", b"/plugins/b/x"),  # a server whose raw_path and path disagree
    ]
    async with make_host(tmp_path, a=FINE, b=FINE, ab=FINE) as host:
        routes = HttpRoutes()
        for name, app in mounts.items():
            routes.mount(name, app)
        app = GatewayApp(host, routes)
        for path, raw in attempts:
            await call(app, path, raw)
        await call(app, "/plugins/a/x", b"/plugins/a/x")
        await call(app, "/plugins/a/", b"/plugins/a/")

    # Every request an app got was under its own prefix, and a got only what was for a.
    for plugin, full_path in seen:
        assert full_path.startswith(f"/plugins/{plugin}/")
    assert [path for plugin, path in seen if plugin == "a"] == [
        "/plugins/a/x",
        "/plugins/a/x",
        "/plugins/a/",
    ]


async def test_a_raw_path_that_does_not_match_the_path_is_refused(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    async with make_host(tmp_path, a=FINE) as host:
        routes = HttpRoutes()
        routes.mount("a", echo_app("a", seen))
        app = GatewayApp(host, routes)
        status, _, body = await call(app, "/plugins/a/x/y", b"/plugins/a/x")
        fine, _, echoed = await call(app, "/plugins/a/x", b"/plugins/%61/x")

    assert status == 400
    assert body == {"error": "refused: raw_path does not match path"}
    assert fine == 200
    assert echoed["raw_path"] == "/plugins/a/x"


# -- lifespan and other scopes -----------------------------------------------------------------


async def test_lifespan_is_answered_and_not_forwarded(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    async with make_host(tmp_path, alpha=FINE) as host:
        routes = HttpRoutes()
        routes.mount("alpha", echo_app("alpha", seen))
        app = GatewayApp(host, routes)
        incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[Message] = []

        async def receive() -> Message:
            return incoming.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        with anyio.fail_after(5):
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]
    assert seen == []


async def test_websockets_are_refused(tmp_path: Path) -> None:
    async with make_host(tmp_path, alpha=FINE) as host:
        app = GatewayApp(host, HttpRoutes())
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "websocket.connect"}

        async def send(message: Message) -> None:
            sent.append(message)

        await app({"type": "websocket", "path": "/plugins/alpha/ws"}, receive, send)

    assert sent == [{"type": "websocket.close", "code": 1008}]


# -- through a real server -------------------------------------------------------------------------


@asynccontextmanager
async def uvicorn_server(app: GatewayApp) -> AsyncIterator[int]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (a free port); yields the port."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", log_config=None
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                await anyio.sleep(0.01)
        try:
            yield server.servers[0].sockets[0].getsockname()[1]
        finally:
            server.should_exit = True


async def raw_request(port: int, target: bytes) -> int:
    """Send a request line exactly as given (no client normalisation); the status code."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        with anyio.fail_after(10):
            while b"\r\n" not in data:
                data += await stream.receive()
    return int(data.split(b" ", 2)[1])


async def test_through_a_real_uvicorn_server(tmp_path: Path) -> None:
    seen: list[tuple[str, str]] = []
    mounts = {"a": echo_app("a", seen), "b": echo_app("b", seen)}
    async with make_host(tmp_path, a=FINE, b=FINE, sick=SICK) as host:
        routes = HttpRoutes()
        for name, app in mounts.items():
            routes.mount(name, app)
        app = GatewayApp(host, routes)
        async with uvicorn_server(app) as port:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base) as http:
                page = await http.get("/")
                status = await http.get("/status.json")
                health = await http.get("/health")
                posted = await http.post("/plugins/a/items?x=1", content=b"payload")
            tricks = [
                await raw_request(port, target)
                for target in (
                    b"/plugins/a/../b/x",
                    b"/plugins/a/%2e%2e/b/x",
                    b"/plugins/a/..%2fb/x",
                    b"/plugins/a%2fb/x",
                    b"/plugins/a/x\\y",
                    b"//plugins/a/x",
                    b"/plugins/a/x%00",
                )
            ]
            ok = await raw_request(port, b"/plugins/b/x")

    assert page.status_code == 200
    assert sorted(Rows(page.text, "plugins", "plugin").rows) == ["a", "b", "sick"]
    assert [p["state"] for p in status.json()["plugins"]] == ["active"] * 3
    assert health.status_code == 503
    assert posted.json() == {
        "plugin": "a",
        "method": "POST",
        "path": "/plugins/a/items",
        "raw_path": "/plugins/a/items",
        "root_path": "/plugins/a",
        "query": "x=1",
        "body": "payload",
        "sandbox": "a",
    }
    assert tricks == [400] * len(tricks)
    assert ok == 200
    assert seen == [("a", "/plugins/a/items"), ("b", "/plugins/b/x")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_serve_runs_uvicorn_until_cancelled(tmp_path: Path) -> None:
    port = free_port()
    async with make_host(tmp_path, alpha=FINE) as host:
        app = GatewayApp(host, HttpRoutes())
        async with anyio.create_task_group() as group:
            group.start_soon(serve, app, "127.0.0.1", port)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                with anyio.fail_after(10):
                    while True:
                        try:
                            response = await http.get("/health")
                            break
                        except httpx.ConnectError:
                            await anyio.sleep(0.05)
            group.cancel_scope.cancel()

    assert response.status_code == 200
    with pytest.raises(OSError, match="connection attempts failed"):  # stopped listening
        await anyio.connect_tcp("127.0.0.1", port)


async def test_serve_says_when_it_cannot_start(tmp_path: Path) -> None:
    async with make_host(tmp_path, alpha=FINE) as host:
        app = GatewayApp(host, HttpRoutes())
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with anyio.fail_after(10), pytest.raises(OSError, match="could not start"):
                await serve(app, "127.0.0.1", port)


# -- plugins registering their HTTP app through ctx ----------------------------------------------

SERVES = """
from clawhost import hookimpl

async def app(scope, receive, send):
    body = ("hello from " + scope["path"].removeprefix(scope["root_path"])).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})

@hookimpl
def activate(ctx):
    ctx.register_http_app(app)
"""


def serving_plugin(tmp_path: Path, name: str, sections: dict[str, str]) -> None:
    directory_plugin(tmp_path / "plugins", name, SERVES, sections=sections)


async def test_a_plugin_declaring_plugin_http_serves_its_app_under_its_prefix(
    tmp_path: Path,
) -> None:
    serving_plugin(tmp_path, "site", {"http": '[plugin.http]\ndescription = "a web page"'})
    host = PluginHost(config=HostConfig(), dirs=[tmp_path / "plugins"], path=[], cache=False)
    async with host:
        assert host.context.registrations("site").http == ("/plugins/site/",)
        async with client(host.http_app()) as http:
            page = await http.get("/plugins/site/index")
            status = (await http.get("/status.json")).json()
        assert (page.status_code, page.text) == (200, "hello from /index")
        assert [row["name"] for row in status["plugins"]] == ["site"]
        await host.deactivate("site")
        # deactivation unmounts it: nothing is left behind
        assert host.context.registrations("site").is_empty()
        assert host.context.http.get("site") is None


@pytest.mark.parametrize(
    ("sections", "stage", "expected"),
    [
        ({}, "activate", "registered an HTTP app, which its manifest does not declare"),
        (
            {"v1": "manifest_version = 1", "http": "[plugin.http]"},
            "load",
            "[plugin.http] needs manifest_version = 2",
        ),
        ({"http": "[plugin.http]\nport = 80"}, "load", "plugin.http.port"),
    ],
)
async def test_an_undeclared_or_invalid_http_surface_is_refused(
    tmp_path: Path, sections: dict[str, str], stage: str, expected: str
) -> None:
    serving_plugin(tmp_path, "site", sections)
    directory_plugin(tmp_path / "plugins", "fine", FINE)
    host = PluginHost(config=HostConfig(), dirs=[tmp_path / "plugins"], path=[], cache=False)
    async with host:
        record = host.plugins.get("site")
        if stage == "load":  # a manifest that does not validate: reported by discovery
            problems = [str(d) for d in host.discover().diagnostics]
            assert any(expected in problem for problem in problems), problems
            assert record is None or record.state.name == "FAILED"
        else:
            assert record is not None
            assert record.state.name == "FAILED"
            assert record.failure is not None
            assert expected in record.failure.reason
        assert host.context.http.get("site") is None
        assert host.plugins["fine"].state.name == "ACTIVE"
