from clawhost import hookimpl, tool

@tool
def reload_hangs_tool() -> str:
    """Answer."""
    return "reload_hangs_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(reload_hangs_tool)
