"""The hook contract between the host and its plugins: every hook a plugin may implement.

Plugins implement hooks with ``@hookimpl``, as module-level functions or as methods of an
object (or class) that their entry point names. An implementation may be ``def`` or
``async def``; the host awaits what needs awaiting. As with pluggy, an implementation may
accept fewer arguments than the specification lists, never other ones: pluggy checks the
argument names when the plugin is registered.

Lifecycle hooks are called for one plugin at a time, with that plugin's own
``PluginContext``. Event hooks are broadcast to every active plugin that implements them;
one failing handler is logged and never stops the others. Every call runs under the
plugin's time limit and permissions.

Deprecating a hook: mark its specification with ``warn_on_impl`` through
``deprecated_hook(version, replacement)`` so implementers are told when they register.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from clawhost.core.messages import Message, Response
    from clawhost.runtime.context import PluginContext

__all__ = [
    "EVENT_HOOKS",
    "LIFECYCLE_HOOKS",
    "PROJECT",
    "deprecated_hook",
    "hookimpl",
    "hookspec",
]

#: The pluggy project name of clawhost's hooks.
PROJECT = "clawhost"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a plugin's implementation of a hook: ``@hookimpl`` or ``@hookimpl(tryfirst=True)``.
hookimpl = pluggy.HookimplMarker(PROJECT)


def deprecated_hook(version: str, replacement: str | None) -> pluggy.PluggyWarning:
    """The warning to attach to a retired hook's spec (``@hookspec(warn_on_impl=...)``)."""
    instead = f"; implement {replacement} instead" if replacement else ""
    return pluggy.PluggyWarning(f"this hook is deprecated since clawhost {version}{instead}")


# -- lifecycle: called for one plugin, with its own context --------------------------------


@hookspec
def activate(ctx: PluginContext) -> Any:
    """Start the plugin: register its tools, channels, stages, providers and handlers.

    Raising (or overrunning the time limit) fails this plugin alone: what it registered so
    far is removed and the plugins that depend on it are not activated.
    """


@hookspec
def deactivate(ctx: PluginContext) -> Any:
    """Stop the plugin: close clients, stop background work.

    Whatever the plugin registered is removed afterwards whether or not this hook does it,
    and even if it raises.
    """


@hookspec
def health_check(ctx: PluginContext) -> Any:
    """Report health: return ``None``/``True`` when healthy; return ``False`` or a string,
    or raise, when not (the string or the exception is the reason)."""


# -- events: broadcast to every active plugin implementing them ----------------------------


@hookspec
def on_message_received(message: Message) -> Any:
    """A message entered the gateway (before the pipeline stages ran)."""


@hookspec
def on_response_sent(response: Response) -> Any:
    """A response left the gateway through its channel."""


@hookspec
def on_tool_called(
    tool: str, arguments: dict[str, Any], result: Any, error: BaseException | None, duration: float
) -> Any:
    """A tool call finished (``error`` is set when it failed); for analytics and audit."""


@hookspec
def on_plugin_activated(plugin: str, version: str) -> Any:
    """Another plugin became active (dependents may look up what it registered)."""


@hookspec
def on_plugin_deactivated(plugin: str) -> Any:
    """Another plugin was deactivated (drop references to what it registered)."""


LIFECYCLE_HOOKS = ("activate", "deactivate", "health_check")
#: Events the host broadcasts; ``PluginContext.on(event, callback)`` subscribes to them too.
EVENT_HOOKS = (
    "on_message_received",
    "on_response_sent",
    "on_tool_called",
    "on_plugin_activated",
    "on_plugin_deactivated",
)
