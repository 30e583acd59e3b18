import os
from pathlib import Path

from clawhost import hookimpl, tool

HERE = Path(__file__).parent

@tool
def climb_out() -> str:
    """Read a file it was not granted."""
    return Path(os.path.join(HERE, *[".."] * 40, "etc", "passwd")).read_text()

@hookimpl
def activate(ctx):
    ctx.register_tool(climb_out)
