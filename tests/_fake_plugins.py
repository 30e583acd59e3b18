"""Discovered-plugin records built in memory, for the resolver's tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clawhost import DiscoveredPlugin, Manifest, PluginSource, SourceKind


def make_plugin(
    name: str,
    version: str,
    requires: Mapping[str, Any] | None = None,
    *,
    min_host: str | None = None,
    validate: bool = True,
) -> DiscoveredPlugin:
    """One version of one plugin, as discovery would report it.

    ``validate=False`` builds the manifest with ``Manifest.model_construct``, which lets a
    test hand the resolver what pydantic would have refused (an invalid requirement).
    """
    data: dict[str, Any] = {"name": name, "version": version, "dependencies": dict(requires or {})}
    if min_host is not None:
        data["min_clawdesk_version"] = min_host
    manifest = Manifest.model_validate(data) if validate else Manifest.model_construct(**data)
    folder = f"/plugins/{name}-{version}"
    source = PluginSource(SourceKind.DIRECTORY, name.replace("-", "_"), folder, folder)
    return DiscoveredPlugin(name, version, source, f"{folder}/plugin.toml", manifest=manifest)
