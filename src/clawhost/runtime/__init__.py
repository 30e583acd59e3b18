"""Plugin code in the host: importing it, the HostContext and its registries, tools,
events and the pipeline, plugin records, and the guard every call goes through.

Layer rules and the package map: docs/design.md, "Package map".
"""
