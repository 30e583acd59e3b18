"""The messages that flow through a gateway: in through a channel, out as a response."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Message", "Response"]

_ids = itertools.count(1)


def _next_id() -> str:
    return f"msg-{next(_ids)}"


@dataclass(frozen=True, slots=True)
class Message:
    """A message received from a channel.

    Immutable: a pipeline stage that changes a message returns a new one
    (``message.replace(text=...)``), so every stage sees what the previous one produced.
    """

    text: str
    sender: str = "user"
    channel: str = "default"
    id: str = field(default_factory=_next_id)
    timestamp: float = field(default_factory=time.time)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Message:
        """A copy with ``changes`` applied (same id)."""
        return dataclasses.replace(self, **changes)

    def preview(self, width: int = 60) -> str:
        """The text on one line, shortened to ``width`` characters for logs."""
        flat = " ".join(self.text.split())
        return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass(frozen=True, slots=True)
class Response:
    """A response to a message, sent back through a channel."""

    text: str
    message_id: str | None = None
    channel: str = "default"
    recipient: str = "user"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> Response:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)
