import anyio
from clawhost import hookimpl

@hookimpl
async def activate(ctx):
    while True:
        try:
            await anyio.sleep(3600)
        except BaseException:  # the mistake under test: cancellation is swallowed
            pass
