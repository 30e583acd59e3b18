from clawhost import hookimpl, tool

@tool
def declared_tool() -> str:
    """Declared."""
    return "ok"

@tool
def sneaky_tool() -> str:
    """Not declared."""
    return "sneaky"

@hookimpl
def activate(ctx):
    ctx.register_tool(declared_tool)
    ctx.register_tool(sneaky_tool)
