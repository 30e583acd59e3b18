"""Would installing these plugins leave any plugin unresolvable? Checked before pip runs.

The installed plugins, minus the distributions about to be replaced, plus the new ones
pinned to the versions fetched, go through the same resolver the host uses
(``resolve_plan(..., pinned=...)``). A new plugin that cannot be resolved, or an
installed one that resolved before and would not after, is a conflict.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from clawhost.discovery.discover import SourceKind

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.errors import ResolutionError

__all__ = ["explain", "find_conflicts", "permission_warnings"]


def _canonical(name: str | None) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name or "")


def find_conflicts(
    installed: Sequence[DiscoveredPlugin],
    new: Sequence[DiscoveredPlugin],
    config: HostConfig,
    *,
    host_version: str,
) -> dict[str, ResolutionError]:
    """The plugins that would fail to resolve once ``new`` replaces what it replaces."""
    from clawhost.resolution.resolve import resolve_plan

    new_names = {plugin.name for plugin in new}
    new_distributions = {_canonical(plugin.source.distribution) for plugin in new}
    # pip replaces an installed distribution; directory plugins stay where they are.
    kept = [
        plugin
        for plugin in installed
        if not (
            plugin.source.kind is SourceKind.DISTRIBUTION
            and (
                plugin.name in new_names
                or _canonical(plugin.source.distribution) in new_distributions
            )
        )
    ]
    disabled = {
        name for name, settings in config.plugins.plugin_settings.items() if not settings.enabled
    }
    before = resolve_plan(installed, host_version=host_version, disabled=disabled)
    after = resolve_plan(
        [*kept, *new],
        host_version=host_version,
        disabled=disabled,
        pinned={plugin.name: plugin.version for plugin in new if plugin.name not in disabled},
    )
    return {
        name: error
        for name, error in after.failures.items()
        if name in new_names or name not in before.failures
    }


def explain(error: ResolutionError, *, command: str, spec: str) -> str:
    """Why ``error`` stops the command, with suggestions ending in the ``--force`` one."""
    from clawhost.errors import DependencyFailed, HostTooOld, MissingDependency, VersionConflict

    target = f" {shlex.quote(spec)}" if spec else ""
    force = f"Use 'clawhost plugins {command}{target} --force' to override (risky)"
    if isinstance(error, VersionConflict):
        # The resolver names the plugin in its own --force suggestion; the user typed SPEC.
        kept = tuple(item for item in error.suggestions if "--force" not in item)
        rebuilt = VersionConflict(
            error.plugin,
            error.dependency,
            error.chain,
            error.available,
            (*kept, force),
            error.unusable,
        )
        return rebuilt.render()
    suggestions: list[str] = []
    if isinstance(error, MissingDependency):
        head = "Dependency not found"
        if error.disabled:
            suggestions.append(f"Enable it: clawhost plugins enable {error.dependency}")
        else:
            suggestions.append(
                f"Install the required dependency plugin first: "
                f"clawhost plugins install {error.dependency}"
            )
    elif isinstance(error, HostTooOld):
        head = "Incompatible version"
        suggestions.append(
            f"Upgrade clawhost to {error.required} or later, or install an older "
            f"{error.plugin} (see min_clawdesk_version in its manifest)"
        )
    elif isinstance(error, DependencyFailed):
        head = "Dependency failed"
        suggestions.append(
            f"Fix {error.dependency} first: clawhost plugins inspect {error.dependency}"
        )
    else:
        head = "Cannot resolve"
    suggestions.append(force)
    lines = [head, f"  {error}", "Suggestions:"]
    lines.extend(f"  {index}. {text}" for index, text in enumerate(suggestions, 1))
    return "\n".join(lines)


def permission_warnings(new: Iterable[DiscoveredPlugin], config: HostConfig) -> list[str]:
    """What each new plugin asks for that the host config does not grant (it would not
    load until granted): a warning, not a conflict."""
    from clawhost.errors import PermissionsRefused
    from clawhost.sandbox.permissions import grant_from_config

    warnings = []
    for plugin in new:
        try:
            grant_from_config(plugin.name, plugin.manifest.permissions, config, package_dir=None)
        except PermissionsRefused as exc:
            refused = "; ".join(exc.refused)
            fix = f": {exc.command}" if exc.command else ""
            warnings.append(
                f"{plugin.name} asks for permissions the host config does not grant ({refused}); "
                f"it will not load until they are granted{fix}"
            )
        except ValueError as exc:
            warnings.append(f"{plugin.name}: {exc}")
    return warnings
