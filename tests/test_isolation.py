"""Process isolation: a plugin in a worker process of its own, where limits are real.

Every test runs real worker processes (``python -m clawhost._worker``) under real
resource limits; nothing of clawhost is mocked.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, Message, PluginHost, PluginState
from clawhost._isolation import WorkerPlugin
from clawhost.errors import (
    ConfigError,
    NotIsolatable,
    PermissionDenied,
    PluginTimeout,
    ToolArgumentsInvalid,
    ToolFailed,
    WorkerDied,
)

from ._site import directory_plugin

S = PluginState


def make_host(
    tmp_path: Path, *, sandbox: dict[str, Any] | None = None, **plugins: dict[str, Any]
) -> PluginHost:
    """A host whose plugins run in worker processes unless a plugin's table says not."""
    table: dict[str, Any] = {
        "sandbox": {"max_cpu_time_secs": 2.0, "isolation": "process", **(sandbox or {})},
        **plugins,
    }
    config = HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path)
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], cache=False)


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


async def test_a_call_past_its_deadline_kills_the_worker_and_the_next_starts_one(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "spin", SPIN, caps=caps(tools=["spin", "spin_in_thread", "where"]))
    host = make_host(tmp_path, sandbox={"max_cpu_time_secs": 1.0})
    async with host:
        for tool_name in ("spin", "spin_in_thread"):
            first = await host.tools.invoke("where")
            started = time.monotonic()
            with pytest.raises(PluginTimeout) as timeout:
                await host.tools.invoke(tool_name)
            elapsed = time.monotonic() - started
            assert 1.0 <= elapsed < 1.5, elapsed
            assert timeout.value.interrupted
            assert gone(first)  # killed and reaped: no zombie either
            second = await host.tools.invoke("where")  # a fresh worker
            assert second != first
            assert host.plugins["spin"].state is S.ACTIVE
    assert children() == {}


async def test_concurrent_calls_share_one_worker(tmp_path: Path) -> None:
    code = """
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
    plugin(tmp_path, "napper", code, caps=caps(tools=["nap"]))
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
        assert (worker.pid, worker.restarts) == (pid, 0)


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


async def test_a_worker_that_keeps_dying_is_restarted_then_given_up(tmp_path: Path) -> None:
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
    async with make_host(tmp_path) as host:
        for _ in range(4):  # the first worker, then three restarts
            with pytest.raises(ToolFailed) as failed:
                await host.tools.invoke("die", {"status": 5})
            died = failed.value.__cause__
            assert isinstance(died, WorkerDied)
            assert "exited with status 5 during tool die" in str(died)
        with pytest.raises(ToolFailed, match="not restarted: it was restarted 3 times"):
            await host.tools.invoke("die", {"status": 5})
        health = await host.health_check("mortal")
        assert not health.healthy
        assert health.reason is not None
        assert "not restarted" in health.reason
        worker = host.plugins["mortal"].target
        assert isinstance(worker, WorkerPlugin)
        assert worker.restarts == 3
    assert children() == {}


PROVIDER = """
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    ctx.register_provider("geocoder", object())
"""


async def test_a_provider_cannot_cross_the_boundary_and_is_refused(tmp_path: Path) -> None:
    plugin(tmp_path, "declares", PROVIDER, caps=caps(providers=["geocoder"]))
    plugin(tmp_path, "registers", PROVIDER)
    async with make_host(tmp_path) as host:
        for name in ("declares", "registers"):
            record = host.plugins[name]
            assert record.state is S.FAILED
            assert record.failure is not None
            assert isinstance(record.failure.error, NotIsolatable)
            assert "provider 'geocoder'" in record.failure.reason
            assert "runs in process isolation" in record.failure.reason
            assert host.context.registrations(name).is_empty()
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
