from clawhost import hookimpl, tool

@tool
def half_done() -> str:
    """Registered before the failure: must not survive it."""
    return "leaked"

@hookimpl
def activate(ctx):
    ctx.register_tool(half_done)
    raise ValueError("no API key")
