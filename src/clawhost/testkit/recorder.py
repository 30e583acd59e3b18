"""HookRecorder: a call monitor that remembers every call into plugin code, for tests.

It is built on ``PluginHost.add_call_monitor``; the host tells it about lifecycle hooks
(``import``, ``activate``, ``deactivate``, ``cleanup``, ``health check``), tools
(``tool NAME``), event handlers (the event's name) and pipeline stages (``stage NAME``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType

    from clawhost.host.host import PluginHost

__all__ = ["Call", "HookRecorder"]


@dataclass(frozen=True, slots=True)
class Call:
    """One finished call into plugin code."""

    plugin: str
    operation: str  #: ``activate``, ``tool get_weather``, ``on_message_received``, ...
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: BaseException | None = None
    duration: float = 0.0  #: seconds

    @property
    def ok(self) -> bool:
        """Whether the call returned rather than raised."""
        return self.error is None

    def __str__(self) -> str:
        outcome = "ok" if self.error is None else f"raised {type(self.error).__name__}"
        return f"{self.plugin}: {self.operation} ({outcome}, {self.duration * 1e3:.1f} ms)"


class HookRecorder:
    """Records every call into plugin code of the hosts it is attached to.

        recorder = HookRecorder().attach(host)
        await host.start()
        assert recorder.operations("weather") == ["import", "activate"]
        recorder.assert_called("weather", "activate")

    It is a context manager too (``with HookRecorder().attach(host) as recorder:``), which
    detaches it on exit. The pytest plugin's ``hook_recorder`` fixture is attached to every
    host the ``clawhost_host`` fixture builds.
    """

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._detach: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<HookRecorder {len(self.calls)} call(s)>"

    # -- attaching ----------------------------------------------------------------------------

    def attach(self, host: PluginHost) -> HookRecorder:
        """Start recording ``host``'s calls into plugin code; returns the recorder."""
        self._detach.append(host.add_call_monitor(self))
        return self

    def detach(self) -> None:
        """Stop recording every host this recorder is attached to."""
        while self._detach:
            self._detach.pop()()

    def __enter__(self) -> HookRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.detach()

    # -- the CallMonitor protocol -------------------------------------------------------------

    def before(
        self, plugin: str, operation: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Called by the host before it calls plugin code; returns what ``after`` gets back."""
        return (time.perf_counter(), tuple(args), dict(kwargs))

    def after(
        self, token: Any, plugin: str, operation: str, result: Any, error: BaseException | None
    ) -> None:
        """Called by the host after the call returned (``error`` is set when it raised),
        with what ``before`` returned for this very call."""
        started, args, kwargs = token
        duration = time.perf_counter() - started
        self.calls.append(Call(plugin, operation, args, kwargs, result, error, duration))

    # -- reading ------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self.calls))

    def __len__(self) -> int:
        return len(self.calls)

    def calls_of(self, plugin: str | None = None, operation: str | None = None) -> list[Call]:
        """The finished calls, in the order they finished, of one plugin and/or operation."""
        return [
            call
            for call in self.calls
            if (plugin is None or call.plugin == plugin)
            and (operation is None or call.operation == operation)
        ]

    def operations(self, plugin: str | None = None) -> list[str]:
        """The operations called, in the order they finished (of one plugin, or all)."""
        return [call.operation for call in self.calls_of(plugin)]

    def count(self, plugin: str | None = None, operation: str | None = None) -> int:
        """How many calls finished, of one plugin and/or operation."""
        return len(self.calls_of(plugin, operation))

    def called(self, plugin: str, operation: str) -> bool:
        """Whether ``plugin``'s ``operation`` was called (and finished) at least once."""
        return self.count(plugin, operation) > 0

    def failures(self, plugin: str | None = None) -> list[Call]:
        """The calls that raised."""
        return [call for call in self.calls_of(plugin) if call.error is not None]

    def tool_calls(self, tool: str | None = None) -> list[Call]:
        """The calls of one tool, or of every tool."""
        return [
            call
            for call in self.calls
            if call.operation.startswith("tool ")
            and (tool is None or call.operation == f"tool {tool}")
        ]

    def clear(self) -> None:
        """Forget every recorded call."""
        self.calls.clear()

    # -- asserting ----------------------------------------------------------------------------

    def assert_called(self, plugin: str, operation: str, *, times: int | None = None) -> None:
        """Fail (``AssertionError`` showing what was recorded) unless ``plugin``'s
        ``operation`` was called, ``times`` times when given."""
        count = self.count(plugin, operation)
        if (times is None and count) or count == times:
            return
        wanted = "at least once" if times is None else f"{times} time(s)"
        raise AssertionError(
            f"expected {plugin!r} {operation!r} to be called {wanted}, got {count}; "
            f"recorded: {self._summary()}"
        )

    def assert_not_called(self, plugin: str, operation: str) -> None:
        """Fail unless ``plugin``'s ``operation`` was never called."""
        self.assert_called(plugin, operation, times=0)

    def assert_order(self, plugin: str, *operations: str) -> None:
        """Fail unless ``operations`` happened in this order for ``plugin`` (other calls
        may come between them)."""
        seen = iter(self.operations(plugin))
        if not all(any(operation == done for done in seen) for operation in operations):
            raise AssertionError(
                f"expected {plugin!r} to call {' -> '.join(operations)} in order; "
                f"recorded: {', '.join(self.operations(plugin)) or 'nothing'}"
            )

    def _summary(self) -> str:
        return ", ".join(f"{call.plugin}:{call.operation}" for call in self.calls) or "nothing"
