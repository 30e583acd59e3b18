from clawhost import hookimpl

@hookimpl
def activate(ctx):
    ctx.register_channel_factory("pager", "not a function")
