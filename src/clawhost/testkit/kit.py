"""Throw-away hosts for tests: in-memory plugins, plugin projects loaded from their source
tree, per-plugin config, and the permissions each manifest asks for granted.

``clawhost.testing`` and the pytest plugin build on this; ``make_test_host`` returns a
host that is not started yet.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig, Isolation
    from clawhost.discovery.manifest import Manifest
    from clawhost.discovery.project import PluginProject
    from clawhost.host.host import PluginHost

__all__ = [
    "PreparedPlugin",
    "granted_config",
    "load_manifest_like",
    "make_test_host",
    "prepare",
    "with_plugin_settings",
]


@dataclass(frozen=True, slots=True)
class PreparedPlugin:
    """One plugin to offer a test host: what ``host.add_plugin`` needs."""

    target: object
    name: str | None
    version: str
    manifest: Manifest | None
    project: PluginProject | None = None


def load_manifest_like(value: Any, *, name: str | None, version: str) -> Manifest:
    """A ``Manifest`` from a model, a ``[plugin]`` table, or a ``plugin.toml`` path."""
    from clawhost.discovery.manifest import Manifest, load_manifest

    if isinstance(value, Manifest):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load_manifest(Path(value), required=())
    if isinstance(value, Mapping):
        data = dict(value)
        data.setdefault("name", name)
        data.setdefault("version", version)
        return Manifest.model_validate({key: val for key, val in data.items() if val is not None})
    raise TypeError(f"a manifest is a Manifest, a dict or a path to plugin.toml, not {value!r}")


def prepare(spec: Any, *, version: str = "0.1.0") -> list[PreparedPlugin]:
    """What one plugin spec offers a host.

    A spec is a plugin object (an instance, class or module with ``@hookimpl`` hooks), a
    ``(name, object)`` or ``(name, object, manifest)`` tuple, or a ``pathlib.Path`` to a
    plugin project (every plugin it holds, imported from its source tree on activation,
    as ``PluginHost.add_project`` offers it).
    """
    from clawhost.discovery.project import read_project

    if isinstance(spec, os.PathLike):
        return [
            PreparedPlugin(None, project.name, project.version, project.manifest, project)
            for project in read_project(Path(spec))
        ]
    if isinstance(spec, str):
        raise TypeError(
            f"{spec!r}: pass a pathlib.Path for a plugin project, or a plugin object; "
            "installed plugins are found by discovery (path=None)"
        )
    if isinstance(spec, tuple):
        if len(spec) == 2:
            name, target = spec
            return [PreparedPlugin(target, name, version, None)]
        if len(spec) == 3:
            name, target, manifest = spec
            model = load_manifest_like(manifest, name=name, version=version)
            return [PreparedPlugin(target, name, model.version or version, model)]
        raise TypeError(f"a plugin tuple is (name, object) or (name, object, manifest): {spec!r}")
    return [PreparedPlugin(spec, None, version, None)]


def with_plugin_settings(
    base: HostConfig,
    name: str,
    *,
    values: Mapping[str, Any] | None = None,
    sandbox: Mapping[str, Any] | None = None,
) -> HostConfig:
    """``base`` with ``[plugins.<name>.config]`` values added and sandbox keys overridden."""
    from clawhost.config.host import SandboxOverrides

    settings = base.settings_for(name)
    update: dict[str, Any] = {}
    if values is not None:
        update["config"] = {**settings.config, **values}
    if sandbox is not None:
        given = {key: getattr(settings.sandbox, key) for key in settings.sandbox.model_fields_set}
        update["sandbox"] = SandboxOverrides(**{**given, **sandbox})
    if not update:
        return base
    plugin_settings = {**base.plugins.plugin_settings, name: settings.model_copy(update=update)}
    plugins = base.plugins.model_copy(update={"plugin_settings": plugin_settings})
    return base.model_copy(update={"plugins": plugins})


def granted_config(base: HostConfig, manifests: Mapping[str, Manifest]) -> HostConfig:
    """``base`` with every plugin's sandbox granting what its manifest asks for.

    A test checks the plugin, not the host's policy: a plugin asking for the network would
    otherwise be refused before its code runs.
    """
    config = base
    for name, manifest in manifests.items():
        asked = manifest.permissions
        folders = [os.path.expanduser(os.path.expandvars(entry)) for entry in asked.filesystem]
        config = with_plugin_settings(
            config,
            name,
            sandbox={
                "net_allowed": tuple(asked.network),
                "fs_allowed": tuple(folder for folder in folders if os.path.isabs(folder)),
                "allow_subprocess": asked.subprocess,
            },
        )
    return config


def make_test_host(
    *plugins: Any,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    host_config: HostConfig | None = None,
    grant_requested: bool | None = None,
    isolation: Isolation | None = None,
    **options: Any,
) -> PluginHost:
    """A host offering ``plugins`` (see ``prepare``), not started yet.

    ``isolation = "process"`` runs every plugin in a worker process of its own (plugin
    projects and installed plugins only: a plugin object has no code a worker can
    import); the default is the host config's, which is in-process.
    ``config`` maps plugin names to their ``[plugins.<name>.config]`` values.
    ``host_config`` is the whole host configuration to start from (default: every
    default). ``grant_requested`` (default: when no ``host_config`` is given) grants each
    plugin with a manifest the permissions it asks for. Other options go to
    ``PluginHost.test_instance`` (``path=None`` also discovers installed plugins).
    """
    from clawhost.config.host import HostConfig
    from clawhost.host.host import PluginHost

    prepared = [item for spec in plugins for item in prepare(spec)]
    base = host_config if host_config is not None else HostConfig()
    if grant_requested is None:
        grant_requested = host_config is None
    if grant_requested:
        base = granted_config(
            base,
            {
                item.name: item.manifest
                for item in prepared
                if item.name is not None and item.manifest is not None
            },
        )
    for name, values in (config or {}).items():
        base = with_plugin_settings(base, name, values=values)
    if isolation is not None:
        sandbox = base.plugins.sandbox.model_copy(update={"isolation": isolation})
        base = base.model_copy(
            update={"plugins": base.plugins.model_copy(update={"sandbox": sandbox})}
        )
    host = PluginHost.test_instance(config=base, **options)
    for item in prepared:
        if item.project is not None:
            host._add_project(item.project)
        else:
            host.add_plugin(
                item.target, name=item.name, version=item.version, manifest=item.manifest
            )
    return host
