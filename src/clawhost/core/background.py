"""Tasks the host runs in the background: supervising a plugin's worker, restarting it later.

The host has no task group of its own that lives as long as it does (``start()`` and
``stop()`` may be called from different places, and an application need not run
``serve()``), so a background task is a task of the event loop itself: an asyncio task,
or a trio system task. Each runs inside a cancel scope the host keeps, so ``cancel`` and
``aclose`` (called by ``PluginHost.stop``) end it, and it never raises into the loop: an
unexpected error is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import anyio

__all__ = ["Background"]

logger = logging.getLogger("clawhost.host")


class _Task:
    # The scope is made inside the task: anyio cannot tell the event loop's library from
    # a plain loop callback, which is where a worker's exit is noticed.
    __slots__ = ("cancelled", "done", "scope")

    def __init__(self) -> None:
        self.scope: anyio.CancelScope | None = None
        self.done: anyio.Event | None = None
        self.cancelled = False

    def ended(self) -> anyio.Event:
        """Set when the task has ended (made on first use, inside a task)."""
        if self.done is None:
            self.done = anyio.Event()
        return self.done

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class Background:
    """At most one background task per key (a plugin's name and what the task is for)."""

    def __init__(self) -> None:
        self._tasks: dict[Hashable, _Task] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._tasks

    def start_soon(
        self, key: Hashable, function: Callable[..., Awaitable[Any]], *args: Any
    ) -> bool:
        """Run ``function(*args)`` in the background, unless a task with ``key`` runs.

        Call it on the event loop's thread. Returns whether a task was started.
        """
        if key in self._tasks:
            return False
        task = self._tasks[key] = _Task()

        async def run() -> None:
            ended = task.ended()
            try:
                with anyio.CancelScope() as task.scope:
                    if task.cancelled:
                        task.scope.cancel()
                    await function(*args)
            except Exception:
                logger.exception("background task %r failed", key)
            finally:
                if self._tasks.get(key) is task:
                    del self._tasks[key]
                ended.set()

        _spawn(run)
        return True

    def cancel(self, key: Hashable) -> None:
        """Cancel the task with ``key``, if one runs (it ends at its next await)."""
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def stop(self, key: Hashable) -> None:
        """Cancel the task with ``key``, if one runs, and wait until it has ended."""
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
            with anyio.CancelScope(shield=True):
                await task.ended().wait()

    def running(self) -> list[Hashable]:
        """The keys of the tasks running now."""
        return list(self._tasks)

    async def aclose(self) -> None:
        """Cancel every task and wait until each has ended."""
        while self._tasks:
            tasks = list(self._tasks.values())
            self._tasks.clear()
            for task in tasks:
                task.cancel()
            with anyio.CancelScope(shield=True):
                for task in tasks:
                    await task.ended().wait()


def _spawn(run: Callable[[], Awaitable[None]]) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio  # type: ignore[import-not-found]  # anyio's only other backend

        trio.lowlevel.spawn_system_task(run)
        return
    handle: asyncio.Task[None] = loop.create_task(run())  # type: ignore[arg-type]
    _running.add(handle)  # asyncio keeps only weak references to its tasks
    handle.add_done_callback(_running.discard)


_running: set[asyncio.Task[None]] = set()
