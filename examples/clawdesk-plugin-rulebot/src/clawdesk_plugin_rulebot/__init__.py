"""An offline, rule-based responder for ClawDesk: a provider, two stages and a channel."""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import anyio.to_thread

from clawhost import Message, PluginContext, Response, hookimpl
from clawhost.errors import ToolError

__all__ = ["ConsoleChannel", "RuleBot", "RuleBotPlugin", "redact", "trim"]

_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]+\b")
_KEYLIKE = re.compile(
    r"\b(?:sk|pk|key|token)[-_][A-Za-z0-9_-]{8,}\b|\b[0-9a-f]{32,}\b", re.IGNORECASE
)


def trim(message: Message) -> Message | None:
    """Collapse whitespace; drop messages with nothing left."""
    text = " ".join(message.text.split())
    return message.replace(text=text) if text else None


def redact(message: Message, extra: tuple[re.Pattern[str], ...] = ()) -> Message:
    """Hide e-mail addresses, key-looking tokens and configured patterns."""
    text = _EMAIL.sub("[email]", message.text)
    text = _KEYLIKE.sub("[secret]", text)
    for pattern in extra:
        text = pattern.sub("[redacted]", text)
    return message.replace(text=text)


class RuleBot:
    """The ``rulebot`` provider: answers with rules, calling tools where a rule says so."""

    RULES: tuple[tuple[re.Pattern[str], str], ...] = (
        (
            re.compile(r"\b(?:weather|temperature)\s+(?:in|for|at)\s+(?P<place>[\w ,.'-]+)", re.I),
            "weather",
        ),
        (
            re.compile(
                r"\bforecast\s+(?:in|for)\s+(?P<place>[\w .'-]+?)"
                r"(?:,?\s+for\s+(?P<days>\d)\s+days?)?\s*[?.!]*$",
                re.I,
            ),
            "forecast",
        ),
        (re.compile(r"\bwhere\s+is\s+(?P<place>[\w ,.'-]+)", re.I), "where"),
        (re.compile(r"\bgreet\s+(?P<place>[\w .'-]+)", re.I), "greet"),
        (re.compile(r"^\s*(?:tools|what can you do)\b", re.I), "tools"),
        (re.compile(r"^\s*(?:hello|hi|help)\b", re.I), "hello"),
    )

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    async def reply(self, message: Message, tools: Any) -> str:
        for pattern, intent in self.RULES:
            match = pattern.search(message.text)
            if match is None:
                continue
            place = (match.groupdict().get("place") or "").strip(" ?.!")
            try:
                return await getattr(self, f"_{intent}")(tools, place, match)
            except ToolError as exc:
                return f"I could not do that: {str(exc).splitlines()[0]}"
        return f"You said: {message.text}"

    async def _weather(self, tools: Any, place: str, match: re.Match[str]) -> str:
        weather = await tools.call("get_weather", {"location": place})
        unit = "°C" if weather["units"] == "metric" else "°F"
        where = weather["location"]
        return f"It is {weather['temperature']}{unit} with {weather['conditions']} in {where}."

    async def _forecast(self, tools: Any, place: str, match: re.Match[str]) -> str:
        days = int(match.group("days") or 3)
        forecast = await tools.call("get_forecast", {"location": place, "days": days})
        parts = [
            f"{day['date']}: {day['min']}-{day['max']}, {day['conditions']}"
            for day in forecast["days"]
        ]
        return f"Forecast for {forecast['location']}: " + "; ".join(parts)

    async def _where(self, tools: Any, place: str, match: re.Match[str]) -> str:
        found = await tools.call("geocode", {"place": place})
        country = f" ({found['country']})" if found.get("country") else ""
        return f"{found['name']}{country} is at {found['latitude']:.2f}, {found['longitude']:.2f}."

    async def _greet(self, tools: Any, place: str, match: re.Match[str]) -> str:
        return str(await tools.call("greet", {"name": place}))

    async def _tools(self, tools: Any, place: str, match: re.Match[str]) -> str:
        names = tools.names()
        return "I can use: " + ", ".join(names) if names else "I have no tools yet."

    async def _hello(self, tools: Any, place: str, match: re.Match[str]) -> str:
        return self.greeting


class ConsoleChannel:
    """The ``console`` channel: stdin lines (or a scripted list) in, printed responses out."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.script = [str(line) for line in config.get("script", [])]
        self.pause = float(config.get("pause_secs", 0.0))
        self.prompt = str(config.get("prompt", "you> "))
        self.sender = str(config.get("sender", "user"))

    async def messages(self) -> AsyncIterator[Message]:
        if self.script:
            for line in self.script:
                print(f"{self.prompt}{line}", flush=True)
                yield Message(line, sender=self.sender, channel="console")
                await anyio.sleep(self.pause)
            return
        while True:
            line = await anyio.to_thread.run_sync(_read_line, self.prompt, abandon_on_cancel=True)
            if line is None:
                return
            yield Message(line, sender=self.sender, channel="console")

    async def send(self, response: Response) -> None:
        print(f"bot> {response.text}", flush=True)


def _read_line(prompt: str) -> str | None:
    sys.stdout.write(prompt)
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line.rstrip("\n") if line else None


class RuleBotPlugin:
    """Registers the provider, the stages and the channel."""

    def __init__(self) -> None:
        self.seen = 0

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        patterns = tuple(re.compile(text) for text in ctx.config["redact_patterns"])
        ctx.register_provider("rulebot", RuleBot(ctx.config["greeting"]))
        ctx.register_pipeline_stage("trim", trim, order=10)
        ctx.register_pipeline_stage("redact", lambda message: redact(message, patterns), order=20)
        ctx.register_channel_factory("console", ConsoleChannel)

    @hookimpl
    def on_message_received(self, message: Message) -> None:
        self.seen += 1
