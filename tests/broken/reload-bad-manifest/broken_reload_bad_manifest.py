from clawhost import hookimpl, tool

@tool
def reload_manifest_tool() -> str:
    """Answer."""
    return "reload_manifest_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(reload_manifest_tool)
