"""``PluginHost``, split by responsibility: stages, activation, the API, and the host's
procedures (reloading, rescan, worker supervision).

Layer rules and the package map: docs/design.md, "Package map".
"""
