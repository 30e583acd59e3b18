"""Small pieces with no plugin knowledge: TOML, interpolation, versions, the state table,
backoff, background tasks, telemetry, messages, the import finders for plugin folders.

Layer rules and the package map: docs/design.md, "Package map".
"""
