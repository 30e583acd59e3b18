import logging
import threading

from clawhost import hookimpl, tool

@tool
def late_tool() -> str:
    """Registered too late."""
    return "leaked"

def _register_later(ctx, stop):
    stop.wait()
    try:
        ctx.register_tool(late_tool)
    except Exception as exc:
        logging.getLogger("broken.reg_leak").error("late registration: %s", exc)

@hookimpl
def activate(ctx):
    stop = threading.Event()
    threading.Thread(target=_register_later, args=(ctx, stop), daemon=True).start()
    ctx.add_cleanup(stop.set)  # the thread acts only once the plugin is going away
