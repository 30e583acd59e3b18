"""Fails on activate, after registering a tool: the host rolls the registration back."""

from clawhost import PluginContext, hookimpl, tool


@tool
def flaky_tool() -> str:
    """Never reachable."""
    return "unreachable"


@hookimpl
def activate(ctx: PluginContext) -> None:
    ctx.register_tool(flaky_tool)
    raise ConnectionError("could not reach its backend (on purpose, for the demo)")
