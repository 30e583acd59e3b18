import anyio
from clawhost import hookimpl

@hookimpl
async def activate(ctx):
    await anyio.sleep(3600)
