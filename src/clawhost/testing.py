"""The plugin author's kit: throw-away hosts, a call recorder and a conformance check.

    from clawhost.testing import HookRecorder, check_plugin, make_test_host

    async def test_my_plugin() -> None:
        host = make_test_host(("my-plugin", MyPlugin(), "src/my_plugin/plugin.toml"))
        recorder = HookRecorder().attach(host)
        async with host:
            assert await host.tools.invoke("my_plugin_hello", {"name": "Ada"}) == "Hello, Ada!"
        recorder.assert_order("my-plugin", "import", "activate", "deactivate")

    async def test_my_plugin_conforms() -> None:
        await check_plugin(Path(__file__).parents[1])  # AssertionError listing every finding

With pytest, the ``clawhost`` pytest plugin (installed with clawhost) offers the same as
fixtures: ``clawhost_host``, ``clawhost_context``, ``hook_recorder`` and ``clawhost_check``;
see docs/testing.md. Nothing here needs pytest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clawhost.testkit.conformance import ConformanceReport, Finding, Step, check_plugin
from clawhost.testkit.recorder import Call, HookRecorder

if TYPE_CHECKING:
    from clawhost.host.host import PluginHost
    from clawhost.runtime.context import HostContext

__all__ = [
    "Call",
    "ConformanceReport",
    "Finding",
    "HookRecorder",
    "Step",
    "check_plugin",
    "is_error",
    "make_test_context",
    "make_test_host",
]


def make_test_host(*plugins: Any, **options: Any) -> PluginHost:
    """A throw-away host offering ``plugins``, not started (``async with`` it, or call
    ``start()``): ``PluginHost.test_instance`` with project folders, manifests, plugin
    config and permissions handled for you.

    Each plugin is a plugin object (an instance, class or module with ``@hookimpl``
    hooks), a ``(name, object)`` or ``(name, object, manifest)`` tuple (a ``Manifest``, its
    ``[plugin]`` table as a dict, or a path to ``plugin.toml``), or a ``pathlib.Path`` to
    a plugin project, imported from its source tree when it activates.

    Options: ``isolation="process"`` runs the plugins in worker processes (projects and
    installed plugins; ``pytest --clawhost-isolation=process`` sets it for every
    ``clawhost_host``); ``config`` maps plugin names to their ``[plugins.<name>.config]`` values;
    ``host_config`` is a whole ``HostConfig``; ``grant_requested`` (default: when no
    ``host_config`` is given) grants every manifest the permissions it asks for; anything
    else goes to ``PluginHost.test_instance`` (``path=None`` also discovers installed
    plugins). With no manifest, an in-memory plugin may register anything.
    """
    from clawhost.testkit.kit import make_test_host as make

    return make(*plugins, **options)


def make_test_context() -> HostContext:
    """A fresh ``HostContext`` that calls plugin code directly: register a plugin into it
    through ``context.plugin_context(name)`` and look at what it registered."""
    from clawhost.runtime.context import HostContext

    return HostContext.test_context()


def _publish() -> None:
    # Show the public home of what this module re-exports (clawhost.testing.HookRecorder).
    for name in ("Call", "ConformanceReport", "Finding", "HookRecorder", "Step", "check_plugin"):
        globals()[name].__module__ = __name__


_publish()


def is_error(error: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``error`` is a ``kind``, in either mode: an instance of it in-process, or a
    ``WorkerError`` standing for one (a plugin's own exception class raised in a worker
    process crosses as ``WorkerError`` with the class's qualified name).

        with pytest.raises(ToolFailed) as caught:
            await host.tools.invoke("geocode", {"place": "Atlantis"})
        assert is_error(caught.value.__cause__, PlaceNotFound)
    """
    from clawhost.errors import WorkerError

    if isinstance(error, kind):
        return True
    return isinstance(error, WorkerError) and error.type_name == (
        f"{kind.__module__}.{kind.__qualname__}"
    )
