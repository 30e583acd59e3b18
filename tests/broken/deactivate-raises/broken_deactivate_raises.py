from clawhost import hookimpl, tool

@tool
def deactivate_raises_tool() -> str:
    """Answer."""
    return "deactivate_raises_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(deactivate_raises_tool)


@hookimpl
def deactivate(ctx):
    raise OSError("disk on fire")
