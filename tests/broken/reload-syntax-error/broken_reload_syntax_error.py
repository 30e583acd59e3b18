from clawhost import hookimpl, tool

@tool
def reload_syntax_tool() -> str:
    """Answer."""
    return "reload_syntax_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(reload_syntax_tool)
