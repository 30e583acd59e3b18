"""Supervised channels: the channel instances a host runs for its plugins.

For every ``[plugins.<name>.channels.<instance>]`` table, once plugin ``<name>`` is ACTIVE
the host builds a channel with the factory the plugin registered (``channel``, default:
the instance's name) from the table's ``config``, and runs it as a background task:

* each message the channel yields goes to the host's channel handler
  (``PluginHost.channel_handler``; by default ``on_message_received`` is broadcast and the
  pipeline runs); a response it returns is sent back through the channel, and
  ``on_response_sent`` broadcast;
* a channel that fails (its factory, ``messages()`` or ``send()`` raises) is started again
  after a backoff: ``restart_backoff_secs`` (5 s), doubling up to
  ``restart_backoff_max_secs`` (5 minutes), at most ``max_restarts`` (10) times in a row;
  a run as long as the maximum resets the count. Then it stays ``failed``;
* a channel whose ``messages()`` ends is ``stopped``;
* deactivating the plugin (and so reloading it, or its worker dying) stops its channels
  first; a reload starts them again with the new code.

``ChannelSupervisor.status()`` is a snapshot per instance (plugin, channel, instance,
state, last error, restarts, since, next restart), what the status page shows.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio

from clawhost.core.backoff import Backoff, RestartPolicy
from clawhost.core.messages import Message, Response

if TYPE_CHECKING:
    from clawhost.config.host import ChannelInstanceSettings
    from clawhost.runtime.events import EventBus, Pipeline
    from clawhost.runtime.registry import ChannelRegistry

__all__ = ["ChannelHandler", "ChannelStatus", "ChannelSupervisor", "default_handler"]

logger = logging.getLogger("clawhost.channels")

ChannelState = Literal["starting", "running", "backoff", "stopped", "failed"]
#: What the host does with each message of a channel: the response to send, or ``None``.
ChannelHandler = Callable[[Message], Awaitable[Response | None]]


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    """One channel instance now."""

    plugin: str
    channel: str
    instance: str
    state: ChannelState
    last_error: str | None
    restarts: int
    #: When it entered this state (``time.time()``).
    since: float
    #: When the next restart is due, in ``backoff``.
    restart_at: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ChannelHost(Protocol):
    """What a supervised channel needs of its host (a ``PluginHost`` is one)."""

    @property
    def channels(self) -> ChannelRegistry: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def pipeline(self) -> Pipeline: ...

    channel_handler: ChannelHandler


async def default_handler(host: ChannelHost, message: Message) -> Response | None:
    """With no handler set: broadcast ``on_message_received`` and run the pipeline."""
    await host.events.dispatch("on_message_received", message=message)
    await host.pipeline.process(message)
    return None


class ChannelSupervisor:
    """Runs one configured channel instance of one plugin, restarting it after failures."""

    def __init__(
        self, host: ChannelHost, plugin: str, instance: str, settings: ChannelInstanceSettings
    ) -> None:
        self.host = host
        self.plugin = plugin
        self.instance = instance
        self.channel = settings.channel or instance
        self.config = dict(settings.config)
        self.backoff = Backoff(
            RestartPolicy(
                settings.restart_backoff_secs,
                settings.restart_backoff_max_secs,
                settings.max_restarts,
            )
        )
        self._state: ChannelState = "starting"
        self._since = time.time()
        self._last_error: str | None = None
        self._restart_at: float | None = None
        #: Why the channel was given up on (``failed`` after too many restarts in a row).
        self.failure: Exception | None = None

    def __repr__(self) -> str:
        return f"<ChannelSupervisor {self.plugin}/{self.instance} {self._state}>"

    def _enter(self, state: ChannelState) -> None:
        self._state, self._since = state, time.time()

    def status(self) -> ChannelStatus:
        """A snapshot of this instance."""
        return ChannelStatus(
            self.plugin,
            self.channel,
            self.instance,
            self._state,
            self._last_error,
            self.backoff.total,
            self._since,
            self._restart_at,
        )

    async def run(self) -> None:
        """Run the channel until it ends, is cancelled (the plugin is deactivated), or
        fails more often in a row than allowed."""
        owner = self.host.channels.owner_of(self.channel)
        if owner != self.plugin:
            self._last_error = (
                f"plugin {self.plugin!r} registered no channel {self.channel!r} "
                f"([plugins.{self.plugin}.channels.{self.instance}] channel)"
            )
            logger.error("Channel %s/%s: %s", self.plugin, self.instance, self._last_error)
            self._enter("failed")
            return
        try:
            while True:
                self._enter("starting")
                try:
                    await self._serve()
                except anyio.get_cancelled_exc_class():
                    raise
                except Exception as exc:
                    self._last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    error = exc
                else:
                    self._enter("stopped")
                    logger.info("Channel %s/%s ended", self.plugin, self.instance)
                    return
                delay = self.backoff.failed()
                if delay is None:
                    self._enter("failed")
                    self.failure = error
                    logger.error(
                        "Channel %s/%s failed: %s; not restarted again after %d restart(s) "
                        "in a row",
                        self.plugin,
                        self.instance,
                        self._last_error,
                        self.backoff.policy.max_tries,
                    )
                    return
                self._restart_at = time.time() + delay
                self._enter("backoff")
                logger.error(
                    "Channel %s/%s failed: %s; restarting in %gs (restart %d of at most %d)",
                    self.plugin,
                    self.instance,
                    self._last_error,
                    delay,
                    self.backoff.attempts,
                    self.backoff.policy.max_tries,
                )
                await anyio.sleep(delay)
                self._restart_at = None
        finally:
            if self._state in ("starting", "running", "backoff"):
                self._restart_at = None
                self._enter("stopped")

    async def _serve(self) -> None:
        host = self.host
        channel = await host.channels.create(self.channel, self.config)
        self._enter("running")
        self.backoff.started()
        logger.info("Channel %s/%s running", self.plugin, self.instance)
        messages = channel.messages()
        try:
            async for message in messages:
                response = await host.channel_handler(message)
                if response is not None:
                    await channel.send(response)
                    await host.events.dispatch("on_response_sent", response=response)
        finally:
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await aclose()
