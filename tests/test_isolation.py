"""Process isolation: a plugin in a worker process of its own, where limits are real.

Every test runs real worker processes (``python -m clawhost.worker.child``) under real
resource limits; nothing of clawhost is mocked.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from clawhost import HostConfig, Message, PluginHost, PluginState, hookimpl
from clawhost.errors import (
    ConfigError,
    NotIsolatable,
    PermissionDenied,
    PluginFailed,
    PluginTimeout,
    ReloadError,
    ToolArgumentsInvalid,
    ToolFailed,
    WorkerDied,
    WorkerError,
)
from clawhost.worker.isolation import WorkerPlugin
from clawhost.worker.wire import MAX_LINE

from ._site import directory_plugin

S = PluginState
MIB = 1024 * 1024


def make_host(
    tmp_path: Path, *, sandbox: dict[str, Any] | None = None, **plugins: dict[str, Any]
) -> PluginHost:
    """A host whose plugins run in worker processes unless a plugin's table says not."""
    table: dict[str, Any] = {
        "sandbox": {"max_cpu_time_secs": 2.0, "isolation": "process", **(sandbox or {})},
        **plugins,
    }
    config = HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path)
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def plugin(tmp_path: Path, name: str, code: str, **sections: str) -> Path:
    return directory_plugin(tmp_path / "plugins", name, code, sections=sections)


def caps(**kinds: list[str]) -> str:
    lines = [f"{kind} = {names!r}".replace("'", '"') for kind, names in kinds.items()]
    return "[plugin.capabilities]\n" + "\n".join(lines)


def children() -> dict[int, str]:
    """This process's child processes, and their state (``Z``: a zombie)."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found[int(entry)] = fields[0]
    return found


def open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def gone(pid: int) -> bool:
    """Whether ``pid`` no longer exists at all: exited and reaped."""
    return not os.path.exists(f"/proc/{pid}")


def process_state(pid: int) -> str | None:
    """``pid``'s state letter (``Z``: a zombie), or ``None`` when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def dead(pid: int) -> bool:
    """Whether ``pid`` no longer runs: no such process (``os.kill(pid, 0)`` finds none), or
    a zombie. A worker's orphaned child is reparented to init, and where init does not
    reap (some containers) its zombie lingers, although it is as dead as can be."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return process_state(pid) in (None, "Z")


async def wait_dead(pid: int, within: float = 2.0) -> bool:
    """Whether ``pid`` is dead, polling for up to ``within`` seconds (a kill is not instant)."""
    deadline = time.monotonic() + within
    while not dead(pid):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.02)
    return True


def group_members(pgid: int) -> set[int]:
    """The live processes (zombies left out) of process group ``pgid``."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.add(int(entry))
    return found


DEMO = """
import json, os, sys
from typing import Annotated, Literal
from pydantic import Field
from clawhost import hookimpl, tool

received = []

@tool
def add(a: int, b: Annotated[int, Field(ge=0, description="never negative")] = 1) -> int:
    \"\"\"Add two numbers.\"\"\"
    # None of this may reach the protocol: it all goes to the host's log.
    print(json.dumps({"id": 1, "ok": True, "result": 666}))
    sys.__stdout__.write("through sys.__stdout__\\n")
    os.write(1, b"straight to fd 1\\n")
    return a + b

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@tool
def greet(units: Literal["metric", "imperial"]) -> dict:
    \"\"\"A mapping back.\"\"\"
    return {"units": units, "received": received}

def shout(message):
    if message.text == "drop me":
        return None
    return message.replace(text=message.text.upper(), metadata={"by": "demo"})

@hookimpl
def on_message_received(message):
    received.append(message.text)

@hookimpl
def activate(ctx):
    print("activating in", os.getpid())
    ctx.logger.warning("activated with units=%s", ctx.config["units"])
    for function in (add, where, greet):
        ctx.register_tool(function)
    ctx.register_pipeline_stage("shout", shout, order=5)
    ctx.on("custom_event", lambda payload: received.append(payload["n"]))

@hookimpl
def health_check():
    return None if received != ["sick"] else "it saw 'sick'"

@hookimpl
def deactivate(ctx):
    print("deactivating", ctx.name)
"""

DEMO_SECTIONS = {
    "caps": caps(tools=["add", "where", "greet"], pipeline_stages=["shout"]),
    "config": '[plugin.config.units]\ntype = "string"\ndefault = "metric"',
}


async def test_a_plugin_in_a_worker_serves_tools_events_and_stages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin(tmp_path, "demo", DEMO, **DEMO_SECTIONS)
    host = make_host(tmp_path, demo={"config": {"units": "imperial"}})
    fds = open_fds()

    with caplog.at_level(logging.INFO):
        async with host:
            record = host.plugins["demo"]
            assert record.state is S.ACTIVE, record.failure
            worker_pid = await host.tools.invoke("where")
            assert worker_pid != os.getpid()
            assert worker_pid in children()

            # the tool answers, whatever the plugin prints meanwhile
            assert await host.tools.invoke("add", {"a": 2, "b": 3}) == 5
            assert await host.tools.invoke("add", a=2) == 3
            # the schema is the worker's, exported for function calling
            schema = next(s for s in host.tools.schemas("anthropic") if s["name"] == "add")
            assert schema["description"] == "Add two numbers."
            assert schema["input_schema"]["properties"]["b"]["minimum"] == 0
            assert schema["input_schema"]["required"] == ["a"]
            # arguments are checked by the tool's real pydantic model, in the worker
            with pytest.raises(ToolArgumentsInvalid) as invalid:
                await host.tools.invoke("add", {"a": "two", "b": -1, "c": 0})
            assert {problem.field for problem in invalid.value.problems} == {"a", "b", "c"}
            with pytest.raises(ToolArgumentsInvalid, match="units"):
                await host.tools.invoke("greet", {"units": "kelvin"})
            with pytest.raises(ToolArgumentsInvalid, match="not JSON data"):
                await host.tools.invoke("greet", {"units": object()})

            # events, standard and custom, reach the plugin's handlers
            report = await host.events.dispatch("on_message_received", message=Message("hi"))
            assert report.ok
            assert report.handlers == 1
            assert (await host.events.dispatch("custom_event", {"n": 7})).ok
            answer = await host.tools.invoke("greet", {"units": "metric"})
            assert answer == {"units": "metric", "received": ["hi", 7]}

            # a pipeline stage transforms, and drops
            out = await host.pipeline.run(Message("hello", metadata={"k": 1}))
            assert out is not None
            assert (out.text, dict(out.metadata)) == ("HELLO", {"by": "demo"})
            assert await host.pipeline.run(Message("drop me")) is None

            assert (await host.health_check("demo")).healthy
            assert host.context.registrations("demo").as_dict() == {
                "tools": ["add", "greet", "where"],
                "channels": [],
                "pipeline_stages": ["shout"],
                "providers": [],
                "events": ["custom_event", "on_message_received"],
                "http": [],
                "admin": [],
            }

    assert record.state is S.INACTIVE
    assert host.context.registrations("demo").is_empty()
    assert gone(worker_pid)
    assert children() == {}
    assert open_fds() == fds
    lines = [r.getMessage() for r in caplog.records if r.name == "clawhost.plugin.demo"]
    assert "activated with units=imperial" in lines
    assert '{"id": 1, "ok": true, "result": 666}' in lines
    assert {"through sys.__stdout__", "straight to fd 1", "deactivating demo"} <= set(lines)
    warning = next(r for r in caplog.records if r.getMessage().startswith("activated with"))
    assert warning.levelno == logging.WARNING


HOG = """
from clawhost import hookimpl, tool

@tool
def hog(mb: int) -> int:
    \"\"\"Allocate mb megabytes.\"\"\"
    return len(bytearray(mb * 1024 * 1024))

@hookimpl
def activate(ctx):
    ctx.register_tool(hog)
"""

CALM = """
from clawhost import hookimpl, tool

@tool
def calm() -> str:
    \"\"\"Still here.\"\"\"
    return "calm"

@hookimpl
def activate(ctx):
    ctx.register_tool(calm)
"""


STEADY = CALM.replace("calm", "steady")


def bystanders(tmp_path: Path) -> dict[str, Any]:
    """Two plugins that must keep serving while another one fails: ``calm`` in-process and
    ``steady`` in a worker process of its own. Returns their tables for ``make_host``."""
    plugin(tmp_path, "calm", CALM, caps=caps(tools=["calm"]))
    plugin(tmp_path, "steady", STEADY, caps=caps(tools=["steady"]))
    return {"calm": {"isolation": "in-process"}}


@contextlib.asynccontextmanager
async def bystanders_keep_serving(host: PluginHost) -> AsyncIterator[None]:
    """Call the bystanders' tools over and over while the body runs, then once more.

    Every answer must be right and come within a second; at least one round of calls must
    have overlapped the body (a body shorter than a round may slip between two).
    """
    expected = {"calm": "calm", "steady": "steady"}
    slowest = 0.0
    rounds = 0

    async def round_of_calls() -> None:
        nonlocal slowest
        for name, answer in expected.items():
            started = time.monotonic()
            assert await host.tools.invoke(name) == answer
            slowest = max(slowest, time.monotonic() - started)

    async def keep_calling(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        nonlocal rounds
        await round_of_calls()
        task_status.started()
        while True:
            await round_of_calls()
            rounds += 1
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as group:
        await group.start(keep_calling)
        body_started = time.monotonic()
        yield
        group.cancel_scope.cancel()
    body = time.monotonic() - body_started
    await round_of_calls()
    assert host.plugins["calm"].state is S.ACTIVE
    assert host.plugins["steady"].state is S.ACTIVE
    assert slowest < 1.0, f"a bystander took {slowest:.2f}s to answer"
    assert rounds >= 1 or body < 0.2, f"no bystander call in the {body:.2f}s of the failure"


#: Restart a dead worker after 0.1 s (doubling), as ``[plugins.sandbox]`` would say.
RESTART = {"restart": True, "restart_backoff_secs": 0.1, "restart_backoff_max_secs": 60.0}


async def wait_for(host: PluginHost, name: str, state: PluginState, within: float = 10.0) -> None:
    """Wait until plugin ``name`` is in ``state`` (the host supervises in the background)."""
    with anyio.fail_after(within):
        while host.plugins[name].state is not state:  # noqa: ASYNC110 - no event to wait on
            await anyio.sleep(0.01)


async def restarted(host: PluginHost, name: str, old: int | None, within: float = 15.0) -> int:
    """Wait until ``name`` is ACTIVE again in a worker other than ``old``; its pid."""
    with anyio.fail_after(within):
        while True:
            record = host.plugins[name]
            worker = record.target
            if (
                record.state is S.ACTIVE
                and isinstance(worker, WorkerPlugin)
                and worker.pid not in (None, old)
                and worker.alive
            ):
                return worker.pid  # type: ignore[return-value]
            await anyio.sleep(0.01)


async def test_memory_past_max_memory_mb_fails_the_call_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin(tmp_path, "hog", HOG, caps=caps(tools=["hog"]))
    plugin(tmp_path, "calm", CALM, caps=caps(tools=["calm"]))
    host = make_host(
        tmp_path,
        hog={"sandbox": {"max_memory_mb": 64}},
        calm={"isolation": "in-process"},
    )
    with caplog.at_level(logging.WARNING):
        async with host:
            assert await host.tools.invoke("hog", {"mb": 16}) == 16 * 1024 * 1024
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke("hog", {"mb": 512})
            assert isinstance(failed.value.__cause__, MemoryError)
            # the host and the other plugin go on, and so does the worker
            assert await host.tools.invoke("calm") == "calm"
            assert await host.tools.invoke("hog", {"mb": 16}) == 16 * 1024 * 1024
            assert host.plugins["hog"].state is S.ACTIVE
            worker = host.plugins["hog"].target
            assert isinstance(worker, WorkerPlugin)
            limits = worker.limits
            assert limits["address_space_mb"] == pytest.approx(limits["baseline_mb"] + 64)
    # the limit is enforced, so the host does not warn that it is not
    assert not [r for r in caplog.records if "is not enforced" in r.getMessage()]
    assert children() == {}


SPIN = """
import os
from clawhost import hookimpl, tool

@tool
async def spin() -> None:
    \"\"\"Busy forever, without ever yielding to the worker's event loop.\"\"\"
    while True:
        pass

@tool
def spin_in_thread() -> None:
    \"\"\"Busy forever, on a worker thread.\"\"\"
    while True:
        pass

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@hookimpl
def activate(ctx):
    for function in (spin, spin_in_thread, where):
        ctx.register_tool(function)
"""


async def test_a_call_past_its_deadline_kills_the_worker_and_it_is_restarted(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "spin", SPIN, caps=caps(tools=["spin", "spin_in_thread", "where"]))
    host = make_host(
        tmp_path, sandbox={"max_cpu_time_secs": 1.0, **RESTART}, **bystanders(tmp_path)
    )
    async with host:
        for restarts, tool_name in enumerate(("spin", "spin_in_thread"), start=1):
            first = await host.tools.invoke("where")
            started = time.monotonic()
            async with bystanders_keep_serving(host):
                with pytest.raises(PluginTimeout) as timeout:
                    await host.tools.invoke(tool_name)
                elapsed = time.monotonic() - started
            assert 1.0 <= elapsed < 1.5, elapsed
            assert timeout.value.interrupted
            assert gone(first)  # killed and reaped: no zombie either
            second = await restarted(host, "spin", first)  # a fresh worker, after a backoff
            assert await host.tools.invoke("where") == second
            assert host.plugins["spin"].restarts == restarts
    assert children() == {}


NAPPER = """
import anyio
from clawhost import hookimpl, tool

@tool
async def nap(seconds: float) -> float:
    \"\"\"Sleep.\"\"\"
    await anyio.sleep(seconds)
    return seconds

@hookimpl
def activate(ctx):
    ctx.register_tool(nap)
"""


async def test_concurrent_calls_share_one_worker(tmp_path: Path) -> None:
    plugin(tmp_path, "napper", NAPPER, caps=caps(tools=["nap"]))
    async with make_host(tmp_path) as host:
        results: list[float] = []

        async def call() -> None:
            results.append(await host.tools.invoke("nap", {"seconds": 0.4}))

        started = time.monotonic()
        async with anyio.create_task_group() as group:
            for _ in range(4):  # max_concurrency is 4
                group.start_soon(call)
        assert results == [0.4] * 4
        assert time.monotonic() - started < 1.2  # together, not one after another

        # a caller giving up only cancels its request: the worker goes on serving
        worker = host.plugins["napper"].target
        assert isinstance(worker, WorkerPlugin)
        pid = worker.pid
        with anyio.move_on_after(0.2):
            await host.tools.invoke("nap", {"seconds": 30})
        assert await host.tools.invoke("nap", {"seconds": 0}) == 0
        assert (worker.pid, worker.alive) == (pid, True)


async def test_a_plugin_in_a_worker_hot_reloads(tmp_path: Path) -> None:
    folder = plugin(tmp_path, "calm", CALM, caps=caps(tools=["calm"]))
    async with make_host(tmp_path) as host:
        first = host.plugins["calm"].target
        assert isinstance(first, WorkerPlugin)
        assert await host.tools.invoke("calm") == "calm"
        source = next(folder.glob("*.py"))
        source.write_text(source.read_text().replace('return "calm"', 'return "calmer"'))
        await host.reload("calm")
        assert await host.tools.invoke("calm") == "calmer"
        assert first.pid is not None
        assert gone(first.pid)
    assert children() == {}


async def test_a_failed_reload_in_a_worker_leaves_the_old_worker_serving(tmp_path: Path) -> None:
    folder = plugin(tmp_path, "calm", CALM, caps=caps(tools=["calm"]))
    source = next(folder.glob("*.py"))
    good = source.read_text()
    async with make_host(tmp_path) as host:
        first = host.plugins["calm"].target
        assert isinstance(first, WorkerPlugin)
        pid = first.pid
        for broken in ("def broken(:\n", good + "\nraise RuntimeError('new version is broken')\n"):
            source.write_text(broken)
            with pytest.raises(ReloadError) as caught:
                await host.reload("calm")
            assert caught.value.stage == "activate"
            assert host.plugins["calm"].state is S.ACTIVE
            assert host.plugins["calm"].target is first
            assert first.pid == pid  # the same worker, never stopped
            assert await host.tools.invoke("calm") == "calm"
        assert "new version is broken" in str(caught.value)
        source.write_text(good.replace('return "calm"', 'return "calmer"'))
        await host.reload("calm")
        assert await host.tools.invoke("calm") == "calmer"
    assert children() == {}


async def test_a_plugin_exiting_at_import_fails_activation_with_its_status(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "quitter", "import os\nos._exit(3)\n")
    plugin(tmp_path, "calm", CALM, caps=caps(tools=["calm"]))
    async with make_host(tmp_path) as host:
        record = host.plugins["quitter"]
        assert record.state is S.FAILED
        assert record.failure is not None
        assert record.failure.stage == "activate"
        assert "exited with status 3 during import" in record.failure.reason
        assert isinstance(record.failure.error, WorkerDied)
        assert record.failure.error.returncode == 3
        assert await host.tools.invoke("calm") == "calm"
    assert children() == {}


async def test_a_worker_that_keeps_dying_is_restarted_with_a_backoff_then_given_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    code = """
import os
from clawhost import hookimpl, tool

@tool
def die(status: int) -> None:
    \"\"\"Exit at once.\"\"\"
    os._exit(status)

@hookimpl
def activate(ctx):
    ctx.register_tool(die)
"""
    plugin(tmp_path, "mortal", code, caps=caps(tools=["die"]))
    sandbox = {**RESTART, "restart_backoff_secs": 0.2, "max_restarts": 3}
    host = make_host(tmp_path, mortal={"sandbox": sandbox}, **bystanders(tmp_path))
    async with host:
        record = host.plugins["mortal"]
        downtimes: list[float] = []
        async with bystanders_keep_serving(host):
            pid = None
            for restarts in range(4):  # the first worker, then three restarts
                pid = await restarted(host, "mortal", pid)
                with pytest.raises(ToolFailed) as failed:
                    await host.tools.invoke("die", {"status": 5})
                died_at = time.monotonic()
                died = failed.value.__cause__
                assert isinstance(died, WorkerDied)
                assert "exited with status 5 during tool die" in str(died)
                await wait_for(host, "mortal", S.FAILED)
                assert record.failure is not None
                assert record.failure.stage == "run"
                assert "exited with status 5" in record.failure.reason
                assert record.restarts == restarts
                if restarts < 3:
                    await restarted(host, "mortal", pid)
                    downtimes.append(time.monotonic() - died_at)
            await anyio.sleep(2.0)  # a fourth restart would have come by now
        # 0.2 s, then 0.4 s, then 0.8 s of backoff, as the host said (each downtime is at
        # least its backoff, plus a worker's start: no upper bound on a loaded machine)
        waits = (0.2, 0.4, 0.8)
        assert all(d >= wait for d, wait in zip(downtimes, waits, strict=True)), downtimes
        said = [r.getMessage() for r in caplog.records if "starting it again in" in r.getMessage()]
        assert said == [
            f"Plugin 'mortal': starting it again in {wait:g}s (restart {n} of at most 3)"
            for n, wait in enumerate(waits, start=1)
        ]
        assert record.state is S.FAILED
        assert record.restart_at is None
        assert "not restarted again: 3 restart(s) in a row failed" in str(record.failure)
        health = await host.health_check("mortal")
        assert not health.healthy
        assert health.reason is not None
        assert "not restarted again" in health.reason
        # a reload tries it afresh
        await host.reload("mortal")
        assert host.plugins["mortal"].state is S.ACTIVE
    assert children() == {}


async def test_a_worker_that_dies_between_calls_fails_its_plugin_at_once(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "mortal", MORTAL_NAPPER, caps=caps(tools=["nap", "die"]))
    async with make_host(tmp_path, **bystanders(tmp_path)) as host:
        record = host.plugins["mortal"]
        worker = record.target
        assert isinstance(worker, WorkerPlugin)
        assert worker.pid is not None
        async with bystanders_keep_serving(host):
            os.kill(worker.pid, signal.SIGKILL)  # no call in flight: nobody asks it anything
            await wait_for(host, "mortal", S.FAILED, within=5.0)
        assert record.failure is not None
        assert record.failure.stage == "run"
        assert "killed by signal 9 (SIGKILL)" in record.failure.reason
        assert gone(worker.pid)
        # what it registered is gone with it, and the failure is what callers are told
        assert "nap" not in host.tools.names()
        with pytest.raises(PluginFailed, match=r"failed to run: .* killed by signal 9"):
            await host.tools.invoke("nap", {"seconds": 0})
        assert record.restart_at is None  # not configured to restart
        await anyio.sleep(0.5)
        assert record.state is S.FAILED
    assert children() == {}


SEGFAULT = """
import ctypes, os, time
from clawhost import hookimpl, tool

@tool
def segfault() -> None:
    \"\"\"Read address 0: a real segmentation fault, after a moment.\"\"\"
    time.sleep(0.3)
    ctypes.string_at(0)

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@hookimpl
def activate(ctx):
    ctx.register_tool(segfault)
    ctx.register_tool(where)
"""


async def test_a_worker_that_segfaults_fails_the_call_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin(tmp_path, "crasher", SEGFAULT, caps=caps(tools=["segfault", "where"]))
    # a backoff long enough to see it FAILED first
    sandbox = {**RESTART, "restart_backoff_secs": 0.5}
    async with make_host(tmp_path, crasher={"sandbox": sandbox}, **bystanders(tmp_path)) as host:
        first = await host.tools.invoke("where")
        with caplog.at_level(logging.INFO):
            async with bystanders_keep_serving(host):
                with pytest.raises(ToolFailed) as failed:
                    await host.tools.invoke("segfault")
        died = failed.value.__cause__
        assert isinstance(died, WorkerDied)
        assert died.returncode == -11
        assert "was killed by signal 11 (SIGSEGV) during tool segfault" in str(died)
        assert gone(first)
        # the worker's faulthandler dumped where it crashed into the host's log
        dump = [r.getMessage() for r in caplog.records if r.name == "clawhost.plugin.crasher"]
        assert any("Segmentation fault" in line for line in dump), dump
        # the plugin is FAILED with the reason, then restarted in a fresh worker
        await wait_for(host, "crasher", S.FAILED)
        failure = host.plugins["crasher"].failure
        assert failure is not None
        assert "killed by signal 11 (SIGSEGV)" in failure.reason
        second = await restarted(host, "crasher", first)
        assert await host.tools.invoke("where") == second != os.getpid()
    assert children() == {}


HANG = """
import os, time
from clawhost import hookimpl, tool

@tool
def hang() -> None:
    \"\"\"Sleep far past any deadline.\"\"\"
    time.sleep(300)

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@hookimpl
def activate(ctx):
    ctx.register_tool(hang)
    ctx.register_tool(where)
"""


async def test_a_call_that_hangs_is_cut_off_at_its_deadline_and_nothing_else(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "sleeper", HANG, caps=caps(tools=["hang", "where"]))
    # The deadline also bounds the worker's import: 2 s leaves room on a loaded machine.
    host = make_host(
        tmp_path,
        sleeper={"sandbox": {"max_cpu_time_secs": 2.0, **RESTART}},
        **bystanders(tmp_path),
    )
    async with host:
        first = await host.tools.invoke("where")
        assert group_members(first) == {first}  # the worker leads a process group of its own
        started = time.monotonic()
        async with bystanders_keep_serving(host):
            with pytest.raises(PluginTimeout) as timeout:
                await host.tools.invoke("hang")
            elapsed = time.monotonic() - started
        assert 2.0 <= elapsed < 3.5, elapsed
        assert timeout.value.interrupted
        assert gone(first)
        assert group_members(first) == set()
        second = await restarted(host, "sleeper", first)  # a fresh worker
        assert await host.tools.invoke("where") == second != os.getpid()
        assert host.plugins["sleeper"].restarts == 1
    assert children() == {}


MORTAL_NAPPER = """
import os
import anyio
from clawhost import hookimpl, tool

@tool
async def nap(seconds: float) -> float:
    \"\"\"Sleep.\"\"\"
    await anyio.sleep(seconds)
    return seconds

@tool
def die(status: int) -> None:
    \"\"\"Exit at once.\"\"\"
    os._exit(status)

@hookimpl
def activate(ctx):
    ctx.register_tool(nap)
    ctx.register_tool(die)
"""


async def test_a_call_in_flight_fails_at_once_when_another_call_ends_the_worker(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "mortal", MORTAL_NAPPER, caps=caps(tools=["nap", "die"]))
    # a deadline far away: the call in flight must fail because the worker died, not late
    host = make_host(
        tmp_path, mortal={"sandbox": {"max_cpu_time_secs": 30.0}}, **bystanders(tmp_path)
    )
    async with host:
        failures: list[tuple[BaseException | None, float]] = []

        async def nap() -> None:
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke("nap", {"seconds": 25})
            failures.append((failed.value.__cause__, time.monotonic()))

        async with bystanders_keep_serving(host):
            with anyio.fail_after(5):
                async with anyio.create_task_group() as group:
                    group.start_soon(nap)
                    await anyio.sleep(0.3)  # the nap is in flight in the worker
                    started = time.monotonic()
                    with pytest.raises(ToolFailed) as failed:
                        await host.tools.invoke("die", {"status": 7})
        died = failed.value.__cause__
        assert isinstance(died, WorkerDied)
        assert "exited with status 7 during tool die" in str(died)
        [(in_flight, failed_at)] = failures
        assert isinstance(in_flight, WorkerDied)
        assert in_flight.returncode == 7
        assert "exited with status 7 during tool nap" in str(in_flight)
        assert failed_at - started < 1.5
        await wait_for(host, "mortal", S.FAILED)  # not configured to restart
    assert children() == {}


class InMemory:
    @hookimpl
    def activate(self, ctx: Any) -> None:
        raise AssertionError("never imported, let alone activated")


async def test_an_in_memory_plugin_cannot_run_in_a_worker_and_is_refused(
    tmp_path: Path,
) -> None:
    config = HostConfig.from_mapping({"plugins": {"sandbox": {"isolation": "process"}}})
    async with PluginHost.test_instance(("memory", InMemory()), config=config) as host:
        record = host.plugins["memory"]
        assert record.state is S.FAILED
        assert record.failure is not None
        assert isinstance(record.failure.error, NotIsolatable)
        assert "an in-memory plugin" in record.failure.reason
        assert "runs in process isolation" in record.failure.reason
        assert host.context.registrations("memory").is_empty()
    assert children() == {}


SERVES_HTTP = """
from clawhost import hookimpl

async def app(scope, receive, send):
    raise AssertionError("never served from a worker")

@hookimpl
def activate(ctx):
    ctx.register_http_app(app)
"""


async def test_an_http_app_is_refused_in_a_worker_naming_the_plugin_and_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugin(tmp_path, "site", SERVES_HTTP, http='[plugin.http]\ndescription = "a web page"')
    with caplog.at_level(logging.WARNING, logger="clawhost"):
        async with make_host(tmp_path) as host:
            record = host.plugins["site"]
            assert record.state is S.FAILED
            assert record.failure is not None
            assert record.failure.stage == "activate"
            refused = record.failure.error
            assert isinstance(refused, NotIsolatable)
            assert (refused.plugin, refused.what) == ("site", "an HTTP app")
            assert "ASGI" in refused.why
            assert "runs in process isolation" in record.failure.reason
            assert host.context.registrations("site").is_empty()
            assert host.context.http.get("site") is None
    logged = [r.getMessage() for r in caplog.records if "'site'" in r.getMessage()]
    assert any("an HTTP app" in line for line in logged), logged
    assert children() == {}


async def test_permissions_still_apply_inside_the_worker(tmp_path: Path) -> None:
    granted = tmp_path / "data"
    granted.mkdir()
    outside = tmp_path / "elsewhere.txt"
    code = """
from clawhost import hookimpl, tool

@tool
def write(path: str) -> str:
    \"\"\"Write a file.\"\"\"
    with open(path, "w") as handle:
        handle.write("x")
    return path

@hookimpl
def activate(ctx):
    ctx.register_tool(write)
"""
    permissions = f'[plugin.permissions]\nfilesystem = ["{granted}"]'
    plugin(tmp_path, "writer", code, caps=caps(tools=["write"]), perms=permissions)
    async with make_host(tmp_path, sandbox={"fs_allowed": [str(granted)]}) as host:
        inside = str(granted / "ok.txt")
        assert await host.tools.invoke("write", {"path": inside}) == inside
        with pytest.raises(ToolFailed) as failed:
            await host.tools.invoke("write", {"path": str(outside)})
        denied = failed.value.__cause__
        assert isinstance(denied, PermissionDenied)
        assert (denied.plugin, denied.kind, denied.resource) == (
            "writer",
            "filesystem",
            str(outside),
        )
    assert not outside.exists()
    assert (granted / "ok.txt").read_text() == "x"


NOSY = """
import os, socket, subprocess
from clawhost import hookimpl, tool

@tool
def run() -> int:
    \"\"\"Run a program.\"\"\"
    return subprocess.run(["true"]).returncode

@tool
def connect(port: int) -> str:
    \"\"\"Connect to a local port.\"\"\"
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return "connected"

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@hookimpl
def activate(ctx):
    for function in (run, connect, where):
        ctx.register_tool(function)
"""


async def test_subprocess_and_network_are_denied_inside_the_worker(tmp_path: Path) -> None:
    plugin(tmp_path, "nosy", NOSY, caps=caps(tools=["run", "connect", "where"]))
    # the host would grant both; the plugin's manifest asks for neither, so it gets neither
    sandbox = {"allow_subprocess": True, "net_allowed": ["*:*"]}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        async with make_host(tmp_path, sandbox=sandbox) as host:
            granted = host.plugins["nosy"].permissions
            assert (granted.subprocess, granted.network) == (False, ())
            pid = await host.tools.invoke("where")
            for tool_name, arguments, kind, resource in (
                ("run", {}, "subprocess", "true"),
                ("connect", {"port": port}, "network", f"127.0.0.1:{port}"),
            ):
                with pytest.raises(ToolFailed) as failed:
                    await host.tools.invoke(tool_name, arguments)
                denied = failed.value.__cause__
                assert isinstance(denied, PermissionDenied)
                assert (denied.plugin, denied.kind, denied.resource) == ("nosy", kind, resource)
                assert "plugin 'nosy' may not use" in str(denied)
                # denied in the worker, whose traceback came along
                notes = getattr(denied, "__notes__", [])
                assert any("raised in the worker process of plugin 'nosy'" in n for n in notes)
            # nothing ran and nothing connected, and the worker goes on serving
            listener.setblocking(False)
            with pytest.raises(BlockingIOError):
                listener.accept()
            assert await host.tools.invoke("where") == pid
    assert children() == {}


OOPS = """
from clawhost import hookimpl, tool

class Oops(Exception):
    \"\"\"An exception class the host has never heard of.\"\"\"

@tool
def fail() -> None:
    \"\"\"Raise the plugin's own exception.\"\"\"
    raise Oops("it went wrong")

@hookimpl
def activate(ctx):
    ctx.register_tool(fail)
"""


async def test_a_plugins_own_exception_arrives_as_a_worker_error(tmp_path: Path) -> None:
    plugin(tmp_path, "oops", OOPS, caps=caps(tools=["fail"]))
    async with make_host(tmp_path) as host:
        with pytest.raises(ToolFailed) as failed:
            await host.tools.invoke("fail")
        error = failed.value.__cause__
        assert isinstance(error, WorkerError)
        module, _, name = error.type_name.rpartition(".")
        assert (error.plugin, name, error.message) == ("oops", "Oops", "it went wrong")
        assert module  # qualified by the plugin's module
        assert str(error) == f"{error.type_name}: it went wrong"
        remote = error.remote_traceback
        assert remote is not None
        assert remote.startswith("Traceback (most recent call last):")
        assert 'raise Oops("it went wrong")' in remote
        assert remote.rstrip().endswith(f"{error.type_name}: it went wrong")
        # the traceback is attached as a note too, so it shows wherever the error is printed
        assert error.__notes__ == [f"raised in the worker process of plugin 'oops':\n{remote}"]
    assert children() == {}


SPAWNER = """
import os, subprocess, time
from clawhost import hookimpl, tool

started = []

@tool
def spawn() -> list:
    \"\"\"Start a long-running program; the worker's pid and the program's.\"\"\"
    child = subprocess.Popen(["sleep", "300"])
    started.append(child)
    return [os.getpid(), child.pid]

@tool
def hang() -> None:
    \"\"\"Sleep far past any deadline.\"\"\"
    time.sleep(300)

@hookimpl
def activate(ctx):
    ctx.register_tool(spawn)
    ctx.register_tool(hang)
"""


async def test_what_a_worker_started_dies_with_it(tmp_path: Path) -> None:
    plugin(
        tmp_path,
        "spawner",
        SPAWNER,
        caps=caps(tools=["spawn", "hang"]),
        perms="[plugin.permissions]\nsubprocess = true",
    )
    # room for the import; restarted after the deadline kills it
    sandbox = {"allow_subprocess": True, "max_cpu_time_secs": 1.5, **RESTART}
    async with make_host(tmp_path, sandbox=sandbox) as host:
        # killed at a deadline
        worker, grandchild = await host.tools.invoke("spawn")
        assert not dead(grandchild)
        assert group_members(worker) == {worker, grandchild}
        with pytest.raises(PluginTimeout):
            await host.tools.invoke("hang")
        assert gone(worker)
        assert await wait_dead(grandchild), process_state(grandchild)
        await restarted(host, "spawner", worker)
        # stopped by deactivation (its input ends and it exits; its group is killed then)
        worker, grandchild = await host.tools.invoke("spawn")
        assert not dead(grandchild)
        await host.deactivate("spawner")
        assert gone(worker)
        assert await wait_dead(grandchild), process_state(grandchild)
        assert group_members(worker) == set()
    assert children() == {}


BIG = """
import os
import anyio
from clawhost import hookimpl, tool

@tool
def big(mib: int) -> str:
    \"\"\"A string of mib MiB.\"\"\"
    return "x" * (mib * 1024 * 1024)

@tool
def loud(mib: int) -> None:
    \"\"\"Raise an error whose message is mib MiB.\"\"\"
    raise ValueError("x" * (mib * 1024 * 1024))

@tool
async def nap(seconds: float) -> float:
    \"\"\"Sleep.\"\"\"
    await anyio.sleep(seconds)
    return seconds

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@tool
def size(text: str) -> int:
    \"\"\"The length of text.\"\"\"
    return len(text)

@hookimpl
def activate(ctx):
    for function in (big, loud, nap, where, size):
        ctx.register_tool(function)
"""


async def test_a_result_too_large_for_the_protocol_fails_that_call_only(tmp_path: Path) -> None:
    plugin(tmp_path, "bulky", BIG, caps=caps(tools=["big", "loud", "nap", "where", "size"]))
    limit = MAX_LINE // MIB
    oversized = limit + 6
    # a deadline far away: a worker busy encoding a large reply delays the other replies
    host = make_host(
        tmp_path, bulky={"sandbox": {"max_cpu_time_secs": 10.0}}, **bystanders(tmp_path)
    )
    async with host:
        pid = await host.tools.invoke("where")
        naps: list[float] = []

        async def nap() -> None:
            naps.append(await host.tools.invoke("nap", {"seconds": 0.3}))

        async with bystanders_keep_serving(host), anyio.create_task_group() as group:
            group.start_soon(nap)  # in flight in the same worker meanwhile
            await anyio.sleep(0.1)
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke("big", {"mib": oversized})
            error = failed.value.__cause__
            assert isinstance(error, ValueError)
            assert f"the result was {oversized}.0 MiB as JSON" in str(error)
            assert f"above the limit of {limit} MiB" in str(error)
            # an error too large to send (its text is in it three times: as its message, its
            # arguments and the last line of its traceback) is cut down to size the same way
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke("loud", {"mib": limit // 2})
            error = failed.value.__cause__
            assert isinstance(error, ValueError)
            assert str(error).startswith(f"the error (ValueError: {'x' * 200}...) was ")
            assert f"MiB as JSON, above the limit of {limit} MiB" in str(error)
            # arguments too large to send fail that call in the host, before the worker
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke("size", {"text": "x" * (oversized * MIB)})
            error = failed.value.__cause__
            assert isinstance(error, ValueError)
            assert f"the arguments of tool size were {oversized}.0 MiB as JSON" in str(error)
        assert naps == [0.3]  # the call in flight was not failed with them
        # the same worker serves on, results within the limit included
        assert len(await host.tools.invoke("big", {"mib": 1})) == MIB
        assert await host.tools.invoke("where") == pid
        worker = host.plugins["bulky"].target
        assert isinstance(worker, WorkerPlugin)
        assert (worker.pid, worker.alive) == (pid, True)
    assert children() == {}


async def test_deactivating_a_plugin_stops_its_worker(tmp_path: Path) -> None:
    plugin(tmp_path, "demo", DEMO, **DEMO_SECTIONS)
    async with make_host(tmp_path) as host:
        pid = await host.tools.invoke("where")
        await host.deactivate("demo")
        assert host.plugins["demo"].state is S.INACTIVE
        assert gone(pid)
        assert not host.tools.has("add")
        await host.activate("demo")  # and activating it again starts a new one
        assert await host.tools.invoke("where") != pid
    assert children() == {}


async def test_a_deactivate_hook_that_hangs_is_cut_off_and_the_worker_reaped(
    tmp_path: Path,
) -> None:
    code = """
import os, time
from clawhost import hookimpl, tool

@tool
def where() -> int:
    \"\"\"The worker's process id.\"\"\"
    return os.getpid()

@hookimpl
def activate(ctx):
    ctx.register_tool(where)

@hookimpl
def deactivate():
    time.sleep(60)
"""
    plugin(tmp_path, "stuck", code, caps=caps(tools=["where"]))
    async with make_host(tmp_path, sandbox={"max_cpu_time_secs": 1.0}) as host:
        pid = await host.tools.invoke("where")
        started = time.monotonic()
        await host.deactivate("stuck")
        assert time.monotonic() - started < 1.5
        record = host.plugins["stuck"]
        assert record.state is S.INACTIVE
        assert "deactivate did not finish within 1s" in record.diagnostics[-1].message
        assert host.context.registrations("stuck").is_empty()
        assert gone(pid)
    assert children() == {}


# -- configuration ----------------------------------------------------------------------------


def test_isolation_is_configured_for_all_plugins_or_one() -> None:
    config = HostConfig.from_mapping(
        {
            "plugins": {
                "sandbox": {"isolation": "process"},
                "a": {"isolation": "in-process"},
                "b": {"sandbox": {"isolation": "in-process"}},
                "c": {"enabled": True},
            }
        }
    )
    assert config.plugins.sandbox.isolation == "process"
    assert config.sandbox_for("a").isolation == "in-process"
    assert config.sandbox_for("b").isolation == "in-process"
    assert config.sandbox_for("c").isolation == "process"
    assert HostConfig().sandbox_for("x").isolation == "in-process"


def test_a_bad_isolation_value_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        HostConfig.from_mapping(
            {
                "plugins": {
                    "sandbox": {"isolation": "container"},
                    "a": {"isolation": "process", "sandbox": {"isolation": "in-process"}},
                }
            }
        )
    problems = {problem.field: problem for problem in error.value.problems}
    assert problems["plugins.sandbox.isolation"].expected == "'in-process' or 'process'"
    assert "set it in one place" in problems["plugins.a"].message
