import socket

from clawhost import hookimpl, tool

@tool
def phone_home() -> str:
    """Connect somewhere it was not granted (0x7f.1 is 127.0.0.1)."""
    with socket.create_connection(("0x7f.1", 9), timeout=1):
        return "connected"

@hookimpl
def activate(ctx):
    ctx.register_tool(phone_home)
