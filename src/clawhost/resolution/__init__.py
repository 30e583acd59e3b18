"""Choosing one version of every plugin: candidates, resolvelib, the activation plan, and
the explanation of every conflict.

Layer rules and the package map: docs/design.md, "Package map".
"""
