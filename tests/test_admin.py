"""Admin commands: declared in the manifest, registered by the plugin, called through the
API, over HTTP with the gateway's token, and from the command line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from clawhost import HostConfig, PluginHost, PluginState
from clawhost.errors import NotRegistered

from ._site import directory_plugin
from .test_cli_gateway import _Gateway

S = PluginState

CACHE = """
from clawhost import hookimpl

STATE = {"entries": {"a": 1, "b": 2, "c": 3}}

def cache_clear(older_than: int = 0) -> dict:
    removed = [key for key, age in sorted(STATE["entries"].items()) if age > older_than]
    for key in removed:
        del STATE["entries"][key]
    return {"removed": removed}

async def stats() -> str:
    return f"{len(STATE['entries'])} entries"

def broken() -> None:
    raise RuntimeError("the cache is locked")

@hookimpl
def activate(ctx):
    ctx.register_admin_command("cache_clear", cache_clear)
    ctx.register_admin_command("stats", stats)
    ctx.register_admin_command("broken", broken, namespace="cache.debug")
"""

DECLARED = """
manifest_version = 2

[[plugin.admin.command]]
namespace = "cache"
methods = ["cache_clear", "stats"]
description = "Cache maintenance"

[[plugin.admin.command]]
namespace = "cache.debug"
methods = ["broken"]
"""


def make_host(tmp_path: Path, code: str = CACHE, sections: str = DECLARED) -> PluginHost:
    directory_plugin(tmp_path / "plugins", "cache", code, sections={"admin": sections})
    config = HostConfig.from_mapping({}, base_dir=tmp_path)
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


async def test_admin_commands_are_called_by_name_with_their_arguments(tmp_path: Path) -> None:
    async with make_host(tmp_path) as host:
        assert host.admin.names() == ["cache.cache_clear", "cache.debug.broken", "cache.stats"]
        assert await host.admin.call("cache.stats") == "3 entries"
        assert await host.admin.call("cache.cache_clear", {"older_than": 1}) == {
            "removed": ["b", "c"]
        }
        assert await host.admin.call("cache.stats", {}) == "1 entries"
        with pytest.raises(NotRegistered):
            await host.admin.call("cache.nothing")
        with pytest.raises(TypeError):
            await host.admin.call("cache.stats", {"unexpected": 1})
        assert host.context.registrations("cache").admin == (
            "cache.cache_clear",
            "cache.debug.broken",
            "cache.stats",
        )
        await host.deactivate("cache")
        assert host.admin.names() == []


@pytest.mark.parametrize(
    ("code", "sections", "expected"),
    [
        (  # registered but not declared
            CACHE,
            DECLARED.replace('methods = ["broken"]', 'methods = ["other"]'),
            "registered admin command 'cache.debug.broken', which its manifest does not declare",
        ),
        (  # an escape from its namespace, in code
            CACHE.replace('namespace="cache.debug"', 'namespace="weather"'),
            DECLARED,
            "admin command 'weather.broken' outside its namespace",
        ),
    ],
)
async def test_an_undeclared_admin_command_fails_activation(
    tmp_path: Path, code: str, sections: str, expected: str
) -> None:
    async with make_host(tmp_path, code, sections) as host:
        record = host.plugins["cache"]
        assert record.state is S.FAILED
        assert record.failure is not None
        assert expected in record.failure.reason
        assert host.admin.names() == []


BROKEN = 'methods = ["broken"]'


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            DECLARED.replace('namespace = "cache.debug"', 'namespace = "weather"'),
            "admin namespace 'weather' is not plugin 'cache''s",
        ),
        (
            DECLARED.replace("manifest_version = 2", "manifest_version = 1"),
            "needs manifest_version = 2",
        ),
        (DECLARED.replace(BROKEN, "methods = []"), "at least one method"),
        (
            DECLARED.replace(BROKEN, 'methods = ["stats"]').replace('"cache.debug"', '"cache"'),
            "declared twice",
        ),
        (
            DECLARED.replace(BROKEN, 'methods = ["no-dash"]'),
            "plugin.admin.command[1].methods[0]",
        ),
    ],
)
def test_admin_sections_are_validated(tmp_path: Path, sections: str, expected: str) -> None:
    host = make_host(tmp_path, sections=sections)
    problems = [str(diagnostic) for diagnostic in host.discover().diagnostics]
    assert any(expected in problem for problem in problems), problems
    assert any("plugin.toml" in problem for problem in problems)


async def test_admin_commands_over_http_need_the_token(tmp_path: Path) -> None:
    async with make_host(tmp_path) as host:
        for app, token in (
            (host.http_app(admin_token="s3cret"), "s3cret"),
            (host.http_app(), None),
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                if token is None:  # no token, no admin route at all
                    assert (await http.post("/admin/cache.stats")).status_code == 404
                    continue
                auth = {"Authorization": f"Bearer {token}"}
                assert (await http.post("/admin/cache.stats")).status_code == 401
                wrong = {"Authorization": "Bearer guess"}
                assert (await http.post("/admin/cache.stats", headers=wrong)).status_code == 401
                ok = await http.post("/admin/cache.stats", headers=auth)
                assert ok.json() == {"command": "cache.stats", "result": "3 entries"}
                cleared = await http.post(
                    "/admin/cache.cache_clear", headers=auth, json={"older_than": 2}
                )
                assert cleared.json()["result"] == {"removed": ["c"]}
                assert (await http.post("/admin/cache.nope", headers=auth)).status_code == 404
                failed = await http.post("/admin/cache.debug.broken", headers=auth)
                assert failed.status_code == 500
                assert "the cache is locked" in failed.json()["error"]
                bad = await http.post("/admin/cache.stats", headers=auth, content=b"[1]")
                assert bad.status_code == 400
                assert (await http.get("/admin/cache.stats", headers=auth)).status_code == 405


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_command_line_calls_admin_commands_on_a_running_gateway(tmp_path: Path) -> None:
    directory_plugin(tmp_path / "plugins", "cache", CACHE, sections={"admin": DECLARED})
    config = tmp_path / "config.toml"
    config.write_text('[plugins]\ndirs = ["./plugins"]\n', "utf-8")
    empty = tmp_path / "site"
    empty.mkdir()
    port = _free_port()
    gateway = _Gateway(
        "--path", empty, "gateway", "--config", config, "--http", str(port), cwd=tmp_path
    )
    admin_file = tmp_path / ".clawhost" / "admin.json"
    try:
        gateway.wait_for("Admin commands:")
        deadline = time.monotonic() + 30
        while not admin_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert oct(admin_file.stat().st_mode & 0o777) == "0o600"

        command = [sys.executable, "-m", "clawhost", "--config", str(config), "plugins", "admin"]
        environment = {k: v for k, v in os.environ.items() if k != "CLAWHOST_ADMIN_TOKEN"}

        def admin(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*command, *args],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=environment,
                timeout=60,
                check=False,
            )

        stats = admin("cache", "stats")
        cleared = admin("cache", "cache_clear", "--arg", "older_than=1")
        missing = admin("cache", "nothing")
        wrong = admin("cache", "stats", "--token", "guess")
    finally:
        code = gateway.stop(signal.SIGINT)
    assert code == 0
    assert (stats.returncode, stats.stdout.strip()) == (0, "3 entries")
    assert json.loads(cleared.stdout) == {"removed": ["b", "c"]}
    assert missing.returncode == 1
    assert "cache.nothing" in missing.stderr
    assert "(HTTP 404)" in missing.stderr
    assert "(HTTP 401)" in wrong.stderr
    assert not admin_file.exists()  # removed when the gateway stopped


async def test_admin_commands_of_a_plugin_in_a_worker_are_proxies(tmp_path: Path) -> None:
    directory_plugin(tmp_path / "plugins", "cache", CACHE, sections={"admin": DECLARED})
    config = HostConfig.from_mapping(
        {"plugins": {"cache": {"isolation": "process"}}}, base_dir=tmp_path
    )
    host = PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)
    async with host:
        assert host.plugins["cache"].state is S.ACTIVE
        assert host.admin.names() == ["cache.cache_clear", "cache.debug.broken", "cache.stats"]
        assert await host.admin.call("cache.cache_clear", {"older_than": 2}) == {"removed": ["c"]}
        assert await host.admin.call("cache.stats") == "2 entries"
        with pytest.raises(RuntimeError, match="the cache is locked"):
            await host.admin.call("cache.debug.broken")
