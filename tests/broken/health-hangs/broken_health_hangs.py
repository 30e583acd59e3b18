import anyio
from clawhost import hookimpl

@hookimpl
async def health_check(ctx):
    await anyio.sleep(3600)
