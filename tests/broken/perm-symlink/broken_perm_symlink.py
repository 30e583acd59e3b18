import os
from pathlib import Path

from clawhost import hookimpl, tool

HERE = Path(__file__).parent

@tool
def follow_link() -> str:
    """Read a file it was not granted."""
    return Path(HERE / "data" / "passwd").read_text()

@hookimpl
def activate(ctx):
    ctx.register_tool(follow_link)
