"""Process isolation, what crosses the boundary as proxies: providers (both ways), channels,
and the host's tools handed to a provider; and the example plugins serving a whole gateway
from three worker processes."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, Message, PluginHost, PluginState, Response
from clawhost.errors import WorkerError
from clawhost.gateway import Gateway, GatewaySettings
from clawhost.testing import is_error, make_test_host
from clawhost.worker.isolation import RemoteProvider, WorkerPlugin
from clawhost.worker.wire import Record

from ._site import directory_plugin
from .conftest import EXAMPLE_PROJECTS, REPO
from .test_isolation import children

S = PluginState


def make_host(tmp_path: Path, **plugins: dict[str, Any]) -> PluginHost:
    table: dict[str, Any] = {
        "sandbox": {"max_cpu_time_secs": 5.0, "isolation": "process"},
        **plugins,
    }
    config = HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path)
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


def plugin(tmp_path: Path, name: str, code: str, **kinds: list[str]) -> Path:
    lines = [f"{kind} = {names!r}".replace("'", '"') for kind, names in kinds.items()]
    sections = {"caps": "[plugin.capabilities]\n" + "\n".join(lines)} if kinds else {}
    return directory_plugin(tmp_path / "plugins", name, code, sections=sections)


GAZETTE = """
import os
from dataclasses import dataclass
from clawhost import Message, hookimpl, tool

class Unknown(LookupError):
    pass

@dataclass
class Place:
    name: str
    latitude: float

class Gazette:
    def lookup(self, name: str) -> Place:
        if name == "Atlantis":
            raise Unknown(f"no such place: {name}")
        return Place(name.title(), 51.5)

    async def shout(self, message: Message) -> Message:
        assert isinstance(message, Message), type(message)
        return message.replace(text=message.text.upper())

    async def ask_tools(self, tools) -> list:
        return [tools.names(), await tools.call("double", {"x": 21})]

    def pid(self) -> int:
        return os.getpid()

    def _secret(self) -> str:
        return "private"

@hookimpl
def activate(ctx):
    ctx.register_provider("gazette", Gazette())
"""

DOUBLER = """
from clawhost import hookimpl, tool

@tool
def double(x: int) -> int:
    \"\"\"Twice x.\"\"\"
    return 2 * x

@hookimpl
def activate(ctx):
    ctx.register_tool(double)
"""


async def test_a_provider_in_a_worker_is_a_proxy_of_its_methods(tmp_path: Path) -> None:
    plugin(tmp_path, "gazette", GAZETTE, providers=["gazette"])
    plugin(tmp_path, "doubler", DOUBLER, tools=["double"])
    host = make_host(tmp_path, doubler={"isolation": "in-process"})
    async with host:
        gazette = host.providers.get("gazette")
        assert isinstance(gazette, RemoteProvider)
        assert dir(gazette) == ["ask_tools", "lookup", "pid", "shout"]
        # a sync method is a coroutine function on the host's side; a dataclass comes back
        # as a Record: a dict whose keys are attributes too
        place = await gazette.lookup("paris")
        assert isinstance(place, Record)
        assert (place.name, place["latitude"]) == ("Paris", 51.5)
        assert await gazette.pid() not in (None, os.getpid())
        # a Message crosses as itself, both ways
        shouted = await gazette.shout(Message("hi there", sender="ann"))
        assert isinstance(shouted, Message)
        assert (shouted.text, shouted.sender) == ("HI THERE", "ann")
        # the host's tools, handed to the provider, reach the host
        names, doubled = await gazette.ask_tools(host.tools)
        assert (names, doubled) == (["double"], 42)
        # the plugin's own error, as a WorkerError with its type's name
        with pytest.raises(WorkerError) as caught:
            await gazette.lookup("Atlantis")
        assert caught.value.type_name.endswith(".Unknown")
        assert "no such place: Atlantis" in str(caught.value)
        # only its public methods
        for missing in ("_secret", "nothing"):
            with pytest.raises(AttributeError, match=repr(missing)):
                getattr(gazette, missing)
    assert children() == {}


ATLAS_USER = """
import os
from clawhost import hookimpl, tool

STATE = {}

@tool
async def where(place: str) -> dict:
    \"\"\"Look a place up through the host's gazette provider.\"\"\"
    found = await STATE["gazette"].lookup(place)
    return {"name": found.name, "latitude": found.latitude, "pid": os.getpid()}

@hookimpl
def activate(ctx):
    STATE["gazette"] = ctx.providers.get("gazette")
    ctx.register_tool(where)
"""


def gazette_and_atlas(tmp_path: Path, atlas: str) -> None:
    """The gazette plugin (a provider), and atlas, whose ``where`` tool uses it."""
    plugin(tmp_path, "gazette", GAZETTE, providers=["gazette"])
    deps = '[plugin.dependencies]\ngazette = ">=1.0"'
    directory_plugin(
        tmp_path / "plugins",
        "atlas",
        atlas,
        sections={"caps": '[plugin.capabilities]\ntools = ["where"]', "deps": deps},
    )


async def test_a_plugin_in_a_worker_uses_a_provider_of_the_host(tmp_path: Path) -> None:
    gazette_and_atlas(tmp_path, ATLAS_USER)
    for gazette_mode in ("in-process", "process"):  # an object in the host, or a proxy
        host = make_host(tmp_path, gazette={"isolation": gazette_mode})
        async with host:
            found = await host.tools.invoke("where", {"place": "rome"})
            assert (found["name"], found["latitude"]) == ("Rome", 51.5)
            assert found["pid"] != os.getpid()
            worker = host.plugins["atlas"].target
            assert isinstance(worker, WorkerPlugin)
            assert found["pid"] == worker.pid
    assert children() == {}


TICKER = """
import anyio
from clawhost import Message, hookimpl, tool

CLOSED = []
SENT = []

class Ticker:
    def __init__(self, config):
        self.count = int(config["count"])
        self.pause = float(config.get("pause", 0))

    async def messages(self):
        try:
            for number in range(self.count):
                await anyio.sleep(self.pause)
                yield Message(f"tick {number}", channel="ticker")
        finally:
            CLOSED.append(self.count)

    async def send(self, response):
        SENT.append(response.text)

@tool
def report() -> dict:
    \"\"\"What the channels saw.\"\"\"
    return {"closed": CLOSED, "sent": SENT}

@hookimpl
def activate(ctx):
    ctx.register_channel_factory("ticker", Ticker)
    ctx.register_tool(report)
"""


async def test_a_channel_in_a_worker_streams_messages_past_the_call_deadline(
    tmp_path: Path,
) -> None:
    plugin(tmp_path, "ticker", TICKER, channels=["ticker"], tools=["report"])
    # every call has 1.5 s; waiting for a message is not a call, and may take longer
    host = make_host(tmp_path, ticker={"sandbox": {"max_wall_time_secs": 1.5}})
    async with host:
        channel = await host.channels.create("ticker", {"count": 2, "pause": 2.0})
        started = time.monotonic()
        texts = [message.text async for message in channel.messages()]
        assert texts == ["tick 0", "tick 1"]
        assert time.monotonic() - started >= 4.0
        await channel.send(Response("tock"))
        # a caller that stops early (and closes its iterator, as async generators need)
        # closes the channel's iterator in the worker
        other = await host.channels.create("ticker", {"count": 5})
        async with contextlib.aclosing(other.messages()) as stream:
            async for message in stream:
                assert message.text == "tick 0"
                break
        assert await host.tools.invoke("report") == {"closed": [2, 5], "sent": ["tock"]}
        assert host.plugins["ticker"].state is S.ACTIVE
    assert children() == {}


def _fake_weather() -> Any:
    spec = importlib.util.spec_from_file_location(
        "fake_weather", REPO / "examples" / "gateway" / "fake_weather.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_the_example_plugins_serve_a_gateway_from_worker_processes(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    script = ["hello", "What is the weather in London?", "where is Tokyo", "tools"]
    with _fake_weather().serve() as url:
        host = make_test_host(
            *EXAMPLE_PROJECTS,
            isolation="process",
            config={"weather": {"api_key": "demo-key", "base_url": url}},
        )
        settings = GatewaySettings("console", "rulebot", {"script": script})
        async with host:
            pids = {name: host.plugins[name].target.pid for name in host.plugins}  # type: ignore[union-attr]
            assert len(set(pids.values()) | {os.getpid()}) == 4, pids
            gateway = Gateway(host, settings)
            with anyio.fail_after(60):
                await gateway.run()
    replies = [exchange.response.text for exchange in gateway.exchanges if exchange.response]
    assert replies[0].startswith("Hello")
    assert replies[1].startswith("It is ")
    assert replies[1].endswith(" in London.")
    assert replies[2] == "Tokyo (JP) is at 35.68, 139.65."
    assert replies[3].startswith("I can use: ")
    assert "get_weather" in replies[3]
    # the provider's tool calls went through the host: recorded on the gateway's side
    assert [call[0] for call in gateway.exchanges[1].tool_calls] == ["get_weather"]
    assert children() == {}


def test_is_error_knows_a_plugins_error_from_a_worker() -> None:
    class PlaceNotFound(LookupError):
        pass

    name = f"{PlaceNotFound.__module__}.{PlaceNotFound.__qualname__}"
    assert is_error(PlaceNotFound("x"), PlaceNotFound)
    assert is_error(WorkerError("geo", name, "x"), PlaceNotFound)
    assert not is_error(WorkerError("geo", name + "Not", "x"), PlaceNotFound)
    assert not is_error(KeyError("x"), PlaceNotFound)
    assert not is_error(None, PlaceNotFound)


ATLAS_IN_PROCESS = """
from clawhost import hookimpl, tool

STATE = {}

@tool
async def where(place: str) -> float:
    \"\"\"Latitude of a place, from the gazette provider this plugin was given.\"\"\"
    return (await STATE["gazette"].lookup(place)).latitude

@hookimpl
def activate(ctx):
    STATE["gazette"] = ctx.providers.get("gazette")
    ctx.register_tool(where)
"""


async def test_dependents_go_down_with_a_dead_worker_and_come_back_after_its_restart(
    tmp_path: Path,
) -> None:
    gazette_and_atlas(tmp_path, ATLAS_IN_PROCESS)
    restart = {"restart": True, "restart_backoff_secs": 0.5}
    host = make_host(tmp_path, atlas={"isolation": "in-process"}, gazette={"sandbox": restart})
    async with host:
        assert await host.tools.invoke("where", {"place": "oslo"}) == 51.5
        gazette, atlas = host.plugins["gazette"], host.plugins["atlas"]
        worker = gazette.target
        assert isinstance(worker, WorkerPlugin)
        assert worker.pid is not None
        os.kill(worker.pid, 9)
        with anyio.fail_after(5):
            while gazette.state is not S.FAILED:  # noqa: ASYNC110 - the host supervises
                await anyio.sleep(0.01)
        # its dependent held its provider: deactivated first, not left with a dead proxy
        assert atlas.state is S.INACTIVE
        assert gazette.restart_at is not None
        assert "gazette" not in host.providers.names()
        with anyio.fail_after(15):
            while atlas.state is not S.ACTIVE:  # noqa: ASYNC110
                await anyio.sleep(0.01)
        assert gazette.state is S.ACTIVE
        assert gazette.restarts == 1
        assert gazette.restart_at is None
        assert await host.tools.invoke("where", {"place": "oslo"}) == 51.5
    assert children() == {}


def test_the_restart_backoff_doubles_up_to_its_maximum_and_gives_up() -> None:
    from clawhost.core.backoff import Backoff, RestartPolicy

    policy = RestartPolicy(initial=5, maximum=300, max_tries=10)
    delays = [policy.delay(attempt) for attempt in range(1, 11)]
    assert delays == [5, 10, 20, 40, 80, 160, *[300] * 4]
    backoff = Backoff(RestartPolicy(initial=1, maximum=60, max_tries=2))
    assert [backoff.failed(), backoff.failed(), backoff.failed()] == [1, 2, None]
    assert (backoff.attempts, backoff.total) == (2, 2)
    # a run as long as the maximum counts as recovered
    backoff = Backoff(RestartPolicy(initial=0.01, maximum=0.05, max_tries=1))
    assert backoff.failed() == 0.01
    backoff.started()
    time.sleep(0.01)
    assert backoff.failed() is None  # a short run: the one try is used up
    backoff.started()
    time.sleep(0.06)
    assert backoff.failed() == 0.01  # a long run: counted afresh
    assert backoff.total == 2


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("restart", "yes", "true or false"),
        ("restart_backoff_secs", 0, "a number of seconds > 0"),
        ("restart_backoff_max_secs", -1, "a number of seconds > 0"),
        ("max_restarts", 0, "an integer >= 1"),
    ],
)
def test_restart_settings_are_checked(key: str, value: object, expected: str) -> None:
    from clawhost.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        HostConfig.from_mapping({"plugins": {"gazette": {"sandbox": {key: value}}}})
    assert f"plugins.gazette.sandbox.{key}" in str(caught.value)
    assert expected in str(caught.value)


ATLAS_NOTES = """
from clawhost import hookimpl, tool

STATE = {}

@tool
async def where(place: str) -> dict:
    \"\"\"What the worker sees of an error the host's gazette raised.\"\"\"
    try:
        await STATE["gazette"].lookup(place)
    except Exception as exc:
        return {"error": str(exc), "notes": list(getattr(exc, "__notes__", []))}
    return {}

@hookimpl
def activate(ctx):
    STATE["gazette"] = ctx.providers.get("gazette")
    ctx.register_tool(where)
"""


async def test_an_error_raised_in_the_host_says_so_in_the_worker(tmp_path: Path) -> None:
    gazette_and_atlas(tmp_path, ATLAS_NOTES)
    async with make_host(tmp_path, gazette={"isolation": "in-process"}) as host:
        seen = await host.tools.invoke("where", {"place": "Atlantis"})
    assert "no such place: Atlantis" in seen["error"]
    (note,) = seen["notes"]
    assert note.startswith("raised in the host process:")
    assert "the host'" not in note
    assert "worker process" not in note
    assert children() == {}
