"""``config.toml`` (``HostConfig``) and per-plugin config validated against the manifest.

Layer rules and the package map: docs/design.md, "Package map".
"""
