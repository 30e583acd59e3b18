"""What is installed and whether each plugin is ready to run, read without importing any
plugin code: discover, load and resolve in a host that is never started, then check each
resolved plugin's configuration against its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from clawhost.core.state import PluginState
from clawhost.runtime.shape import Shape, classify

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.config.plugin import PluginConfig
    from clawhost.discovery.discover import Diagnostic, DiscoveredPlugin
    from clawhost.discovery.manifest import Manifest
    from clawhost.errors import PluginConfigError
    from clawhost.host.host import PluginHost
    from clawhost.runtime.context import Registrations
    from clawhost.runtime.records import PluginRecord
    from clawhost.sandbox.permissions import EffectivePermissions

    from .state import AppState

__all__ = ["Dependency", "Inventory", "PluginView", "take_inventory"]


@dataclass(frozen=True, slots=True)
class Dependency:
    """One ``[plugin.dependencies]`` requirement and what is installed to meet it."""

    name: str
    requirement: str
    available: tuple[str, ...]  #: installed versions, newest first
    selected: str | None  #: the version the resolver chose, if it chose one
    satisfied: bool

    def to_dict(self) -> dict[str, Any]:
        """The ``plugins inspect --json`` form."""
        return {
            "name": self.name,
            "requirement": self.requirement,
            "available": list(self.available),
            "selected": self.selected,
            "satisfied": self.satisfied,
        }


@dataclass
class PluginView:
    """One plugin as the management commands show it."""

    record: PluginRecord
    enabled: bool
    failure: tuple[str, str] | None = None  #: (stage, message)
    config: PluginConfig | None = None
    config_error: PluginConfigError | None = None
    dependencies: list[Dependency] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    granted: EffectivePermissions | None = None
    refused: tuple[str, ...] = ()
    active: bool | None = None  #: set by ``--activate`` probes
    #: What it registered while active, when an ``--activate`` probe brought it up.
    registered: Registrations | None = None

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.record.name

    @property
    def version(self) -> str | None:
        """The version in use (the resolved one, else the newest found)."""
        version = self.record.version
        return str(version) if version is not None else None

    @property
    def plugin(self) -> DiscoveredPlugin | None:
        """The discovered version in use."""
        return self.record.plugin

    @property
    def manifest(self) -> Manifest | None:
        """The manifest of the version in use."""
        return self.record.manifest

    @property
    def state(self) -> PluginState:
        """The lifecycle state, counting a config problem as FAILED and a successful
        ``--activate`` probe as ACTIVE."""
        if self.active:
            return PluginState.ACTIVE
        if self.failure is not None:
            return PluginState.FAILED
        return self.record.state

    @property
    def status(self) -> str:
        """``active``, ``ready``, ``disabled`` or ``failed``."""
        state = self.state
        if state is PluginState.ACTIVE:
            return "active"
        if state is PluginState.DISABLED:
            return "disabled"
        if state is PluginState.FAILED:
            return "failed"
        return "ready" if state is PluginState.RESOLVED else state.value

    def capabilities(self) -> dict[str, list[str]]:
        """What the manifest declares, by kind."""
        manifest = self.manifest
        if manifest is None:
            return {}
        return {kind: list(names) for kind, names in manifest.capabilities.model_dump().items()}

    def shape(self) -> tuple[Shape, tuple[str, ...]]:
        """The plugin's shape and kinds (``clawhost.runtime.shape.classify``): from the manifest,
        joined by what it registered when an ``--activate`` probe brought it up."""
        return classify(self.manifest, self.registered if self.active else None)

    def to_dict(self) -> dict[str, Any]:
        """The ``plugins list --json`` object."""
        plugin = self.plugin
        shape, kinds = self.shape()
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "status": self.status,
            "enabled": self.enabled,
            "capabilities": self.capabilities(),
            "shape": shape,
            "kinds": list(kinds),
            "source": str(plugin.source) if plugin else None,
            "distribution": plugin.source.distribution if plugin else None,
            "error": (
                {"stage": self.failure[0], "message": self.failure[1]} if self.failure else None
            ),
        }


@dataclass
class Inventory:
    """Every plugin found, in a host that was resolved but never started."""

    config: HostConfig
    host: PluginHost
    views: dict[str, PluginView]
    diagnostics: list[Diagnostic]

    def get(self, name: str) -> PluginView:
        """The plugin named ``name``; ``PluginNotFound`` naming the known ones."""
        from clawhost.errors import PluginNotFound

        try:
            return self.views[name]
        except KeyError:
            raise PluginNotFound(name, tuple(sorted(self.views))) from None

    def dependents_of(self, name: str) -> list[tuple[PluginView, str]]:
        """The plugins whose manifest requires ``name``, with the requirement."""
        found = []
        for view in self.views.values():
            manifest = view.manifest
            if manifest is not None and name in manifest.requirements and view.name != name:
                found.append((view, manifest.requirements[name]))
        return sorted(found, key=lambda item: item[0].name)


async def take_inventory(state: AppState, *, cache: bool = True) -> Inventory:
    """Discover, load and resolve every plugin, and check each one's configuration."""
    config = state.load_config()
    host = state.host(cache=cache)
    host.discover()
    await host.resolve()
    views = {name: _view(host, config, record) for name, record in sorted(host.plugins.items())}
    inventory = Inventory(config, host, views, list(host.diagnostics))
    for view in views.values():
        view.dependents = [other.name for other, _ in inventory.dependents_of(view.name)]
    return inventory


def _view(host: PluginHost, config: HostConfig, record: PluginRecord) -> PluginView:
    from clawhost.errors import PermissionsRefused, PluginConfigError

    view = PluginView(record, enabled=config.settings_for(record.name).enabled)
    manifest = record.manifest
    plugin = record.plugin
    if record.failure is not None:
        # A refusal's reason ends with the `clawhost plugins grant` command itself.
        view.failure = (record.failure.stage, record.failure.reason)
    if manifest is None or plugin is None:
        return view
    view.dependencies = _dependencies(host, manifest)
    try:
        view.granted = _grant(config, record.name, plugin)
    except PermissionsRefused as exc:
        view.refused = exc.refused
    except ValueError as exc:  # a malformed net_allowed entry is the host's mistake
        view.refused = (str(exc),)
    try:
        view.config = _validate_config(config, record.name, manifest)
    except PluginConfigError as exc:
        view.config_error = exc
        if record.state is PluginState.RESOLVED:
            view.failure = ("config", str(exc))
    return view


def _dependencies(host: PluginHost, manifest: Manifest) -> list[Dependency]:
    from clawhost.core.versions import parse_requirement

    found = []
    for name, requirement in sorted(manifest.requirements.items()):
        other = host.plugins.get(name)
        available = tuple(str(item.version) for item in other.candidates) if other else ()
        selected = str(other.selected.version) if other is not None and other.selected else None
        try:
            wanted = parse_requirement(requirement)
            satisfied = selected is not None and wanted.contains(selected)
        except ValueError:
            satisfied = False
        found.append(Dependency(name, requirement, available, selected, satisfied))
    return found


def _grant(config: HostConfig, name: str, plugin: DiscoveredPlugin) -> EffectivePermissions:
    from clawhost.sandbox.permissions import grant_from_config

    return grant_from_config(
        name, plugin.manifest.permissions, config, package_dir=plugin.package_dir
    )


def _validate_config(config: HostConfig, name: str, manifest: Manifest) -> PluginConfig:
    from clawhost.config.plugin import validate_plugin_config

    return validate_plugin_config(
        name, manifest.config, config.settings_for(name).config, file=config.file
    )
