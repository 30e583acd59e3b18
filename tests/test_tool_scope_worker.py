"""Worker mode (``isolation = "process"``): tool arguments are validated, and results of
tools, provider methods and admin commands serialized, inside the plugin's call in its
worker process: under its sandbox scope, its CPU limit and its deadline (issue 21).

The plugin's pydantic validators and serializers are plugin code: one that opens a socket
is judged by the plugin's permissions (granted none here), and one that blocks forever is
cut off at the call's deadline (the host kills the worker), after which the plugin is
restarted and answers again.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from clawhost import HostConfig, PluginHost
from clawhost.errors import (
    PermissionDenied,
    PluginTimeout,
    ToolArgumentsInvalid,
    ToolFailed,
)
from clawhost.worker.isolation import WorkerPlugin

from ._site import directory_plugin
from .test_isolation import RESTART, restarted
from .test_tool_scope import CODE, TOOLS

pytestmark = pytest.mark.anyio

#: The wall-clock deadline of every call, the worker's start-up included.
LIMIT = 2.0

EXTRA = """

class Almanac:
    def entry(self, text: str) -> Answer:
        return Answer(text=text)


def almanac_entry(text: str) -> Answer:
    return Answer(text=text)
"""
REGISTER = """\
        ctx.register_tool(function)
    ctx.register_provider("almanac", Almanac())
    ctx.register_admin_command("entry", almanac_entry)
"""

SECTIONS = {
    "tools": TOOLS + 'providers = ["almanac"]\n',
    "admin": '[[plugin.admin.command]]\nnamespace = "finder"\nmethods = ["entry"]\n',
}
LOOK_UPS = ["look_up", "look_up_inline", "look_up_async"]
ANSWERS = ["answer", "answer_async"]


def make_host(tmp_path: Path) -> PluginHost:
    code = CODE.replace("        ctx.register_tool(function)\n", REGISTER) + EXTRA
    assert "almanac" in code
    directory_plugin(tmp_path / "plugins", "finder", code, sections=SECTIONS)
    config = HostConfig.from_mapping(
        {
            "plugins": {
                "sandbox": {"net_allowed": ["*:*"]},  # the host may; the plugin asks for none
                "finder": {
                    "sandbox": {"isolation": "process", "max_wall_time_secs": LIMIT, **RESTART}
                },
            }
        },
        base_dir=tmp_path,
    )
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def worker_pid(host: PluginHost) -> int:
    worker = host.plugins["finder"].target
    assert isinstance(worker, WorkerPlugin)
    assert worker.pid is not None
    return worker.pid


def assert_denied(error: BaseException | None) -> None:
    assert isinstance(error, PermissionDenied), repr(error)
    assert (error.plugin, error.kind, error.resource) == ("finder", "network", "192.0.2.1:9")


@pytest.mark.parametrize("name", LOOK_UPS)
async def test_arguments_are_validated_in_the_worker_inside_the_scope(
    tmp_path: Path, name: str
) -> None:
    async with make_host(tmp_path) as host:
        pid = worker_pid(host)
        with anyio.fail_after(30):
            assert await host.tools.invoke(name, {"query": {"text": "ada"}}) == "ADA"
            with pytest.raises(ToolArgumentsInvalid) as invalid:
                await host.tools.invoke(name, {"query": {"text": "bad"}})
            assert invalid.value.tool == name
            assert "not a word" in str(invalid.value)
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke(name, {"query": {"text": "network"}})
        assert_denied(failed.value.__cause__)
        assert worker_pid(host) == pid  # refused, not killed


@pytest.mark.parametrize("name", ["look_up", "look_up_async"])
async def test_a_validator_that_blocks_forever_is_cut_off_and_the_plugin_serves_again(
    tmp_path: Path, name: str
) -> None:
    async with make_host(tmp_path) as host:
        first = worker_pid(host)
        started = time.monotonic()
        with anyio.fail_after(30), pytest.raises(PluginTimeout) as caught:
            await host.tools.invoke(name, {"query": {"text": "block"}})
        assert LIMIT <= time.monotonic() - started < LIMIT + 5
        assert (caught.value.plugin, caught.value.operation) == ("finder", f"tool {name}")
        second = await restarted(host, "finder", first)
        with anyio.fail_after(10):
            assert await host.tools.invoke("ping") == "pong"
            assert await host.tools.invoke(name, {"query": {"text": "ok"}}) == "OK"
        assert worker_pid(host) == second


@pytest.mark.parametrize("name", ANSWERS)
async def test_tool_results_are_serialized_in_the_worker_inside_the_scope(
    tmp_path: Path, name: str
) -> None:
    async with make_host(tmp_path) as host:
        pid = worker_pid(host)
        with anyio.fail_after(30):
            assert await host.tools.invoke(name, {"text": "ADA"}) == {"text": "ada"}
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke(name, {"text": "network"})
        assert_denied(failed.value.__cause__)
        assert worker_pid(host) == pid
        with anyio.fail_after(30), pytest.raises(PluginTimeout):
            await host.tools.invoke(name, {"text": "block"})
        await restarted(host, "finder", pid)
        with anyio.fail_after(10):
            assert await host.tools.invoke(name, {"text": "OK"}) == {"text": "ok"}


async def test_provider_and_admin_results_are_serialized_inside_the_scope(
    tmp_path: Path,
) -> None:
    async with make_host(tmp_path) as host:
        pid = worker_pid(host)
        almanac = host.providers.get("almanac")
        with anyio.fail_after(30):
            assert await almanac.entry("ADA") == {"text": "ada"}
            assert await host.admin.call("finder.entry", {"text": "ADA"}) == {"text": "ada"}
            with pytest.raises(Exception) as provider:  # noqa: PT011 - the cause is checked
                await almanac.entry("network")
            with pytest.raises(Exception) as admin:  # noqa: PT011 - the cause is checked
                await host.admin.call("finder.entry", {"text": "network"})
        for caught in (provider, admin):
            error: BaseException | None = caught.value
            while error is not None and not isinstance(error, PermissionDenied):
                error = error.__cause__
            assert_denied(error)
        assert worker_pid(host) == pid
