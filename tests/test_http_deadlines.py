"""A plugin's HTTP app runs under the plugin's per-call deadline, as its tool calls do.

The deadline is the sandbox's (``max_wall_time_secs`` / ``max_cpu_time_secs``, per plugin
in ``[plugins.<name>.sandbox]``). Real timeouts, short limits: apps that block forever
(``anyio.sleep_forever``) before and after starting their response, through the ASGI app
directly and through a real uvicorn server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from clawhost import HostConfig, PluginHost
from clawhost.surfaces.http import GatewayApp, HttpRoutes

from ._site import directory_plugin
from .test_http_gateway import FINE, call, client, echo_app, uvicorn_server

pytestmark = pytest.mark.anyio

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The slow plugin's deadline; everyone else keeps a roomy one.
LIMIT = 0.3


async def silent_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Never answers (until the deadline cancels it)."""
    if scope["path"].endswith("/ok"):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"fine"})
        return
    await anyio.sleep_forever()


async def stalling_app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """Starts a streamed response, then never finishes it."""
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    await anyio.sleep_forever()


def deadline_host(tmp_path: Path) -> PluginHost:
    for name in ("slow", "fast"):
        directory_plugin(tmp_path / "plugins", name, FINE)
    config = HostConfig.from_mapping(
        {
            "plugins": {
                "sandbox": {"max_cpu_time_secs": 10.0},
                "slow": {"sandbox": {"max_wall_time_secs": LIMIT}},
            }
        },
        base_dir=tmp_path,
    )
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def deadline_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "clawhost.http" and "within its limit" in r.getMessage()
    ]


async def test_an_app_that_never_answers_gets_a_504_at_its_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with deadline_host(tmp_path) as host:
        routes = HttpRoutes()
        routes.mount("slow", silent_app)
        routes.mount("fast", echo_app("fast"))
        app = GatewayApp(host, routes)
        with caplog.at_level(logging.WARNING, logger="clawhost.http"):
            began = time.monotonic()
            with anyio.fail_after(5):
                status, _, body = await call(app, "/plugins/slow/wait", b"/plugins/slow/wait")
            took = time.monotonic() - began
        again = await call(app, "/plugins/slow/ok", b"/plugins/slow/ok")
        other = await call(app, "/plugins/fast/x", b"/plugins/fast/x")
        health = await call(app, "/health")
        state = host.plugins["slow"].state.name

    assert status == 504
    assert body == {
        "error": f"the HTTP app of plugin 'slow' did not answer within {LIMIT:g}s",
        "plugin": "slow",
        "limit": LIMIT,
    }
    assert LIMIT <= took < LIMIT + 2
    assert deadline_lines(caplog) == [
        f"the HTTP app of plugin 'slow' did not finish GET /plugins/slow/wait within its "
        f"limit of {LIMIT:g}s; answered 504"
    ]
    assert (again[0], again[2]) == (200, b"fine")
    assert (other[0], other[2]["sandbox"]) == (200, "fast")
    assert health[0] == 200
    assert state == "ACTIVE"  # a slow request is not a failed plugin


async def test_an_app_that_stalls_after_starting_is_aborted_at_its_deadline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with deadline_host(tmp_path) as host:
        routes = HttpRoutes()
        routes.mount("slow", stalling_app)
        routes.mount("fast", echo_app("fast"))
        app = GatewayApp(host, routes)
        with caplog.at_level(logging.WARNING, logger="clawhost.http"):
            with anyio.fail_after(5):
                # The gateway returns; the server closes the unfinished response.
                status, _, body = await call(app, "/plugins/slow/feed", b"/plugins/slow/feed")
        other = await call(app, "/plugins/fast/x", b"/plugins/fast/x")

    assert (status, body) == (200, b"partial")  # already sent: it can only be cut off
    assert deadline_lines(caplog) == [
        f"the HTTP app of plugin 'slow' did not finish GET /plugins/slow/feed within its "
        f"limit of {LIMIT:g}s; the response is aborted"
    ]
    assert other[0] == 200


async def test_deadlines_through_a_real_uvicorn_server(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with deadline_host(tmp_path) as host:
        routes = HttpRoutes()
        routes.mount("slow", silent_app)
        routes.mount("fast", echo_app("fast"))
        app = GatewayApp(host, routes)
        async with uvicorn_server(app) as port:
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                with caplog.at_level(logging.WARNING, logger="clawhost.http"):
                    timed_out = await http.get("/plugins/slow/wait")
                    routes.remove_owner("slow")
                    routes.mount("slow", stalling_app)
                    with pytest.raises(httpx.RemoteProtocolError):
                        await http.get("/plugins/slow/feed")
                other = await http.post("/plugins/fast/x", content=b"still here")
                health = await http.get("/health")

    assert timed_out.status_code == 504
    assert timed_out.json()["plugin"] == "slow"
    assert [line.rsplit("; ", 1)[1] for line in deadline_lines(caplog)] == [
        "answered 504",
        "the response is aborted",
    ]
    assert other.json()["body"] == "still here"
    assert health.status_code == 200


async def test_the_deadline_is_the_plugins_sandbox_call_deadline(tmp_path: Path) -> None:
    async with deadline_host(tmp_path) as host:
        assert host.plugins["slow"].timeout == LIMIT
        assert host.plugins["fast"].timeout == 10.0
        async with client(host.http_app()) as http:  # no app mounted: 404, not a wait
            missing = await http.get("/plugins/slow/x")
    assert missing.status_code == 404
