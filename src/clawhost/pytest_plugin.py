"""clawhost's pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

``clawhost_host``
    A factory: ``host = await clawhost_host(*plugins, **options)`` builds a throw-away
    host (``clawhost.testing.make_test_host``), starts it and stops it after the test.
    Pass ``start=False`` for a host that is only built.
``clawhost_context``
    A fresh ``HostContext`` that calls plugin code directly.
``hook_recorder``
    A ``HookRecorder``, attached to every host ``clawhost_host`` builds.
``clawhost_check``
    ``clawhost.testing.check_plugin``: ``report = await clawhost_check(plugin, ...)``.

Async tests run through anyio's pytest plugin (installed with clawhost). A coroutine test
that uses one of these fixtures, directly or through fixtures of its own, is marked for it
automatically, so no configuration is needed; other async tests need
``@pytest.mark.anyio`` or ``anyio_mode = "auto"``.

This module is imported by every pytest run in an environment where clawhost is
installed, so it imports nothing from clawhost until a fixture is used.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from clawhost.host.host import PluginHost
    from clawhost.runtime.context import HostContext
    from clawhost.testkit.conformance import ConformanceReport
    from clawhost.testkit.recorder import HookRecorder

__all__ = [
    "clawhost_check",
    "clawhost_context",
    "clawhost_host",
    "hook_recorder",
]

#: The fixtures that make a coroutine test an anyio test.
FIXTURES = frozenset({"clawhost_host", "clawhost_context", "hook_recorder", "clawhost_check"})

HostFactory = Callable[..., Awaitable["PluginHost"]]


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--clawhost-isolation=process``: run the plugins of every host ``clawhost_host``
    builds in worker processes, to test a plugin in both modes without changing a test."""
    group = parser.getgroup("clawhost")
    group.addoption(
        "--clawhost-isolation",
        choices=("in-process", "process"),
        default=None,
        help="where clawhost_host runs plugins (default: the host config's, in-process)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark coroutine tests that use clawhost's fixtures as anyio tests.

    Marking the function before anyio's own collection hook looks at it is all anyio
    needs; ``usefixtures`` is added too in case anyio's hook already ran.
    """
    if not (
        inspect.iscoroutinefunction(obj) and isinstance(collector, pytest.Module | pytest.Class)
    ):
        return
    if not collector.istestfunction(obj, name):
        return
    try:
        parameters = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return
    if FIXTURES.isdisjoint(parameters):
        return
    own = getattr(obj, "pytestmark", [])
    if not any(mark.name == "anyio" for mark in own):
        pytest.mark.anyio(obj)
        pytest.mark.usefixtures("anyio_backend")(obj)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark coroutine tests that reach clawhost's fixtures through fixtures of their own
    (``async def host(clawhost_host)``) as anyio tests too.

    Their fixture closure is known only now; anyio's ``pytest_collection_finish`` gives
    the marked ones their ``anyio_backend`` afterwards.
    """
    for item in items:
        if not isinstance(item, pytest.Function) or not inspect.iscoroutinefunction(item.obj):
            continue
        if item.get_closest_marker("anyio") is None and not FIXTURES.isdisjoint(item.fixturenames):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture
def hook_recorder() -> HookRecorder:
    """A ``HookRecorder``; ``clawhost_host`` attaches it to every host it builds."""
    from clawhost.testkit.recorder import HookRecorder

    return HookRecorder()


@pytest.fixture
def clawhost_context() -> HostContext:
    """A fresh ``HostContext`` calling plugin code directly (``HostContext.test_context()``)."""
    from clawhost.runtime.context import HostContext

    return HostContext.test_context()


@pytest.fixture
async def clawhost_host(
    hook_recorder: HookRecorder, request: pytest.FixtureRequest
) -> AsyncIterator[HostFactory]:
    """A factory of started throw-away hosts, stopped (plugins deactivated) after the test.

    ``await clawhost_host(*plugins, config=None, host_config=None, start=True, **options)``;
    see ``clawhost.testing.make_test_host`` for the plugins and options. Run pytest with
    ``--clawhost-isolation=process`` and every host runs its plugins in worker processes
    (unless a test passes ``isolation=`` itself).
    """
    from clawhost.testkit.kit import make_test_host

    hosts: list[PluginHost] = []
    isolation = request.config.getoption("--clawhost-isolation", None)

    async def build(*plugins: Any, start: bool = True, **options: Any) -> PluginHost:
        if isolation is not None:
            options.setdefault("isolation", isolation)
        host = make_test_host(*plugins, **options)
        hook_recorder.attach(host)
        hosts.append(host)
        if start:
            await host.start()
        return host

    try:
        yield build
    finally:
        import anyio

        with anyio.CancelScope(shield=True):
            for host in reversed(hosts):
                await host.stop()
        hook_recorder.detach()


@pytest.fixture
def clawhost_check() -> Callable[..., Awaitable[ConformanceReport]]:
    """``clawhost.testing.check_plugin``: ``await clawhost_check(plugin, **options)``
    walks one plugin through its lifecycle and raises ``AssertionError`` listing every
    finding (``raise_on_failure=False`` returns the report instead)."""
    from clawhost.testkit.conformance import check_plugin

    return check_plugin
