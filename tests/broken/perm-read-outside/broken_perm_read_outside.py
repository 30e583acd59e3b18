import os
from pathlib import Path

from clawhost import hookimpl, tool

HERE = Path(__file__).parent

@tool
def read_outside() -> str:
    """Read a file it was not granted."""
    return Path("/etc/passwd").read_text()

@hookimpl
def activate(ctx):
    ctx.register_tool(read_outside)
