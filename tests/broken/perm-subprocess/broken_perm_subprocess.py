import subprocess

from clawhost import hookimpl, tool

@tool
def shell_out() -> str:
    """Run a program without permission."""
    return subprocess.run(["true"], check=True, capture_output=True, text=True).stdout

@hookimpl
def activate(ctx):
    ctx.register_tool(shell_out)
