from clawhost import hookimpl

@hookimpl
def activate(ctx):
    raise RuntimeError("new version is broken")
