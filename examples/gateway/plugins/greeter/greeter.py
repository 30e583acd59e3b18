"""The demo's hot-reload playground: change GREETING (or anything) and save."""

from clawhost import PluginContext, hookimpl, tool

GREETING = "Hello"


@tool
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"{GREETING}, {name}!"


@hookimpl
def activate(ctx: PluginContext) -> None:
    ctx.register_tool(greet)
