"""The reference plugin: one of every surface, in the fewest lines that do something real."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio

from clawhost import Message, PluginContext, Response, hookimpl, tool


class Ticker:
    """The ``ticker`` channel: ``count`` messages, ``pause_secs`` apart; replies are kept."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.count = int(config.get("count", 3))
        self.pause = float(config.get("pause_secs", 0.1))
        self.text = str(config.get("text", "tick"))
        self.replies: list[str] = []

    async def messages(self) -> AsyncIterator[Message]:
        for number in range(self.count):
            await anyio.sleep(self.pause)
            yield Message(f"{self.text} {number}", sender="ticker", channel="ticker")

    async def send(self, response: Response) -> None:
        self.replies.append(response.text)


class OpsPlugin:
    """Counts what goes through it, and shows it over HTTP and admin commands."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.counters: dict[str, int] = {"messages": 0, "http": 0}
        self.greeting = "tick"
        self._metric: Any = None

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        self.greeting = ctx.config["greeting"]
        self._metric = ctx.meter.create_counter("ops.messages")
        ctx.register_tool(self.ops_uptime)
        ctx.register_pipeline_stage("count", self.count, order=0)
        ctx.register_provider("ops", self)
        ctx.register_channel_factory(
            "ticker", lambda config: Ticker({"text": self.greeting, **config})
        )
        ctx.register_http_app(self.http)
        ctx.register_admin_command("reset", self.reset)
        ctx.register_admin_command("counters", self.read_counters)

    @hookimpl
    def health_check(self, ctx: PluginContext) -> bool:
        return True

    @tool
    def ops_uptime(self) -> float:
        """Seconds since the plugin was imported."""
        return round(time.monotonic() - self.started, 3)

    def count(self, message: Message) -> Message:
        self.counters["messages"] += 1
        self._metric.add(1)
        return message

    async def reply(self, message: Message, tools: Any) -> str:
        """As a provider: answers with the message count."""
        return f"{message.text}: message {self.counters['messages']}"

    def reset(self, name: str = "messages") -> dict[str, int]:
        self.counters[name] = 0
        return dict(self.counters)

    def read_counters(self) -> dict[str, int]:
        return dict(self.counters)

    async def http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """GET /plugins/ops/ (and anything below): the counters as JSON."""
        self.counters["http"] += 1
        route = scope["path"].removeprefix(scope["root_path"]) or "/"
        body = json.dumps({"route": route, "counters": self.counters}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
