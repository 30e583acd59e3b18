from clawhost import hookimpl

@hookimpl
def health_check(ctx):
    raise ConnectionError("upstream down")
