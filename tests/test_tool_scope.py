"""Tool arguments are validated, and results serialized, as plugin code: inside the
plugin's sandbox scope and deadline (issue 21).

A plugin's pydantic model can carry validators and serializers of its own; a validator
that blocks forever is stopped at the tool's deadline like a blocking tool body, and one
that opens a socket is judged by the plugin's permissions, not the host's.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from clawhost import HostConfig, PluginHost
from clawhost.errors import PermissionDenied, PluginTimeout, ToolArgumentsInvalid, ToolFailed

from ._site import directory_plugin

pytestmark = pytest.mark.anyio

LIMIT = 0.3

CODE = """
import socket
import time

from pydantic import BaseModel, field_serializer, field_validator
from clawhost import hookimpl, tool


def block_forever():
    while True:  # Python code between short sleeps: interruptible
        time.sleep(0.01)


def phone_home():
    socket.create_connection(("192.0.2.1", 9), timeout=1).close()


class Query(BaseModel):
    text: str

    @field_validator("text")
    @classmethod
    def check(cls, value: str) -> str:
        if value == "block":
            block_forever()
        if value == "network":
            phone_home()
        if value == "bad":
            raise ValueError("not a word")
        return value.upper()


class Answer(BaseModel):
    text: str

    @field_serializer("text")
    def show(self, value: str) -> str:
        if value == "block":
            block_forever()
        if value == "network":
            phone_home()
        return value.lower()


@tool
def look_up(query: Query) -> str:
    \"\"\"In a worker thread.\"\"\"
    return query.text


@tool(thread=False)
def look_up_inline(query: Query) -> str:
    \"\"\"Inline on the loop.\"\"\"
    return query.text


@tool
async def look_up_async(query: Query) -> str:
    \"\"\"A coroutine.\"\"\"
    return query.text


@tool
def answer(text: str) -> Answer:
    \"\"\"A result with a serializer.\"\"\"
    return Answer(text=text)


@tool
async def answer_async(text: str) -> Answer:
    \"\"\"The same, async.\"\"\"
    return Answer(text=text)


@tool
async def ping() -> str:
    \"\"\"Answer at once.\"\"\"
    return "pong"


@hookimpl
def activate(ctx):
    for function in (look_up, look_up_inline, look_up_async, answer, answer_async, ping):
        ctx.register_tool(function)
"""

TOOLS = """[plugin.capabilities]
tools = ["look_up", "look_up_inline", "look_up_async", "answer", "answer_async", "ping"]
"""
LOOK_UPS = ["look_up", "look_up_inline", "look_up_async"]
ANSWERS = ["answer", "answer_async"]


def make_host(tmp_path: Path) -> PluginHost:
    directory_plugin(tmp_path / "plugins", "finder", CODE, sections={"c": TOOLS})
    config = HostConfig.from_mapping(
        {
            "plugins": {
                "sandbox": {"net_allowed": ["*:*"]},  # the host may; the plugin asks for none
                "finder": {"sandbox": {"max_wall_time_secs": LIMIT}},
            }
        },
        base_dir=tmp_path,
    )
    return PluginHost(config=config, dirs=[tmp_path / "plugins"], path=[], cache=False)


@pytest.mark.parametrize("name", LOOK_UPS)
async def test_arguments_are_validated_by_the_plugins_model(tmp_path: Path, name: str) -> None:
    async with make_host(tmp_path) as host:
        assert await host.tools.invoke(name, {"query": {"text": "ada"}}) == "ADA"
        with pytest.raises(ToolArgumentsInvalid) as caught:
            await host.tools.invoke(name, {"query": {"text": "bad"}})
        assert caught.value.tool == name
        assert "not a word" in str(caught.value)


@pytest.mark.parametrize("name", LOOK_UPS)
async def test_a_validator_that_blocks_forever_is_stopped_at_the_deadline(
    tmp_path: Path, name: str
) -> None:
    async with make_host(tmp_path) as host:
        started = time.monotonic()
        with anyio.fail_after(30), pytest.raises(PluginTimeout) as caught:
            await host.tools.invoke(name, {"query": {"text": "block"}})
        assert time.monotonic() - started < LIMIT + 5
        assert caught.value.plugin == "finder"
        assert caught.value.operation == f"tool {name}"
        assert caught.value.interrupted
        assert str(caught.value) == f"plugin 'finder': tool {name} did not finish within 0.3s"
        with anyio.fail_after(10):  # the host serves its other tools, and this one again
            assert await host.tools.invoke("ping") == "pong"
            assert await host.tools.invoke(name, {"query": {"text": "ok"}}) == "OK"


@pytest.mark.parametrize("name", LOOK_UPS)
async def test_a_validator_is_judged_by_the_plugins_permissions(tmp_path: Path, name: str) -> None:
    async with make_host(tmp_path) as host:
        with anyio.fail_after(30), pytest.raises(ToolFailed) as caught:
            await host.tools.invoke(name, {"query": {"text": "network"}})
        denied = caught.value.__cause__
        assert isinstance(denied, PermissionDenied)
        assert (denied.plugin, denied.kind, denied.resource) == ("finder", "network", "192.0.2.1:9")


@pytest.mark.parametrize("name", ANSWERS)
async def test_results_are_serialized_inside_the_scope_and_deadline(
    tmp_path: Path, name: str
) -> None:
    async with make_host(tmp_path) as host:
        assert await host.tools.invoke_jsonable(name, {"text": "ADA"}) == {"text": "ada"}
        # invoke gives the object itself: serializing it is the caller's business
        returned = await host.tools.invoke(name, {"text": "block"})
        assert type(returned).__name__ == "Answer"
        with anyio.fail_after(30), pytest.raises(PluginTimeout) as caught:
            await host.tools.invoke_jsonable(name, {"text": "block"})
        assert (caught.value.plugin, caught.value.operation) == ("finder", f"tool {name}")
        with anyio.fail_after(30), pytest.raises(ToolFailed) as failed:
            await host.tools.invoke_jsonable(name, text="network")
        denied = failed.value.__cause__
        assert isinstance(denied, PermissionDenied)
        assert denied.plugin == "finder"
        assert await host.tools.invoke("ping") == "pong"


async def test_call_monitors_see_the_arguments_as_given(tmp_path: Path) -> None:
    from clawhost.testing import HookRecorder

    async with make_host(tmp_path) as host:
        recorder = HookRecorder().attach(host)
        assert await host.tools.invoke("look_up", {"query": {"text": "ada"}}) == "ADA"
        call = recorder.tool_calls("look_up")[0]
        assert (call.kwargs, call.result, call.ok) == ({"query": {"text": "ada"}}, "ADA", True)
