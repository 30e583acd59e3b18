"""The rulebot plugin: its provider's rules, its stages, its console channel, conformance."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from clawdesk_plugin_rulebot import ConsoleChannel, RuleBot, redact, trim

from clawhost import Message, Response
from clawhost.errors import ToolNotFound

PROJECT = Path(__file__).resolve().parents[1]


class FakeTools:
    """Stands in for the gateway's ToolCaller: records calls, answers from a table."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[str]:
        return sorted(self.answers)

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((name, arguments))
        if name not in self.answers:
            raise ToolNotFound(name, tuple(self.answers))
        return self.answers[name]


async def test_a_weather_question_calls_get_weather() -> None:
    tools = FakeTools(
        {
            "get_weather": {
                "location": "Oslo",
                "temperature": 3.5,
                "conditions": "snow",
                "units": "metric",
            }
        }
    )

    text = await RuleBot("hi").reply(Message("What's the weather in Oslo?"), tools)

    assert tools.calls == [("get_weather", {"location": "Oslo"})]
    assert text == "It is 3.5°C with snow in Oslo."


async def test_a_forecast_question_passes_the_number_of_days() -> None:
    forecast = {
        "location": "Rome",
        "days": [{"date": "2026-01-01", "min": 4, "max": 12, "conditions": "sun"}],
    }
    tools = FakeTools({"get_forecast": forecast})

    await RuleBot("hi").reply(Message("forecast for Rome for 1 day"), tools)

    assert tools.calls == [("get_forecast", {"location": "Rome", "days": 1})]


async def test_a_missing_tool_is_explained_not_fatal() -> None:
    text = await RuleBot("hi").reply(Message("where is Lima"), FakeTools({}))

    assert text.startswith("I could not do that: tool not found: 'geocode'")


async def test_anything_else_is_echoed_and_hello_greets() -> None:
    bot = RuleBot("Hello there!")

    assert await bot.reply(Message("la la"), FakeTools({})) == "You said: la la"
    assert await bot.reply(Message("hello"), FakeTools({})) == "Hello there!"


def test_trim_collapses_whitespace_and_drops_empty_messages() -> None:
    assert trim(Message("  a \n  b ")).text == "a b"  # type: ignore[union-attr]
    assert trim(Message(" \t ")) is None


def test_redact_hides_mail_addresses_keys_and_configured_patterns() -> None:
    message = Message("mail a.b@example.org, key sk-live_abcdef123456, ticket ACME-9999")

    hidden = redact(message, (re.compile(r"ACME-\d+"),))

    assert hidden.text == "mail [email], key [secret], ticket [redacted]"


async def test_the_console_channel_plays_a_script(capsys) -> None:
    channel = ConsoleChannel({"script": ["one", "two"], "sender": "ann"})

    received = [message async for message in channel.messages()]
    await channel.send(Response("done"))

    assert [(m.text, m.sender, m.channel) for m in received] == [
        ("one", "ann", "console"),
        ("two", "ann", "console"),
    ]
    assert capsys.readouterr().out.splitlines() == ["you> one", "you> two", "bot> done"]


async def test_the_plugin_registers_its_stages_in_order(clawhost_host) -> None:
    host = await clawhost_host(PROJECT, config={"rulebot": {"redact_patterns": ["secret-\\d+"]}})

    assert host.pipeline.names() == ["trim", "redact"]
    assert (await host.pipeline.run(Message("  my  secret-42  "))).text == "my [redacted]"  # type: ignore[union-attr]


async def test_the_plugin_conforms(clawhost_check) -> None:
    report = await clawhost_check(PROJECT)

    assert report.ok, report
