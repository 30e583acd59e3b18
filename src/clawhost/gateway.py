"""A small gateway: messages in through a channel, through the pipeline and a provider (which
may call tools), and responses out through the channel. What ``clawhost gateway`` runs.

The contracts are deliberately small, so a plugin can offer either side:

* a **channel factory** (``ctx.register_channel_factory(name, factory)``) builds a channel
  from its config mapping; a channel has ``async def messages()`` (an async iterator of
  ``Message``) and ``async def send(response)``;
* a **provider** (``ctx.register_provider(name, provider)``) has
  ``async def reply(message, tools) -> str``, where ``tools`` lets it list the tool schemas
  and call tools (``await tools.call(name, arguments)``), whatever model sits behind it.

Each message: ``on_message_received`` is broadcast, the pipeline runs (a stage may drop the
message), the provider replies (calling tools as it sees fit), the response goes back out
and ``on_response_sent`` is broadcast. A channel that fails is restarted with a backoff
(0.5 s doubling to 30 s); a message whose handling fails gets an error response and the
gateway goes on.

Configure it in ``config.toml``:

    [gateway]
    channel = "console"
    provider = "rulebot"
    [gateway.channel_config]
    prompt = "> "
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from clawhost.core.messages import Message, Response
from clawhost.errors import ClawhostError, NotRegistered, ToolError
from clawhost.runtime.toolcaller import ToolCaller

if TYPE_CHECKING:
    from clawhost.host.host import PluginHost

__all__ = ["Channel", "Gateway", "GatewaySettings", "Provider", "ToolCaller"]

logger = logging.getLogger("clawhost.gateway")


@runtime_checkable
class Channel(Protocol):
    """Where messages come from and responses go."""

    def messages(self) -> AsyncIterator[Message]:
        """The incoming messages; the channel ends when the iterator does."""
        ...

    async def send(self, response: Response) -> None:
        """Deliver a response."""
        ...


@runtime_checkable
class Provider(Protocol):
    """Something that answers messages (an LLM, a rule engine), using tools if it wants."""

    async def reply(self, message: Message, tools: ToolCaller) -> str:
        """The text of the response to ``message``."""
        ...


@dataclass(frozen=True)
class GatewaySettings:
    """The ``[gateway]`` table."""

    channel: str
    provider: str
    channel_config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, data: Mapping[str, Any]) -> GatewaySettings:
        """Read ``[gateway]`` from a parsed config file (``ValueError`` naming what is wrong)."""
        table = data.get("gateway")
        if not isinstance(table, Mapping):
            raise ValueError("config.toml has no [gateway] table (channel and provider to use)")
        unknown = sorted(set(table) - {"channel", "provider", "channel_config"})
        missing = [key for key in ("channel", "provider") if not isinstance(table.get(key), str)]
        if unknown or missing:
            problems = [f"gateway.{key}: unknown key" for key in unknown]
            problems += [f"gateway.{key}: required (a string)" for key in missing]
            raise ValueError("invalid [gateway] table: " + "; ".join(problems))
        config = table.get("channel_config", {})
        if not isinstance(config, Mapping):
            raise ValueError("gateway.channel_config: expected a table")
        return cls(table["channel"], table["provider"], dict(config))


@dataclass
class Exchange:
    """One message handled: what came in, what went out, and what happened on the way."""

    message: Message
    response: Response | None
    dropped_by: str | None = None
    tool_calls: list[tuple[str, dict[str, Any], Any]] = field(default_factory=list)
    error: str | None = None
    duration: float = 0.0


class Gateway:
    """Runs messages from one channel through a host's pipeline, provider and tools."""

    def __init__(self, host: PluginHost, settings: GatewaySettings) -> None:
        self.host = host
        self.settings = settings
        self.exchanges: list[Exchange] = []

    async def handle(self, message: Message) -> Exchange:
        """Handle one message end to end (no channel involved); returns what happened."""
        started = time.perf_counter()
        host = self.host
        await host.events.dispatch("on_message_received", message=message)
        outcome = await host.pipeline.process(message)
        if outcome.message is None:
            exchange = Exchange(message, None, dropped_by=outcome.dropped_by)
            exchange.duration = time.perf_counter() - started
            self.exchanges.append(exchange)
            return exchange
        processed = outcome.message
        tools = ToolCaller(host)
        error: str | None = None
        try:
            provider = host.providers.get(self.settings.provider)
            text = await provider.reply(processed, tools)
        except (ClawhostError, ToolError) as exc:
            error = str(exc).splitlines()[0]
            text = f"Sorry, something went wrong: {error}"
        except Exception as exc:  # a provider bug must not stop the gateway
            error = f"{type(exc).__name__}: {exc}"
            logger.exception("provider %r failed on message %s", self.settings.provider, message.id)
            text = f"Sorry, something went wrong: {error}"
        response = Response(
            text, message_id=message.id, channel=message.channel, recipient=message.sender
        )
        exchange = Exchange(message, response, tool_calls=tools.calls, error=error)
        exchange.duration = time.perf_counter() - started
        self.exchanges.append(exchange)
        return exchange

    async def respond(self, message: Message) -> Response | None:
        """``handle`` a message and return the response (``None``: a stage dropped it):
        what the host's supervised channels need (``attach``)."""
        return (await self.handle(message)).response

    def attach(self) -> None:
        """Answer the host's supervised channels (``[plugins.<name>.channels.<instance>]``)
        through this gateway: pipeline, provider and tools, as ``handle`` does."""
        self.host.channel_handler = self.respond

    async def handle_text(self, text: str, *, sender: str = "user") -> Exchange:
        """``handle`` a message made from ``text``, as if it came in on the channel."""
        return await self.handle(Message(text, sender=sender, channel=self.settings.channel))

    async def run(self, *, restart_limit: int | None = None) -> None:
        """Serve the configured channel until it ends, answering through this gateway.

        The channel runs under a ``ChannelSupervisor``, as every channel configured in
        ``[plugins.<name>.channels.<instance>]`` does: after a failure it is started again
        with a backoff (0.5 s, doubling up to 30 s). ``restart_limit`` caps the restarts in
        a row (default: no cap); past it, the channel's last error is raised."""
        from clawhost.config.host import ChannelInstanceSettings
        from clawhost.surfaces.channels import ChannelSupervisor

        channel = self.settings.channel
        owner = self.host.channels.owner_of(channel)
        if owner is None:
            raise NotRegistered("channel", channel, tuple(self.host.channels.names()))
        self.attach()
        settings = ChannelInstanceSettings(
            channel=channel,
            config=dict(self.settings.channel_config),
            restart_backoff_secs=0.5,
            restart_backoff_max_secs=30.0,
            max_restarts=sys.maxsize if restart_limit is None else restart_limit,
        )
        supervisor = ChannelSupervisor(self.host, owner, channel, settings)
        await supervisor.run()
        if supervisor.failure is not None:
            raise supervisor.failure
