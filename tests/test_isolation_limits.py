"""CPU time and wall-clock time: ``max_cpu_time_secs`` and ``max_wall_time_secs``.

In a worker process (``isolation = "process"``) ``max_cpu_time_secs`` is a real CPU-time
limit (``RLIMIT_CPU``, renewed for every call) and ``max_wall_time_secs`` the deadline of
every call. In-process both are wall-clock deadlines: the smaller one applies. The worker
tests run real worker processes under real limits; nothing is mocked.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginHost, PluginState
from clawhost.config.host import SandboxConfig
from clawhost.errors import ConfigError, PermissionDenied, PluginTimeout, ToolFailed, WorkerDied
from clawhost.worker.isolation import WorkerPlugin

from ._site import directory_plugin
from .test_isolation import NAPPER, RESTART, restarted, wait_for

S = PluginState

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="worker processes: RLIMIT_CPU, /proc, prctl"
)


def make_host(
    tmp_path: Path, *, sandbox: dict[str, Any] | None = None, **plugins: dict[str, Any]
) -> PluginHost:
    """A host whose plugins run in worker processes unless a plugin's table says not.

    Only the test's directory plugins: no installed distribution (``path=[]``), so plugins
    other tests left on ``sys.path`` never start here.
    """
    table: dict[str, Any] = {"sandbox": {"isolation": "process", **(sandbox or {})}, **plugins}
    config = HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path)
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def plugin(tmp_path: Path, name: str, code: str, tools: list[str]) -> Path:
    names = ", ".join(f'"{tool}"' for tool in tools)
    sections = {"caps": f"[plugin.capabilities]\ntools = [{names}]"}
    return directory_plugin(tmp_path / "plugins", name, code, sections=sections)


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists at all: exited and reaped."""
    return not os.path.exists(f"/proc/{pid}")


BUSY = """
import os, resource, signal, threading, time
from clawhost import hookimpl, tool

def burn():
    while True:
        pass

@tool
def spin() -> None:
    \"\"\"Busy forever, on a worker thread.\"\"\"
    burn()

@tool
async def spin_async() -> None:
    \"\"\"Busy forever on the worker's event loop, never yielding.\"\"\"
    burn()

@tool
def spin_in_background(threads: int) -> int:
    \"\"\"Leave busy threads behind, and return at once.\"\"\"
    for _ in range(threads):
        threading.Thread(target=burn, daemon=True).start()
    return os.getpid()

@tool
async def ignore_sigxcpu() -> None:
    \"\"\"Ignore SIGXCPU (signal handlers can only be set on the main thread).\"\"\"
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)

@tool
def raise_cpu_limit() -> None:
    \"\"\"Try to lift the CPU limit.\"\"\"
    resource.setrlimit(resource.RLIMIT_CPU, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

@tool
def nap(seconds: float) -> float:
    \"\"\"Sleep, using no CPU.\"\"\"
    time.sleep(seconds)
    return seconds

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@hookimpl
def activate(ctx):
    for function in (
        spin, spin_async, spin_in_background, ignore_sigxcpu, raise_cpu_limit, nap, where
    ):
        ctx.register_tool(function)
"""
BUSY_TOOLS = [
    "spin",
    "spin_async",
    "spin_in_background",
    "ignore_sigxcpu",
    "raise_cpu_limit",
    "nap",
    "where",
]

CALM = """
import anyio
from clawhost import hookimpl, tool

@tool
async def calm() -> str:
    \"\"\"Still here.\"\"\"
    await anyio.sleep(0.05)
    return "calm"

@hookimpl
def activate(ctx):
    ctx.register_tool(calm)
"""


def worker_of(host: PluginHost, name: str) -> WorkerPlugin:
    worker = host.plugins[name].target
    assert isinstance(worker, WorkerPlugin)
    return worker


@linux_only
async def test_a_busy_call_is_stopped_by_its_cpu_limit_long_before_its_deadline(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "busy", BUSY, BUSY_TOOLS)
    plugin(tmp_path, "calm", CALM, ["calm"])
    host = make_host(
        tmp_path,
        sandbox={"max_cpu_time_secs": 1, "max_wall_time_secs": 20, **RESTART},
        calm={"isolation": "in-process"},
    )
    async with host:
        worker = worker_of(host, "busy")
        assert (worker.limit, worker.cpu_limit) == (20, 1)
        assert worker.limits["cpu_time_secs"] == 1
        # plugin code cannot lift its limit through Python
        with pytest.raises(ToolFailed) as failed:
            await host.tools.invoke("raise_cpu_limit")
        denied = failed.value.__cause__
        assert isinstance(denied, PermissionDenied)
        assert (denied.plugin, denied.kind, denied.resource) == ("busy", "process", "RLIMIT_CPU")

        async def keep_calling(served: list[str]) -> None:
            while True:  # the other plugin keeps serving meanwhile
                served.append(await host.tools.invoke("calm"))

        # on a worker thread; then on the event loop, after the plugin ignored SIGXCPU
        # (each call restores its default action)
        for restarts, tool_name in enumerate(("spin", "spin_async"), start=1):
            if tool_name == "spin_async":
                await host.tools.invoke("ignore_sigxcpu")
            first = await host.tools.invoke("where")
            served: list[str] = []
            started = time.monotonic()
            async with anyio.create_task_group() as group:
                group.start_soon(keep_calling, served)
                with pytest.raises(ToolFailed) as failed:
                    await host.tools.invoke(tool_name)
                group.cancel_scope.cancel()
            elapsed = time.monotonic() - started
            # one or two seconds of CPU (more wall time on a loaded machine), not 20 s
            assert 0.9 <= elapsed < 10.0, elapsed
            assert len(served) >= 5
            died = failed.value.__cause__
            assert isinstance(died, WorkerDied), repr(died)
            assert died.returncode == -signal.SIGXCPU
            assert died.operation == f"tool {tool_name}"
            assert "killed by signal" in str(died)
            assert "exceeded its CPU limit, max_cpu_time_secs (1s of CPU)" in str(died)
            assert gone(first)
            # the plugin failed, and is restarted in a fresh worker
            second = await restarted(host, "busy", first)
            assert await host.tools.invoke("where") == second
            assert host.plugins["busy"].restarts == restarts
        assert await host.tools.invoke("calm") == "calm"


@linux_only
async def test_threads_left_spinning_between_calls_are_stopped_by_the_cpu_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin(tmp_path, "busy", BUSY, BUSY_TOOLS)
    host = make_host(tmp_path, sandbox={"max_cpu_time_secs": 1, "max_wall_time_secs": 20})
    with caplog.at_level(logging.ERROR, logger="clawhost.isolation"):
        async with host:
            worker = worker_of(host, "busy")
            pid = await host.tools.invoke("spin_in_background", {"threads": 2})
            assert worker.alive
            started = time.monotonic()
            # no call runs meanwhile: poll, as nothing else would notice
            while worker.alive and time.monotonic() - started < 10:  # noqa: ASYNC110
                await anyio.sleep(0.05)
            elapsed = time.monotonic() - started
            assert not worker.alive
            assert elapsed < 8.0, elapsed  # one or two seconds of CPU
            # the host notices by itself: the plugin is FAILED with the reason
            await wait_for(host, "busy", S.FAILED, within=5.0)
            assert gone(pid)
            health = await host.health_check("busy")
            assert not health.healthy
            assert health.reason is not None
            assert "exceeded its CPU limit" in health.reason
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        f"pid {pid}) was killed by signal {int(signal.SIGXCPU)} (SIGXCPU)" in message
        and "exceeded its CPU limit, max_cpu_time_secs (1s of CPU)" in message
        for message in errors
    ), errors


@linux_only
async def test_a_call_using_no_cpu_meets_its_wall_clock_deadline(tmp_path: Path) -> None:
    plugin(tmp_path, "busy", BUSY, BUSY_TOOLS)
    host = make_host(
        tmp_path, sandbox={"max_cpu_time_secs": 8, "max_wall_time_secs": 1.5, **RESTART}
    )
    async with host:
        worker = worker_of(host, "busy")
        assert (worker.limit, worker.cpu_limit) == (1.5, 8)
        first = await host.tools.invoke("where")
        started = time.monotonic()
        with pytest.raises(PluginTimeout) as timeout:
            await host.tools.invoke("nap", {"seconds": 30})
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 3.0, elapsed
        assert timeout.value.limit == 1.5
        assert timeout.value.interrupted
        assert gone(first)
        await restarted(host, "busy", first)
        assert await host.tools.invoke("nap", {"seconds": 0}) == 0


@linux_only
async def test_without_max_wall_time_secs_a_worker_call_has_the_cpu_budget_as_deadline(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "busy", BUSY, BUSY_TOOLS)
    async with make_host(tmp_path, sandbox={"max_cpu_time_secs": 1.5}) as host:
        worker = worker_of(host, "busy")
        assert (worker.limit, worker.cpu_limit) == (1.5, 1.5)
        with pytest.raises(PluginTimeout) as timeout:
            await host.tools.invoke("nap", {"seconds": 30})
        assert timeout.value.limit == 1.5


def test_max_wall_time_secs_is_checked_like_the_other_durations() -> None:
    for value, got in ((0, "got 0"), (-1.5, "got -1.5"), (True, "got True")):
        with pytest.raises(ConfigError) as error:
            HostConfig.from_mapping({"plugins": {"sandbox": {"max_wall_time_secs": value}}})
        (problem,) = error.value.problems
        assert problem.field == "plugins.sandbox.max_wall_time_secs"
        assert problem.message == got
        assert problem.expected == "a number of seconds > 0"
    with pytest.raises(ConfigError) as error:
        HostConfig.from_toml('[plugins.slow.sandbox]\nmax_wall_time_secs = "5"\n')
    (problem,) = error.value.problems
    assert problem.field == "plugins.slow.sandbox.max_wall_time_secs"
    assert "quoted" in problem.message
    assert problem.expected == "a number of seconds > 0"


def test_max_wall_time_secs_is_set_for_all_plugins_or_one() -> None:
    config = HostConfig.from_toml(
        "[plugins.sandbox]\nmax_cpu_time_secs = 10\n"
        "[plugins.slow.sandbox]\nmax_wall_time_secs = 60\n"
        "[plugins.quick.sandbox]\nmax_cpu_time_secs = 2\n"
    )
    assert config.plugins.sandbox.max_wall_time_secs is None
    slow, quick, other = map(config.sandbox_for, ("slow", "quick", "other"))
    assert (slow.max_cpu_time_secs, slow.max_wall_time_secs) == (10, 60)
    assert (quick.max_cpu_time_secs, quick.max_wall_time_secs) == (2, None)
    assert (other.max_cpu_time_secs, other.max_wall_time_secs) == (10, None)
    everyone = HostConfig.from_toml("[plugins.sandbox]\nmax_wall_time_secs = 3\n")
    assert everyone.sandbox_for("any").max_wall_time_secs == 3
    assert isinstance(everyone.sandbox_for("any").max_wall_time_secs, float)


@pytest.mark.parametrize(
    ("cpu", "wall", "in_process", "in_a_worker"),
    [
        (30, None, 30, 30),  # unset: the CPU budget, as before
        (5, 0.5, 0.5, 0.5),
        (0.5, 5, 0.5, 5),  # in a worker the CPU budget is RLIMIT_CPU, not a deadline
        (math.inf, 7, 7, 7),
        (2, math.inf, 2, math.inf),
    ],
)
def test_the_deadline_of_a_call(
    cpu: float, wall: float | None, in_process: float, in_a_worker: float
) -> None:
    sandbox = SandboxConfig(max_cpu_time_secs=cpu, max_wall_time_secs=wall)
    assert sandbox.call_deadline() == in_process
    isolated = sandbox.model_copy(update={"isolation": "process"})
    assert isolated.call_deadline() == in_a_worker


async def test_in_process_the_smaller_of_the_two_is_the_deadline(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "napper",
        NAPPER,
        sections={"caps": '[plugin.capabilities]\ntools = ["nap"]'},
    )
    for cpu, wall in ((5.0, 0.3), (0.3, 5.0)):
        sandbox = {"max_cpu_time_secs": cpu, "max_wall_time_secs": wall}
        table = {"sandbox": {"max_cpu_time_secs": 60.0}, "napper": {"sandbox": sandbox}}
        config = HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path)
        host = PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)
        async with host:
            assert host.plugins["napper"].timeout == 0.3
            assert await host.tools.invoke("nap", {"seconds": 0}) == 0
            started = time.monotonic()
            with pytest.raises(PluginTimeout) as timeout:
                await host.tools.invoke("nap", {"seconds": 30})
            assert timeout.value.limit == 0.3
            assert time.monotonic() - started < 1.5
