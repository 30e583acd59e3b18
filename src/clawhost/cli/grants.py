"""``clawhost plugins grant NAME [PERMISSION]...`` and ``revoke NAME [PERMISSION]...``.

A PERMISSION is ``network`` (everything the plugin asks for of that kind),
``network:HOST:PORT`` (one endpoint it asks for, or a pattern covering some: recorded as
given), ``filesystem``, ``filesystem:PATH``, or ``subprocess``; none means everything
the manifest asks for. Both edit the plugin's own ``[plugins.<name>.sandbox]`` in
config.toml, keeping comments and layout (see ``permissions``). ``grant`` shows what it
is about to grant and asks once, unless ``--yes``; ``revoke`` takes back without asking,
and says that the host will not load a plugin that asks for more than it is granted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .render import err_console, make_console
from .state import AppState

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.discover import DiscoveredPlugin

__all__ = ["grant_command", "revoke_command"]

_PERMISSION_HELP = (
    "PERMISSION is network, network:HOST:PORT, filesystem, filesystem:PATH or subprocess; "
    "none means everything the plugin's manifest asks for."
)


def _config(state: AppState) -> tuple[HostConfig, Path]:
    """The configuration in use and the file grants are written to (which may not exist
    yet: then every setting is a default, relative to its folder)."""
    from clawhost.config.host import HostConfig

    target = state.config_target()
    if not target.exists():
        return HostConfig(base_dir=target.parent), target
    return state.load_config(), target


def _plugin(state: AppState, config: HostConfig, name: str) -> DiscoveredPlugin:
    """The installed plugin ``name`` (its newest version, which the host prefers)."""
    from clawhost.core.versions import parse_version
    from clawhost.discovery.discover import discover_plugins
    from clawhost.errors import PluginNotFound

    found = discover_plugins(
        group=config.plugins.entry_point_group,
        path=state.search_path,
        dirs=config.plugins.dirs,
        cache=False,
    )
    mine = [plugin for plugin in found.plugins if plugin.name == name]
    if not mine:
        raise PluginNotFound(name, tuple(sorted({plugin.name for plugin in found.plugins})))
    return max(mine, key=lambda plugin: parse_version(str(plugin.version)))


@click.command("grant", epilog=_PERMISSION_HELP)
@click.argument("name")
@click.argument("permissions", nargs=-1, metavar="[PERMISSION]...")
@click.option("--yes", "-y", is_flag=True, help="Grant without asking (for scripts).")
@click.pass_obj
def grant_command(state: AppState, name: str, permissions: tuple[str, ...], yes: bool) -> None:
    """Grant NAME permissions its manifest asks for (all of them when none is named), in
    config.toml's [plugins.NAME.sandbox]."""
    from clawhost.errors import ClawhostError

    from .consent import NOT_A_TERMINAL, describe_item, interactive
    from .permissions import assess, edit_grants, requested, select

    config, target = _config(state)
    plugin = _plugin(state, config, name)
    asked = requested(plugin.manifest.permissions)
    console = make_console()
    if not asked:
        console.print(
            f"{name} {plugin.version} asks for no permissions.", markup=False, soft_wrap=True
        )
        return
    selections = select(name, permissions, asked, file=target, verb="grant")
    items = {item.permission: item for item in assess(name, plugin.manifest.permissions, config)}
    chosen = list(dict.fromkeys(p for selection in selections for p in selection.covers))
    new = [items[permission] for permission in chosen if not items[permission].granted]
    if not new:
        listed = ", ".join(str(permission) for permission in chosen)
        console.print(
            f"{name} is already granted {listed}: nothing to do.", markup=False, soft_wrap=True
        )
        return
    console.print(f"Grant {name} {plugin.version}:", markup=False, soft_wrap=True)
    for item in new:
        wider = [s.pattern for s in selections if s.pattern and item.permission in s.covers]
        shown = f"  (as {wider[0]})" if wider else ""
        console.print(f"  {describe_item(item)}{shown}", markup=False, soft_wrap=True)
    if not yes:
        if not interactive():
            raise ClawhostError(f"nothing granted: {NOT_A_TERMINAL}")
        click.confirm(f"Grant them (recorded in {target})?", default=False, abort=True, err=True)
    updated = edit_grants(target, config, name, asked, grant=selections)
    listed = ", ".join(str(item.permission) for item in new)
    console.print(
        f"Granted {name}: {listed} (in {target}, [plugins.{name}.sandbox])",
        markup=False,
        soft_wrap=True,
    )
    _still_refused(name, plugin, updated)


def _still_refused(name: str, plugin: DiscoveredPlugin, config: HostConfig) -> None:
    """Warn when the plugin still asks for something it is not granted."""
    from .permissions import assess, grant_command, host_refusal

    refusal = host_refusal(name, plugin.manifest.permissions, config)
    if refusal is None:
        return
    missing = [
        item.permission
        for item in assess(name, plugin.manifest.permissions, config)
        if not item.granted and item.problem is None
    ]
    lines = [f"Warning: {name} will still not load: {refusal}"]
    if missing:
        lines.append(f"To grant the rest: {grant_command(name, missing)}")
    err_console().print("\n".join(lines), style="yellow", markup=False, soft_wrap=True)


@click.command("revoke", epilog=_PERMISSION_HELP)
@click.argument("name")
@click.argument("permissions", nargs=-1, metavar="[PERMISSION]...")
@click.pass_obj
def revoke_command(state: AppState, name: str, permissions: tuple[str, ...]) -> None:
    """Take back permissions granted to NAME (all of them when none is named), in
    config.toml's [plugins.NAME.sandbox]."""
    from .permissions import assess, edit_grants, grant_command, requested, select

    config, target = _config(state)
    plugin = _plugin(state, config, name)
    asked = requested(plugin.manifest.permissions)
    console = make_console()
    if not asked:
        console.print(
            f"{name} {plugin.version} asks for no permissions.", markup=False, soft_wrap=True
        )
        return
    selections = select(name, permissions, asked, file=target, verb="revoke")
    chosen = list(dict.fromkeys(p for selection in selections for p in selection.covers))
    granted = {
        item.permission
        for item in assess(name, plugin.manifest.permissions, config)
        if item.granted
    }
    taken = [permission for permission in chosen if permission in granted]
    if not taken:
        console.print(
            f"{name} is not granted {', '.join(str(p) for p in chosen)}: nothing to revoke.",
            markup=False,
            soft_wrap=True,
        )
        return
    edit_grants(target, config, name, asked, revoke=taken)
    listed = ", ".join(str(permission) for permission in taken)
    console.print(
        f"Revoked {name}: {listed} (in {target}, [plugins.{name}.sandbox])",
        markup=False,
        soft_wrap=True,
    )
    err_console().print(
        f"{name} will not load while its manifest asks for what it is not granted; "
        f"to grant it again: {grant_command(name, taken)}",
        style="yellow",
        markup=False,
        soft_wrap=True,
    )
