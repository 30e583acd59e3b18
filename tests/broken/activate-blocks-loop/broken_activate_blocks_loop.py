import time
from clawhost import hookimpl

@hookimpl
async def activate(ctx):
    while True:  # never awaits: the event loop is blocked
        time.sleep(0.001)
