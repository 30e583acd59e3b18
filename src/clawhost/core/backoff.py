"""Restart with exponential backoff: the one policy behind supervised workers (and channels).

The product's rule: wait ``initial`` seconds before the first restart, double the wait
each time up to ``maximum``, and give up after ``max_tries`` restarts in a row. A run
that lasts at least ``maximum`` seconds counts as a recovery: the next failure starts
again from ``initial``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Backoff", "RestartPolicy"]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart something that failed, and when to give up."""

    initial: float = 5.0
    maximum: float = 300.0
    max_tries: int = 10

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart number ``attempt`` (1 for the first)."""
        return float(min(self.initial * 2 ** max(attempt - 1, 0), self.maximum))


@dataclass(slots=True)
class Backoff:
    """The restarts of one supervised thing so far: ``failed()`` says how long to wait
    before the next one, or ``None`` once the tries are used up."""

    policy: RestartPolicy
    #: Restarts in a row so far (reset by a run of at least ``policy.maximum`` seconds).
    attempts: int = 0
    #: Restarts over the whole life, for status pages.
    total: int = 0
    started_at: float | None = field(default=None)

    def started(self) -> None:
        """It runs (again) from now."""
        self.started_at = time.monotonic()

    def failed(self) -> float | None:
        """It failed: the delay before the next restart, or ``None`` to give up."""
        now = time.monotonic()
        if self.started_at is not None and now - self.started_at >= self.policy.maximum:
            self.attempts = 0  # it ran long enough to count as recovered
        self.started_at = None
        if self.attempts >= self.policy.max_tries:
            return None
        self.attempts += 1
        self.total += 1
        return self.policy.delay(self.attempts)
