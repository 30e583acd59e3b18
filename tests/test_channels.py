"""Supervised channels: configured instances run as background tasks, restarted with a
backoff, reported per instance, and stopped with their plugin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from clawhost import HostConfig, Message, PluginHost, PluginState, Response
from clawhost.errors import ConfigError

from ._site import directory_plugin

S = PluginState

CHANNELS = """
import anyio
from clawhost import Message, hookimpl, tool

LOG = {"opened": 0, "closed": 0, "sent": []}

class Flaky:
    \"\"\"Yields one message, then fails.\"\"\"
    def __init__(self, config):
        self.text = config.get("text", "hi")

    async def messages(self):
        LOG["opened"] += 1
        yield Message(self.text, channel="flaky")
        raise ConnectionError("the socket went away")

    async def send(self, response):
        LOG["sent"].append(response.text)

class Forever:
    \"\"\"Yields its script, then waits for more until closed.\"\"\"
    def __init__(self, config):
        self.script = list(config.get("script", []))

    async def messages(self):
        LOG["opened"] += 1
        try:
            for line in self.script:
                yield Message(line, channel="forever")
            await anyio.sleep_forever()
        finally:
            LOG["closed"] += 1

    async def send(self, response):
        LOG["sent"].append(response.text)

@tool
def log() -> dict:
    \"\"\"What the channels did.\"\"\"
    return LOG

@hookimpl
def activate(ctx):
    ctx.register_channel_factory("flaky", Flaky)
    ctx.register_channel_factory("forever", Forever)
    ctx.register_tool(log)
"""

CALM = """
from clawhost import hookimpl, tool

@tool
def calm() -> str:
    \"\"\"Always answers.\"\"\"
    return "calm"

@hookimpl
def activate(ctx):
    ctx.register_tool(calm)
"""


CAPS = '[plugin.capabilities]\nchannels = ["flaky", "forever"]\ntools = ["log"]'


def make_host(tmp_path: Path, channels: dict[str, Any]) -> PluginHost:
    directory_plugin(
        tmp_path / "plugins",
        "chan",
        CHANNELS,
        sections={"caps": CAPS},
    )
    calm_caps = {"caps": '[plugin.capabilities]\ntools = ["calm"]'}
    directory_plugin(tmp_path / "plugins", "calm", CALM, sections=calm_caps)
    config = HostConfig.from_mapping(
        {"plugins": {"chan": {"channels": channels}}}, base_dir=tmp_path
    )
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def status_of(host: PluginHost, instance: str) -> dict[str, Any]:
    [row] = [row for row in host.channel_status() if row["instance"] == instance]
    return row


async def wait_state(host: PluginHost, instance: str, state: str, within: float = 10.0) -> None:
    with anyio.fail_after(within):
        while status_of(host, instance)["state"] != state:  # noqa: ASYNC110 - a snapshot
            await anyio.sleep(0.005)


async def echo(message: Message) -> Response:
    return Response(f"echo: {message.text}", message_id=message.id)


async def test_a_crashing_channel_backs_off_then_gives_up_and_nothing_else_stops(
    tmp_path: Path,
) -> None:
    settings = {
        "channel": "flaky",
        "restart_backoff_secs": 0.2,
        "restart_backoff_max_secs": 60,
        "max_restarts": 3,
        "config": {"text": "ping"},
    }
    host = make_host(tmp_path, {"main": settings})
    host.channel_handler = echo
    async with host:
        seen: list[tuple[str, int]] = []
        with anyio.fail_after(15):
            while (row := status_of(host, "main"))["state"] != "failed":
                if row["state"] == "backoff" and (row["state"], row["restarts"]) not in seen:
                    seen.append((row["state"], row["restarts"]))
                    delay = row["restart_at"] - row["since"]
                    # 0.2 s, doubling: 0.2, 0.4, 0.8
                    assert delay == pytest.approx(0.2 * 2 ** (row["restarts"] - 1), abs=0.05)
                    assert row["last_error"] == "ConnectionError: the socket went away"
                assert await host.tools.invoke("calm") == "calm"
                await anyio.sleep(0.005)
        assert seen == [("backoff", 1), ("backoff", 2), ("backoff", 3)]
        row = status_of(host, "main")
        assert (row["plugin"], row["channel"], row["restarts"]) == ("chan", "flaky", 3)
        assert row["last_error"] == "ConnectionError: the socket went away"
        assert row["restart_at"] is None
        log = await host.tools.invoke("log")
        assert log["opened"] == 4  # the first run and three restarts
        assert log["sent"] == ["echo: ping"] * 4  # each run's message was answered
        assert host.plugins["chan"].state is S.ACTIVE


async def test_a_channel_runs_until_its_plugin_is_deactivated(tmp_path: Path) -> None:
    host = make_host(tmp_path, {"forever": {"config": {"script": ["a", "b"]}}})
    responded: list[str] = []
    host.channel_handler = echo
    async with host:
        host.events.subscribe("app", "on_response_sent", lambda r: responded.append(r.text))
        await wait_state(host, "forever", "running")
        with anyio.fail_after(5):
            while len(responded) < 2:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        log = await host.tools.invoke("log")
        assert log["sent"] == ["echo: a", "echo: b"]
        assert responded == ["echo: a", "echo: b"]
        await host.deactivate("chan")
        # stopped before the plugin's registrations went away, and its iterator closed
        assert status_of(host, "forever")["state"] == "stopped"
        assert log["closed"] == 1  # the plugin's module state, read through the dict
        await host.activate("chan")  # started again with the plugin
        await wait_state(host, "forever", "running")
    assert status_of(host, "forever")["state"] == "stopped"


async def test_without_a_handler_messages_go_to_events_and_the_pipeline(tmp_path: Path) -> None:
    host = make_host(tmp_path, {"forever": {"config": {"script": ["hello"]}}})
    received: list[str] = []
    async with host:
        host.events.subscribe("app", "on_message_received", lambda m: received.append(m.text))
        with anyio.fail_after(5):
            while not received:  # noqa: ASYNC110
                await anyio.sleep(0.005)
        assert received == ["hello"]
        assert (await host.tools.invoke("log"))["sent"] == []


async def test_a_channel_the_plugin_does_not_offer_fails_naming_the_setting(
    tmp_path: Path,
) -> None:
    host = make_host(tmp_path, {"chat": {"channel": "irc"}})
    async with host:
        await wait_state(host, "chat", "failed")
        row = status_of(host, "chat")
        assert row["last_error"] == (
            "plugin 'chan' registered no channel 'irc' ([plugins.chan.channels.chat] channel)"
        )
        assert row["restarts"] == 0
        assert host.plugins["chan"].state is S.ACTIVE


async def test_the_status_page_reports_channel_instances(tmp_path: Path) -> None:
    host = make_host(tmp_path, {"forever": {}})
    async with host:
        await wait_state(host, "forever", "running")
        transport = httpx.ASGITransport(app=host.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            status = (await http.get("/status.json")).json()
            page = (await http.get("/")).text
    [row] = status["channels"]
    assert (row["plugin"], row["instance"], row["state"]) == ("chan", "forever", "running")
    assert "forever" in page


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"x": {"restart_backoff_secs": 0}}, "plugins.chan.channels.x.restart_backoff_secs"),
        ({"x": {"max_restarts": 0}}, "plugins.chan.channels.x.max_restarts"),
        ({"x": {"unknown": 1}}, "plugins.chan.channels.x.unknown"),
        ({"bad name!": {}}, "plugins.chan.channels"),
    ],
)
def test_channel_settings_are_checked(table: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        HostConfig.from_mapping({"plugins": {"chan": {"channels": table}}})
    assert expected in str(caught.value)


async def test_a_gateway_answers_supervised_channels(tmp_path: Path) -> None:
    from clawhost.gateway import Gateway, GatewaySettings

    provider = """
from clawhost import hookimpl

class Upper:
    async def reply(self, message, tools):
        return message.text.upper()

@hookimpl
def activate(ctx):
    ctx.register_provider("upper", Upper())
"""
    directory_plugin(
        tmp_path / "plugins",
        "upper",
        provider,
        sections={"caps": '[plugin.capabilities]\nproviders = ["upper"]'},
    )
    host = make_host(tmp_path, {"forever": {"config": {"script": ["quiet please"]}}})
    Gateway(host, GatewaySettings("forever", "upper")).attach()
    async with host:
        with anyio.fail_after(5):
            while not (await host.tools.invoke("log"))["sent"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert (await host.tools.invoke("log"))["sent"] == ["QUIET PLEASE"]


async def test_a_reload_stops_the_channel_and_starts_it_with_the_new_code(
    tmp_path: Path,
) -> None:
    host = make_host(tmp_path, {"forever": {"config": {"script": ["one"]}}})
    host.channel_handler = echo
    async with host:
        await wait_state(host, "forever", "running")
        with anyio.fail_after(5):
            while (await host.tools.invoke("log"))["sent"] != ["echo: one"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        [module_file] = (tmp_path / "plugins").glob("chan-*/dirplugin_chan_*.py")
        module_file.write_text(
            module_file.read_text().replace(
                'Message(line, channel="forever")', 'Message(line.upper(), channel="forever")'
            ),
            "utf-8",
        )
        await host.reload("chan")
        await wait_state(host, "forever", "running")
        with anyio.fail_after(5):
            while (await host.tools.invoke("log"))["sent"] != ["echo: ONE"]:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # a fresh module: its LOG starts empty
        assert (await host.tools.invoke("log"))["opened"] == 1
