from clawhost import hookimpl, tool

@tool
def reload_raises_tool() -> str:
    """Answer."""
    return "reload_raises_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(reload_raises_tool)
