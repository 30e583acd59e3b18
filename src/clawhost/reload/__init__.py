"""Hot reload's parts: a plugin's modules, the file watcher, what a reload reports.

Layer rules and the package map: docs/design.md, "Package map".
"""
