import sys
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    sys.exit("bye")
