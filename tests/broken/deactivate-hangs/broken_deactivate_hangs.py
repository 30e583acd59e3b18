from clawhost import hookimpl, tool

@tool
def deactivate_hangs_tool() -> str:
    """Answer."""
    return "deactivate_hangs_tool"

@hookimpl
def activate(ctx):
    ctx.register_tool(deactivate_hangs_tool)


@hookimpl
async def deactivate(ctx):
    import anyio

    await anyio.sleep(3600)
