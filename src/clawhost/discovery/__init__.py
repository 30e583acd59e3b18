"""Finding plugins without importing them: entry points, plugin directories, projects,
the manifest, the discovery cache.

Layer rules and the package map: docs/design.md, "Package map".
"""
