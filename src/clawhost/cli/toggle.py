"""``clawhost plugins enable NAME`` and ``disable NAME``: edit ``[plugins.<name>] enabled``
in config.toml, keeping every comment and the file's layout (tomlkit).

The setting is written even for a plugin that is not installed (so it can be configured
before it is installed), with a warning; disabling one that others depend on warns that
they will not run.
"""

from __future__ import annotations

import anyio
import click

from .render import err_console, make_console
from .state import AppState

__all__ = ["disable_command", "enable_command"]


def _toggle(state: AppState, name: str, enabled: bool) -> None:
    from clawhost.config.host import set_plugin_enabled
    from clawhost.errors import ConfigError

    from .inventory import take_inventory

    target = state.config_target()
    created = not target.exists()
    warn = err_console()
    try:
        inventory = anyio.run(take_inventory, state)
    except ConfigError as exc:
        # Switching a plugin on or off must not wait for the rest of the file to be fixed.
        inventory = None
        warn.print(f"Warning: {exc}", style="yellow", markup=False)
    set_plugin_enabled(target, name, enabled)
    if inventory is None:
        pass
    elif name not in inventory.views:
        known = ", ".join(sorted(inventory.views)) or "none"
        warn.print(
            f"Warning: no installed plugin is named {name!r} (installed: {known}); "
            "the setting is saved anyway.",
            style="yellow",
            markup=False,
        )
    elif not enabled:
        for other, requirement in inventory.dependents_of(name):
            if other.enabled:
                warn.print(
                    f"Warning: {other.name} requires {name} {requirement} and will not run "
                    f"while {name} is disabled.",
                    style="yellow",
                    markup=False,
                )
    action = "Enabled" if enabled else "Disabled"
    where = f"{target} (created)" if created else str(target)
    make_console().print(f"{action} {name} in {where}", markup=False)


@click.command("enable")
@click.argument("name")
@click.pass_obj
def enable_command(state: AppState, name: str) -> None:
    """Set [plugins.NAME] enabled = true in config.toml."""
    _toggle(state, name, True)


@click.command("disable")
@click.argument("name")
@click.pass_obj
def disable_command(state: AppState, name: str) -> None:
    """Set [plugins.NAME] enabled = false in config.toml."""
    _toggle(state, name, False)
