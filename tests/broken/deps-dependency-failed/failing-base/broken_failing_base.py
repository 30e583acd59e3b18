from clawhost import hookimpl

@hookimpl
def activate(ctx):
    raise RuntimeError("base cannot start")
