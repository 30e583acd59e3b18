from clawhost import hookimpl, tool

@tool
def canary_tool() -> str:
    """Answer."""
    return "canary_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(canary_tool)
