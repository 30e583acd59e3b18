from clawhost import hookimpl, tool

@tool
def deps_missing_tool() -> str:
    """Answer."""
    return "deps_missing_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(deps_missing_tool)
