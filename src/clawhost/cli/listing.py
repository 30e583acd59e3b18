"""``clawhost plugins list`` and ``clawhost plugins inspect NAME``.

Both discover, load and resolve without importing plugin code, so Status says whether
each plugin is ready to run, disabled, or failed (stage and reason), and Shape what kinds
of capability it declares. ``list --activate`` also activates each plugin, in a subprocess
of its own, and counts what it registered in its shape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import anyio
import click

from .inventory import Inventory, take_inventory
from .render import (
    echo_json,
    err_console,
    inspect_dict,
    make_console,
    plugins_table,
    render_inspect,
)
from .state import AppState

if TYPE_CHECKING:
    from clawhost.runtime.context import Registrations

__all__ = ["inspect_command", "list_command"]


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option(
    "--activate",
    is_flag=True,
    help="Also activate each plugin (and run its health check) in a throw-away "
    "subprocess, and show whether it came up.",
)
@click.pass_obj
def list_command(state: AppState, as_json: bool, activate: bool) -> None:
    """List installed plugins: Name, Version, Status, Shape, Capabilities."""
    inventory = anyio.run(take_inventory, state)
    if activate:
        _activate(state, inventory)
    views = list(inventory.views.values())
    if as_json:
        echo_json([view.to_dict() for view in views])
        return
    console = make_console()
    if not views:
        console.print("No plugins installed.")
    else:
        console.print(plugins_table(views))
    problems = [d for d in inventory.diagnostics if d.plugin not in inventory.views]
    for diagnostic in problems:
        console.print(
            f"[{diagnostic.severity}] {diagnostic.message} ({diagnostic.source})",
            markup=False,
            style="yellow",
        )


def _activate(state: AppState, inventory: Inventory) -> None:
    from .probes import run_probes

    ready = [view.name for view in inventory.views.values() if view.status == "ready"]
    for name, result in run_probes(state, ready).items():
        view = inventory.views[name]
        report = result.report
        if report is None:
            view.failure = ("activate", f"crashed: {result.crash}")
            continue
        blocking = [f for f in report.errors if f.step in _BEFORE_ACTIVE]
        if blocking:
            view.failure = (blocking[0].step, blocking[0].message)
            continue
        # It came up; a later problem (health, deactivation) is shown beside "Active".
        view.active = True
        view.registered = _registrations(report.registered)
        if report.errors:
            view.failure = (report.errors[0].step, report.errors[0].message)


_BEFORE_ACTIVE = frozenset({"discover", "load", "resolve", "activate"})


def _registrations(registered: Mapping[str, Iterable[str]]) -> Registrations:
    """A probe report's ``registered`` (``Registrations.as_dict``) read back."""
    from dataclasses import fields

    from clawhost.runtime.context import Registrations

    kinds = (item.name for item in fields(Registrations))
    return Registrations(**{kind: tuple(registered.get(kind, ())) for kind in kinds})


@click.command("inspect")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def inspect_command(state: AppState, name: str, as_json: bool) -> None:
    """Show one plugin: manifest, state, dependencies, permissions, configuration."""
    inventory = anyio.run(take_inventory, state)
    if name not in inventory.views:
        # Found on disk but unusable (an invalid manifest): say why before "not found".
        for diagnostic in inventory.diagnostics:
            if diagnostic.plugin == name:
                err_console().print(str(diagnostic), markup=False)
    view = inventory.get(name)
    if as_json:
        echo_json(inspect_dict(view, inventory))
        return
    render_inspect(make_console(), view, inventory)
