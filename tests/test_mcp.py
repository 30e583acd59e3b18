"""``clawhost mcp``: a real MCP server over stdio, driven by the MCP SDK's own client.

Every test spawns ``python -m clawhost mcp --config <tmp config>`` as a subprocess, with
real directory plugins written into ``tmp_path``, and talks to it with
``mcp.client.stdio.stdio_client`` and ``ClientSession``.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.subscriptions import ToolsListChanged, listen

from clawhost import PluginContext, PluginHost, hookimpl, tool
from clawhost.surfaces.mcp import McpBridge

from ._cli import invoke, offline_env

#: Generous: a loaded 2-core machine starts the server (and imports the SDK) slowly.
TIMEOUT = 120

CALC = """
from typing import Annotated

from pydantic import Field

from clawhost import hookimpl, tool

@tool
def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    print("add was called")  # stdout: must never reach the MCP client
    return a + b

@tool
def forecast(city: str, days: Annotated[int, Field(ge=1, le=7)] = 3) -> dict:
    \"\"\"The forecast for a city.\"\"\"
    return {"city": city, "days": days, "sky": "clear"}

@tool
def boom() -> str:
    \"\"\"Always fails.\"\"\"
    raise RuntimeError("kaboom")

@hookimpl
def activate(ctx):
    print("calc activating")  # stdout again, before any protocol traffic
    for t in (add, forecast, boom):
        ctx.register_tool(t)
"""

SLEEPY = """
import anyio

from clawhost import hookimpl, tool

@tool
async def nap(seconds: float = 600) -> str:
    \"\"\"Sleep, far longer than the plugin's deadline.\"\"\"
    await anyio.sleep(seconds)
    return "rested"

@hookimpl
def activate(ctx):
    ctx.register_tool(nap)
"""

GREETER = """
from clawhost import hookimpl, tool

@tool
def greet(name: str) -> str:
    \"\"\"Greet someone.\"\"\"
    return "{greeting}, " + name

{extra}

@hookimpl
def activate(ctx):
    ctx.register_tool(greet)
    {register}
"""

MUL = """
@tool
def mul(a: int, b: int) -> int:
    \"\"\"Multiply two integers.\"\"\"
    return a * b
"""


def write_plugin(
    root: Path, name: str, code: str, tools: list[str], version: str = "1.0.0"
) -> Path:
    folder = root / "plugins" / name
    folder.mkdir(parents=True, exist_ok=True)
    module = f"{name}_mcp_plugin"
    listed = ", ".join(f'"{tool}"' for tool in tools)
    (folder / "plugin.toml").write_text(
        f'[plugin]\nname = "{name}"\nversion = "{version}"\nentry = "{module}"\n\n'
        f"[plugin.capabilities]\ntools = [{listed}]\n",
        "utf-8",
    )
    (folder / f"{module}.py").write_text(textwrap.dedent(code), "utf-8")
    return folder


def write_greeter(root: Path, greeting: str, *, with_mul: bool, version: str) -> None:
    code = GREETER.format(
        greeting=greeting,
        extra=MUL if with_mul else "",
        register="ctx.register_tool(mul)" if with_mul else "",
    )
    write_plugin(root, "greeter", code, ["greet", "mul"] if with_mul else ["greet"], version)


def write_config(root: Path, plugins: str = "", extra: str = "") -> Path:
    config = root / "config.toml"
    config.write_text(f'[plugins]\ndirs = ["./plugins"]\n{plugins}\n{extra}', "utf-8")
    return config


@pytest.fixture
def calc(tmp_path: Path) -> Path:
    """A config with the calc plugin, and the sleepy one whose calls end after 1 s."""
    write_plugin(tmp_path, "calc", CALC, ["add", "forecast", "boom"])
    write_plugin(tmp_path, "sleepy", SLEEPY, ["nap"])
    return write_config(tmp_path, extra="[plugins.sleepy.sandbox]\nmax_wall_time_secs = 1\n")


Handler = Callable[[Any], Awaitable[None]]


def server_command(config: Path, *more: str) -> list[str]:
    return ["-m", "clawhost", "mcp", "--config", os.fspath(config), *more]


def server_env() -> dict[str, str]:
    return {
        "CLAWHOST_CACHE_DIR": os.environ["CLAWHOST_CACHE_DIR"],
        "PYTHONDONTWRITEBYTECODE": "1",
    }


@asynccontextmanager
async def connect(
    config: Path, *, handler: Handler | None = None, era: str = "handshake"
) -> AsyncIterator[ClientSession]:
    """A ClientSession to a ``clawhost mcp`` subprocess; its stderr goes to server.log."""
    parameters = StdioServerParameters(
        command=sys.executable,
        args=server_command(config),
        env=server_env(),
        cwd=config.parent,
    )
    with (config.parent / "server.log").open("w", encoding="utf-8") as errlog:
        async with (
            stdio_client(parameters, errlog=errlog) as (read, write),
            ClientSession(read, write, read_timeout_seconds=TIMEOUT, message_handler=handler) as s,
        ):
            if era == "handshake":
                await s.initialize()
            else:
                await s.discover()
            yield s


def server_log(config: Path) -> str:
    return (config.parent / "server.log").read_text("utf-8")


def text_of(result: types.CallToolResult) -> str:
    (block,) = result.content
    assert isinstance(block, types.TextContent)
    return block.text


class Notifications:
    """A message_handler that records what the server sent, and transport errors."""

    def __init__(self) -> None:
        self.tools_changed = 0
        self.changed = anyio.Event()
        self.errors: list[Exception] = []

    async def __call__(self, message: Any) -> None:
        if isinstance(message, Exception):
            self.errors.append(message)
        elif isinstance(message, types.ToolListChangedNotification):
            self.tools_changed += 1
            self.changed.set()

    async def wait(self) -> None:
        with anyio.fail_after(TIMEOUT):
            await self.changed.wait()
        self.changed = anyio.Event()


async def test_it_lists_every_tool_with_its_schema_from_the_registry(calc: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(calc) as session:
            listed = await session.list_tools()
            info = session.initialize_result

    tools = {tool.name: tool for tool in listed.tools}
    assert sorted(tools) == ["add", "boom", "forecast", "nap"]
    assert tools["add"].description == "Add two integers."
    assert tools["add"].input_schema == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }
    days = tools["forecast"].input_schema["properties"]["days"]
    assert days == {"type": "integer", "minimum": 1, "maximum": 7, "default": 3}
    assert info is not None
    assert info.server_info.name == "clawhost"
    assert info.capabilities.tools is not None
    assert info.capabilities.tools.list_changed is True


async def test_a_call_returns_the_tools_result(calc: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(calc) as session:
            added = await session.call_tool("add", {"a": 2, "b": 40})
            forecast = await session.call_tool("forecast", {"city": "Oslo"})

    assert not added.is_error
    assert text_of(added) == "42"
    assert not forecast.is_error
    assert forecast.structured_content == {"city": "Oslo", "days": 3, "sky": "clear"}
    assert '"city": "Oslo"' in text_of(forecast)


async def test_bad_arguments_are_an_error_result_naming_the_field(calc: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(calc) as session:
            missing = await session.call_tool("add", {"a": 1})
            wrong = await session.call_tool("forecast", {"city": "Oslo", "days": 9})
            unknown = await session.call_tool("add", {"a": 1, "b": 2, "c": 3})

    assert missing.is_error
    assert "invalid arguments for tool 'add'" in text_of(missing)
    assert "b: required argument is missing" in text_of(missing)
    assert wrong.is_error
    assert "days: input should be less than or equal to 7" in text_of(wrong)
    assert unknown.is_error
    assert "c: unknown argument" in text_of(unknown)


async def test_a_tool_that_raises_is_an_error_result_and_the_server_goes_on(calc: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(calc) as session:
            failed = await session.call_tool("boom", {})
            gone = await session.call_tool("no_such_tool", {})
            after = await session.call_tool("add", {"a": 1, "b": 1})

    assert failed.is_error
    assert text_of(failed) == "tool 'boom' (plugin 'calc') failed: RuntimeError: kaboom"
    assert gone.is_error
    assert "tool not found: 'no_such_tool'" in text_of(gone)
    assert not after.is_error
    assert text_of(after) == "2"
    assert "MCP call of tool 'boom' failed" in server_log(calc)


async def test_the_hosts_deadline_cuts_off_a_blocking_tool(calc: Path) -> None:
    with anyio.fail_after(TIMEOUT):
        async with connect(calc) as session:
            cut = await session.call_tool("nap", {})
            after = await session.call_tool("add", {"a": 3, "b": 4})

    assert cut.is_error
    assert text_of(cut) == "plugin 'sleepy': tool nap did not finish within 1s"
    assert not after.is_error
    assert text_of(after) == "7"


async def test_plugin_output_on_stdout_never_reaches_the_client(calc: Path) -> None:
    notes = Notifications()
    with anyio.fail_after(TIMEOUT):
        async with connect(calc, handler=notes) as session:
            result = await session.call_tool("add", {"a": 1, "b": 2})
            await session.send_ping()

    assert text_of(result) == "3"
    assert notes.errors == []
    log = server_log(calc)
    assert "calc activating" in log
    assert "add was called" in log
    assert "[INFO] MCP server ready on stdio: 4 tool(s)" in log


async def test_a_lazy_plugin_is_activated_by_its_first_call(tmp_path: Path) -> None:
    write_greeter(tmp_path, "Hello", with_mul=False, version="1.0.0")
    config = write_config(tmp_path, plugins="lazy_activation = true")
    notes = Notifications()
    with anyio.fail_after(TIMEOUT):
        async with connect(config, handler=notes) as session:
            (before,) = (await session.list_tools()).tools
            assert "Activating 'greeter'" not in server_log(config)
            greeted = await session.call_tool("greet", {"name": "Ada"})
            await notes.wait()  # its schema is known now
            (after,) = (await session.list_tools()).tools

    assert before.name == "greet"
    assert before.input_schema == {"type": "object"}
    assert "activated on its first call" in (before.description or "")
    assert text_of(greeted) == "Hello, Ada"
    assert after.input_schema["properties"] == {"name": {"type": "string"}}
    assert after.description == "Greet someone."


@pytest.mark.parametrize("era", ["handshake", "modern"])
async def test_a_hot_reload_changes_the_tools_and_tells_the_client(
    tmp_path: Path, era: str
) -> None:
    write_greeter(tmp_path, "Hello", with_mul=False, version="1.0.0")
    config = write_config(tmp_path, plugins="hot_reload = true\nwatch_interval_secs = 0.2")
    notes = Notifications()

    async def names(session: ClientSession) -> list[str]:
        return [tool.name for tool in (await session.list_tools()).tools]

    with anyio.fail_after(TIMEOUT):
        async with connect(config, handler=notes, era=era) as session:
            assert await names(session) == ["greet"]
            # As a client should: re-list on every notification (one may come mid-reload,
            # while the plugin is down) until the new tool is there.
            if era == "handshake":
                write_greeter(tmp_path, "Hi", with_mul=True, version="1.1.0")
                await notes.wait()
                while (listed := await names(session)) != ["greet", "mul"]:
                    await notes.wait()
            else:
                async with listen(session, tools_list_changed=True) as subscription:
                    write_greeter(tmp_path, "Hi", with_mul=True, version="1.1.0")
                    async for event in subscription:
                        assert isinstance(event, ToolsListChanged)
                        if (listed := await names(session)) == ["greet", "mul"]:
                            break
                assert notes.tools_changed >= 1  # the events reach message_handler too
            greeted = await session.call_tool("greet", {"name": "Ada"})
            multiplied = await session.call_tool("mul", {"a": 6, "b": 7})

    assert listed == ["greet", "mul"]
    assert text_of(greeted) == "Hi, Ada"
    assert text_of(multiplied) == "42"
    assert "[INFO] Activating 'greeter' v1.1.0" in server_log(config)


class _Server:
    """``clawhost mcp`` as a bare subprocess, its stdin held open, its stderr collected."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *server_command(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=config.parent,
            env=offline_env(**server_env()),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never logged; got {self.seen}")

    def finish(self) -> tuple[int, str]:
        code = self.process.wait(timeout=TIMEOUT)
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        self._reader.join(timeout=TIMEOUT)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code, out


@pytest.mark.parametrize("how", ["sigterm", "sigint", "stdin closed"])
def test_it_stops_cleanly_on_a_signal_or_when_the_client_leaves(calc: Path, how: str) -> None:
    server = _Server(calc)
    server.wait_for("MCP server ready")

    if how == "stdin closed":
        assert server.process.stdin is not None
        server.process.stdin.close()
        why = "[INFO] MCP client disconnected"
    else:  # the client keeps stdin open: the signal alone must end the server
        signum = signal.SIGTERM if how == "sigterm" else signal.SIGINT
        server.process.send_signal(signum)
        why = f"[INFO] Received {signum.name}, stopping"
    code, out = server.finish()

    assert code == 0, server.seen
    assert why in server.seen
    assert out == ""  # nothing was asked, so nothing was said; and no stray print
    assert any(line.startswith("[INFO] Deactivating 'calc'") for line in server.seen)
    assert server.seen[-1] == "[INFO] MCP server stopped", server.seen
    assert not any("Traceback" in line for line in server.seen), server.seen


def test_without_the_extra_it_says_how_to_get_it(calc: Path) -> None:
    script = (
        "import sys; sys.modules['mcp'] = None\n"
        "from clawhost.__main__ import main\n"
        f"main({server_command(calc)[2:]!r})\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=offline_env(**server_env()),
        check=False,
    )

    assert done.returncode == 1, done.stderr
    assert "pip install 'clawhost[mcp]'" in done.stderr
    assert done.stderr.startswith("Error: the MCP server needs the MCP Python SDK")
    assert done.stdout == ""


def test_importing_clawhost_never_imports_the_sdk() -> None:
    script = (
        "import sys, clawhost, clawhost.cli.app, clawhost.surfaces.mcp\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mcp', 'mcp_types')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == "[]"


def test_the_command_is_listed_and_documents_itself() -> None:
    top = invoke("--help")
    own = invoke("mcp", "--help")

    assert top.exit_code == 0
    assert "mcp " in top.output
    assert own.exit_code == 0, own.output
    assert "Serve every plugin's tools to an MCP client over stdio" in own.output
    for option in ("--config", "--log-level", "--name"):
        assert option in own.output


@dataclass
class Reading:
    station: str
    celsius: float


@tool
def odd(x: int, /) -> int:
    """A positional-only parameter: no schema can name it."""
    return x


@tool
def reading(station: str) -> Reading:
    """A dataclass result."""
    return Reading(station, 21.5)


@tool
def readings() -> list[Reading]:
    """A list result."""
    return [Reading("a", 1.0), Reading("b", 2.0)]


class Weather:
    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        for registered in (odd, reading, readings):
            ctx.register_tool(registered)


async def test_the_bridge_in_process_converts_results_and_skips_unschemable_tools(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with PluginHost.test_instance(("weather", Weather())) as host:
        bridge = McpBridge(host)
        listed = [listed.name for listed in bridge.tools()]
        one = await bridge.call("reading", {"station": "Oslo"})
        many = await bridge.call("readings")

    assert listed == ["reading", "readings"]
    assert "Tool 'odd' of plugin 'weather' is not listed: TypeError" in caplog.text
    assert one.structured_content == {"station": "Oslo", "celsius": 21.5}
    assert many.structured_content is None  # structuredContent is for objects only
    assert text_of(many) == '[{"station": "a", "celsius": 1.0}, {"station": "b", "celsius": 2.0}]'
