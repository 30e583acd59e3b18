"""HostContext and PluginContext: owned registrations, declared capabilities, events, stages."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from clawhost import HostContext, Manifest, Message, tool
from clawhost.errors import NotRegistered, RegistrationConflict, UndeclaredCapability


@tool
def ping() -> str:
    """Answer pong."""
    return "pong"


def declaring(**capabilities: list[str]) -> Manifest:
    return Manifest.model_validate(
        {"name": "declared", "version": "1.0.0", "capabilities": capabilities}
    )


def test_every_registration_has_an_owner_and_removal_takes_all_of_it() -> None:
    host = HostContext.test_context()
    plugin = host.plugin_context("everything")
    plugin.register_tool(ping)
    plugin.register_channel_factory("console", lambda config: object())
    plugin.register_pipeline_stage("trim", lambda message: message)
    plugin.register_provider("echo", object())
    plugin.on_message_received(lambda message: None)

    before = host.registrations("everything")
    removed = host.remove_owner("everything")

    assert removed == before
    assert before.tools == ("ping",)
    assert before.channels == ("console",)
    assert before.pipeline_stages == ("trim",)
    assert before.providers == ("echo",)
    assert before.events == ("on_message_received",)
    assert host.registrations("everything").is_empty()
    assert not host.tool_registry.has("ping")


def test_registering_what_the_manifest_does_not_declare_is_refused() -> None:
    host = HostContext.test_context()
    plugin = host.plugin_context("declared", manifest=declaring(tools=["other"]))

    with pytest.raises(UndeclaredCapability) as caught:
        plugin.register_tool(ping)

    assert (caught.value.plugin, caught.value.kind, caught.value.name) == (
        "declared",
        "tool",
        "ping",
    )
    assert caught.value.declared == ("other",)
    assert "[plugin.capabilities]" in str(caught.value)
    assert not host.tools.has("ping")


@pytest.mark.parametrize(
    ("kind", "register"),
    [
        ("channel", lambda ctx: ctx.register_channel_factory("sms", lambda config: None)),
        (
            "pipeline_stage",
            lambda ctx: ctx.register_pipeline_stage("filter", lambda message: message),
        ),
        ("provider", lambda ctx: ctx.register_provider("llm", object())),
    ],
)
def test_every_capability_kind_is_checked_against_the_manifest(kind: str, register: Any) -> None:
    plugin = HostContext.test_context().plugin_context("declared", manifest=declaring())

    with pytest.raises(UndeclaredCapability) as caught:
        register(plugin)

    assert caught.value.kind == kind


def test_two_plugins_claiming_one_tool_is_a_conflict_not_an_overwrite() -> None:
    host = HostContext.test_context()
    host.plugin_context("first").register_tool(ping)

    with pytest.raises(RegistrationConflict) as caught:
        host.plugin_context("second").register_tool(ping)

    assert (caught.value.owner, caught.value.claimant) == ("first", "second")
    assert host.tools.owner_of("ping") == "first"


def test_providers_and_channels_are_looked_up_by_name() -> None:
    host = HostContext.test_context()
    provider = object()
    host.plugin_context("p").register_provider("geocoder", provider)

    assert host.providers.get("geocoder") is provider
    with pytest.raises(NotRegistered) as caught:
        host.channels.get("nowhere")
    assert caught.value.kind == "channel"


async def test_channel_factories_build_channels_from_config() -> None:
    host = HostContext.test_context()
    host.plugin_context("p").register_channel_factory(
        "console", lambda config: ("console", config["prompt"])
    )

    assert await host.channels.create("console", {"prompt": "> "}) == ("console", "> ")


async def test_broadcast_calls_every_handler_even_after_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = HostContext.test_context()
    seen: list[str] = []

    async def first(message: Message) -> None:
        seen.append("first")

    def broken(message: Message) -> None:
        raise ValueError("handler bug")

    def last(message: Message) -> None:
        seen.append("last")

    host.plugin_context("a").on_message_received(first)
    host.plugin_context("b").on_message_received(broken)
    host.plugin_context("c").on_message_received(last)

    with caplog.at_level(logging.ERROR, logger="clawhost.events"):
        report = await host.events.dispatch("on_message_received", message=Message("hi"))

    assert seen == ["first", "last"]
    assert report.handlers == 3
    assert [(failure.plugin, str(failure.error)) for failure in report.failures] == [
        ("b", "handler bug")
    ]
    assert "plugin 'b': on_message_received handler failed: ValueError: handler bug" in caplog.text


async def test_handlers_may_take_payload_fields_by_name() -> None:
    host = HostContext.test_context()
    calls: list[tuple[str, float]] = []
    host.plugin_context("audit").on(
        "on_tool_called", lambda tool, duration: calls.append((tool, duration))
    )

    await host.events.dispatch(
        "on_tool_called", tool="t", arguments={}, result=1, error=None, duration=0.5
    )

    assert calls == [("t", 0.5)]


def test_a_handler_asking_for_fields_the_event_lacks_is_refused() -> None:
    host = HostContext.test_context()

    with pytest.raises(TypeError, match="keyword arguments among message"):
        host.plugin_context("x").on("on_message_received", lambda message, colour: None)


async def test_pipeline_stages_run_in_order_and_transform() -> None:
    host = HostContext.test_context()
    plugin = host.plugin_context("text")
    plugin.register_pipeline_stage("exclaim", lambda m: m.replace(text=m.text + "!"), order=20)
    plugin.register_pipeline_stage("upper", lambda m: m.replace(text=m.text.upper()), order=10)

    result = await host.pipeline.run(Message("hello"))

    assert host.pipeline.names() == ["upper", "exclaim"]
    assert result is not None
    assert result.text == "HELLO!"


async def test_a_stage_may_drop_a_message() -> None:
    host = HostContext.test_context()

    class Filter:
        async def process(self, message: Message) -> Message | None:
            return None if "spam" in message.text else message

    host.plugin_context("mod").register_pipeline_stage("no_spam", Filter())

    outcome = await host.pipeline.process(Message("buy spam now"))
    kept = await host.pipeline.run(Message("hello"))

    assert outcome.message is None
    assert outcome.dropped_by == "no_spam"
    assert kept is not None


async def test_a_failing_stage_drops_by_default_or_is_skipped_when_asked() -> None:
    host = HostContext.test_context()

    def broken(message: Message) -> Message:
        raise RuntimeError("stage bug")

    host.plugin_context("a").register_pipeline_stage("strict", broken, order=1)
    outcome = await host.pipeline.process(Message("x"))
    assert outcome.dropped_by == "strict"
    assert isinstance(outcome.error, RuntimeError)

    host.remove_owner("a")
    host.plugin_context("b").register_pipeline_stage("lenient", broken, on_error="skip")
    message = Message("y")
    assert await host.pipeline.run(message) == message


async def test_cleanups_are_handed_back_last_first() -> None:
    plugin = HostContext.test_context().plugin_context("p")
    order: list[int] = []
    plugin.add_cleanup(lambda: order.append(1))
    plugin.add_cleanup(lambda: order.append(2))

    for cleanup in plugin._take_cleanups():
        cleanup()

    assert order == [2, 1]
