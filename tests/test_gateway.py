"""The gateway: channel -> pipeline -> provider (with tools) -> channel, and the demo."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clawhost import Message, PluginContext, PluginHost, Response, hookimpl, tool
from clawhost.gateway import Gateway, GatewaySettings, ToolCaller

from .conftest import REPO, make_venv, pip


class ListChannel:
    def __init__(self, config: dict[str, Any]) -> None:
        self.lines = list(config["lines"])
        self.sent: list[str] = SENT

    async def messages(self) -> AsyncIterator[Message]:
        for line in self.lines:
            yield Message(line, channel="list")

    async def send(self, response: Response) -> None:
        self.sent.append(response.text)


SENT: list[str] = []


class Echo:
    async def reply(self, message: Message, tools: ToolCaller) -> str:
        if message.text.startswith("double "):
            return str(await tools.call("double", {"x": int(message.text.split()[1])}))
        return f"echo: {message.text}"


@tool
def double(x: int) -> int:
    """Double a number."""
    return 2 * x


class Everything:
    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        ctx.register_channel_factory("list", ListChannel)
        ctx.register_provider("echo", Echo())
        ctx.register_tool(double)
        ctx.register_pipeline_stage("no_spam", lambda m: None if "spam" in m.text else m)


@pytest.fixture(autouse=True)
def _clear_sent() -> None:
    SENT.clear()


async def test_messages_flow_through_pipeline_provider_and_tools() -> None:
    settings = GatewaySettings("list", "echo", {"lines": ["hi", "double 21", "buy spam"]})
    received: list[str] = []
    async with PluginHost.test_instance(("everything", Everything())) as host:
        host.events.subscribe("app", "on_response_sent", lambda r: received.append(r.text))
        gateway = Gateway(host, settings)
        await gateway.run()

    assert SENT == ["echo: hi", "42"]
    assert received == SENT
    assert [e.dropped_by for e in gateway.exchanges] == [None, None, "no_spam"]
    assert gateway.exchanges[1].tool_calls == [("double", {"x": 21}, 42)]


async def test_a_failing_provider_gives_an_error_response_not_a_crash() -> None:
    class Broken:
        async def reply(self, message: Message, tools: ToolCaller) -> str:
            raise RuntimeError("model offline")

    class Plugin:
        @hookimpl
        def activate(self, ctx: PluginContext) -> None:
            ctx.register_provider("broken", Broken())

    async with PluginHost.test_instance(("p", Plugin())) as host:
        exchange = await Gateway(host, GatewaySettings("none", "broken")).handle_text("hello")

    assert exchange.error == "RuntimeError: model offline"
    assert exchange.response is not None
    assert "model offline" in exchange.response.text


async def test_a_failing_channel_is_restarted_with_a_backoff() -> None:
    attempts: list[float] = []

    class Crashing:
        def __init__(self, config: dict[str, Any]) -> None:
            attempts.append(time.monotonic())

        async def messages(self) -> AsyncIterator[Message]:
            raise ConnectionError("socket closed")
            yield  # pragma: no cover - makes this an async generator

        async def send(self, response: Response) -> None: ...

    class Plugin:
        @hookimpl
        def activate(self, ctx: PluginContext) -> None:
            ctx.register_channel_factory("crashing", Crashing)

    async with PluginHost.test_instance(("p", Plugin())) as host:
        with pytest.raises(ConnectionError):
            await Gateway(host, GatewaySettings("crashing", "none")).run(restart_limit=2)

    assert len(attempts) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.45
    assert gaps[1] >= 0.95  # doubled


def test_gateway_settings_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="no \\[gateway\\] table"):
        GatewaySettings.from_config({})
    with pytest.raises(ValueError, match=r"gateway\.provider: required"):
        GatewaySettings.from_config({"gateway": {"channel": "x"}})
    with pytest.raises(ValueError, match=r"gateway\.colour: unknown key"):
        GatewaySettings.from_config({"gateway": {"channel": "x", "provider": "y", "colour": 1}})


@pytest.mark.slow
def test_the_demo_runs_from_a_clean_clone(wheelhouse: Path, tmp_path: Path) -> None:
    """What the README's first Quickstart command does after setting up: install the
    example plugins as wheels and run the demo gateway."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    python = make_venv(tmp_path / "venv")
    pip("install", "--no-deps", *sorted(wheelhouse.glob("*.whl")), python=python)

    out = subprocess.run(
        [str(python), "demo.py"],
        cwd=clone / "examples" / "gateway",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    for expected in (
        "[INFO] Discovered 6 plugin(s)",
        "Plugin 'geo-next' failed to resolve: dependency conflict",
        "before any import: flaky_tool, geocode, get_forecast, get_weather, greet",
        "Activating 'weather' v1.2.0",  # lazily, on the first weather question
        "bot> It is ",
        "bot> Tokyo (JP) is at 35.68, 139.65.",
        "bot> Hello, Ada!",
        "[secret]",
        "[email]",
        "dropped by the 'trim' stage",
        "Plugin 'flaky' failed to activate: ConnectionError",
        "...and the rest still answers: It is ",
        "Deactivating 'weather' v1.2.0",
        "Done.",
    ):
        assert expected in text, f"{expected!r} missing from the demo's output:\n{text}"
    assert text.index("you> What is the weather in London?") < text.index("Activating 'weather'")
