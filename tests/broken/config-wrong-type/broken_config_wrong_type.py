from clawhost import hookimpl

@hookimpl
def activate(ctx):
    pass
