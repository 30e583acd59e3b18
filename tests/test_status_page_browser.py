"""The status page in a real headless browser: its tables render, and its script keeps them live.

uvicorn serves the gateway on 127.0.0.1; Chromium (``--headless=new --dump-dom``) loads the
page as a separate process, lets its script run for a few seconds of virtual time, and
prints the resulting DOM. The browser may resolve no name and reach nothing but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn

from clawhost import PluginHost
from clawhost.surfaces.http import GatewayApp, HttpRoutes

from .test_http_gateway import BROKEN, FINE, make_host

BROWSERS = ("chromium", "chromium-browser", "google-chrome")

Message = dict[str, Any]


def browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless browser installed (apt-get install chromium)")


def dump_dom(executable: str, url: str, home: Path) -> str:
    """The DOM of ``url`` after 6 s of virtual time, as Chromium serialises it."""
    command = [
        executable,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={home / 'profile'}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--virtual-time-budget=6000",
        "--dump-dom",
        url,
    ]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HOME": str(home)},
        start_new_session=True,  # its own process group: its helpers die with it
    )
    try:
        out, err = process.communicate(timeout=60)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    assert process.returncode == 0, err.decode(errors="replace")[-2000:]
    return out.decode()


class Tables(HTMLParser):
    """Every table's attributes, and its rows: data-<key> value -> {cell class: text}."""

    def __init__(self, document: str) -> None:
        super().__init__()
        self.attributes: dict[str, dict[str, str]] = {}
        self.rows: dict[str, dict[str, dict[str, str]]] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._cell: str | None = None
        self.feed(document)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "table" and "id" in found:
            self._table = found["id"]
            self.attributes[self._table] = found
            self.rows[self._table] = {}
        elif tag == "tr" and self._table is not None:
            key = next((v for k, v in found.items() if k in ("data-plugin", "data-channel")), None)
            self._row = None
            if key is not None:
                self._row = self.rows[self._table][key] = {}
        elif tag == "td" and self._row is not None:
            self._cell = found.get("class", "")
            self._row[self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            self._row[self._cell] += data


class DeactivateAfterFirstPage:
    """Hands the first status page to the browser only after deactivating a plugin.

    The page's server-side tables then still say "active", and every ``/status.json`` the
    browser fetches says "inactive": the DOM can only show "inactive" if the script re-rendered
    the table from a refresh. No timing is involved.
    """

    def __init__(self, app: GatewayApp, host: PluginHost, plugin: str) -> None:
        self.app = app
        self.host = host
        self.plugin = plugin
        self.served: str | None = None

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http" or scope["path"] != "/" or self.served is not None:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        self.served = body.decode()
        await self.host.deactivate(self.plugin)
        for message in held:
            await send(message)


async def test_the_status_page_renders_and_refreshes_in_a_browser(tmp_path: Path) -> None:
    executable = browser()
    host = make_host(tmp_path, alpha=FINE, beta=FINE, broken=BROKEN)
    calls = 0

    def channels() -> list[dict[str, Any]]:
        # The server-rendered page gets the first answer; every refresh gets later ones.
        nonlocal calls
        calls += 1
        return [
            {
                "plugin": "alpha",
                "channel": "console",
                "instance": "main",
                "state": "starting" if calls == 1 else "running",
                "last_error": None,
                "restarts": calls - 1,
                "since": None,
            }
        ]

    home = tmp_path / "browser-home"
    home.mkdir()
    async with host:
        gateway = GatewayApp(host, HttpRoutes(), channel_status=channels)
        app = DeactivateAfterFirstPage(gateway, host, "beta")
        server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", log_config=None
            )
        )
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve)
            try:
                with anyio.fail_after(10):
                    while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                        await anyio.sleep(0.01)
                port = server.servers[0].sockets[0].getsockname()[1]
                url = f"http://127.0.0.1:{port}/"
                dom = await anyio.to_thread.run_sync(dump_dom, executable, url, home)
            finally:
                server.should_exit = True

    # What the server rendered: beta still active, the first channel state.
    assert app.served is not None
    served = Tables(app.served)
    assert served.attributes["plugins"]["data-rendered"] == "server"
    assert served.rows["plugins"]["beta"]["state"] == "active"
    assert served.rows["channels"]["alpha/console/main"]["state"] == "starting"

    # What the browser shows after its script ran: re-rendered from /status.json.
    shown = Tables(dom)
    assert shown.attributes["plugins"]["data-rendered"] == "live"
    assert shown.attributes["channels"]["data-rendered"] == "live"
    plugins = shown.rows["plugins"]
    assert sorted(plugins) == ["alpha", "beta", "broken"]
    assert plugins["alpha"] == {
        "name": "alpha",
        "version": "1.0.0",
        "state": "active",
        "failure": "",
        "restarts": "0",
    }
    assert plugins["beta"]["state"] == "inactive"
    assert plugins["broken"]["state"] == "failed"
    # Shown as text, never as markup:
    assert plugins["broken"]["failure"] == "activate: RuntimeError: no <b>credentials</b>"
    assert "<b>credentials" not in dom
    (channel,) = shown.rows["channels"].values()
    assert channel["state"] == "running"
    assert channel["plugin"] == "alpha"
    assert calls >= 2
