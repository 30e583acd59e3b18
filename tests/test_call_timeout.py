"""``[plugins] call_timeout_secs``: one overall deadline for a tool call as its caller sees it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginHost
from clawhost.errors import PluginTimeout

from ._site import directory_plugin

SLOW = """
import anyio
from clawhost import hookimpl, tool

@tool
async def slow(secs: float) -> str:
    \"\"\"Take a while.\"\"\"
    await anyio.sleep(secs)
    return "done"

@hookimpl
def activate(ctx):
    ctx.register_tool(slow)
"""

SLOW_START = """
import anyio
from clawhost import hookimpl, tool

@tool
async def quick() -> str:
    \"\"\"Answer at once.\"\"\"
    return "pong"

@hookimpl
async def activate(ctx):
    await anyio.sleep(2)
    ctx.register_tool(quick)
"""


def make_host(root: Path, code: str, tools: str, **plugins: Any) -> PluginHost:
    directory_plugin(
        root / "plugins",
        "slowpoke",
        code,
        sections={"c": f"[plugin.capabilities]\ntools = [{tools}]"},
    )
    config = HostConfig.from_mapping({"plugins": plugins}, base_dir=root)
    return PluginHost(config=config, dirs=[root / "plugins"], path=[], cache=False, drain_timeout=5)


def overall(exc: PluginTimeout, tool: str) -> None:
    assert exc.plugin == "slowpoke"
    assert f"tool {tool}" in str(exc)
    assert "[plugins] call_timeout_secs" in str(exc)


async def test_waiting_for_a_slot_counts_against_the_call_timeout(tmp_path: Path) -> None:
    host = make_host(
        tmp_path,
        SLOW,
        '"slow"',
        call_timeout_secs=0.5,
        slowpoke={"sandbox": {"max_concurrency": 1}},
    )
    async with host:
        first: list[BaseException] = []

        async def hold() -> None:
            try:
                await host.tools.invoke("slow", secs=0.3)
            except BaseException as exc:  # pragma: no cover - reported below
                first.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(hold)
            await anyio.sleep(0.05)  # the first call holds the only slot
            started = time.monotonic()
            with pytest.raises(PluginTimeout) as caught:
                await host.tools.invoke("slow", secs=0.3)  # 0.25 wait + 0.3 > 0.5
            assert time.monotonic() - started < 0.55
        overall(caught.value, "slow")
        assert not first
        assert await host.tools.invoke("slow", secs=0.01) == "done"


async def test_a_slow_lazy_activation_counts_against_the_call_timeout(tmp_path: Path) -> None:
    host = make_host(tmp_path, SLOW_START, '"quick"', call_timeout_secs=0.3, lazy_activation=True)
    async with host:
        started = time.monotonic()
        with pytest.raises(PluginTimeout) as caught:
            await host.tools.invoke("quick")
        assert time.monotonic() - started < 1.5
    overall(caught.value, "quick")


async def test_the_per_call_deadline_still_applies_under_a_larger_call_timeout(
    tmp_path: Path,
) -> None:
    host = make_host(
        tmp_path,
        SLOW,
        '"slow"',
        call_timeout_secs=5,
        slowpoke={"sandbox": {"max_wall_time_secs": 0.2}},
    )
    async with host:
        started = time.monotonic()
        with pytest.raises(PluginTimeout) as caught:
            await host.tools.invoke("slow", secs=3)
        assert time.monotonic() - started < 2
    assert caught.value.limit == pytest.approx(0.2)
    assert "call_timeout_secs" not in str(caught.value)


async def test_the_call_timeout_holds_in_worker_mode(tmp_path: Path) -> None:
    host = make_host(
        tmp_path,
        SLOW,
        '"slow"',
        call_timeout_secs=0.5,
        sandbox={"isolation": "process", "max_cpu_time_secs": 30},
    )
    async with host:
        assert await host.tools.invoke("slow", secs=0.01) == "done"  # the worker is up
        started = time.monotonic()
        with pytest.raises(PluginTimeout) as caught:
            await host.tools.invoke("slow", secs=5)
        assert time.monotonic() - started < 3
        overall(caught.value, "slow")
        assert await host.tools.invoke("slow", secs=0.01) == "done"
