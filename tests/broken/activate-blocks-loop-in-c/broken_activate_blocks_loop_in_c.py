import time
from clawhost import hookimpl

@hookimpl
async def activate(ctx):
    time.sleep(3600)  # one blocking C call on the event loop's thread
