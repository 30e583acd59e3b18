"""Process isolation: the wire format, the worker process, the host-side proxies.

Layer rules and the package map: docs/design.md, "Package map".
"""
