"""What the outside world talks to: the HTTP app, supervised channels, the MCP bridge.

Layer rules and the package map: docs/design.md, "Package map".
"""
