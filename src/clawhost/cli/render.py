"""How the commands show things: rich tables and trees for people, JSON for programs.

A console is made per command, so it writes to whatever ``sys.stdout`` is then (tests
capture it). Rich turns colour off by itself when the output is not a terminal, and
honours ``NO_COLOR``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from .inventory import Inventory, PluginView

__all__ = [
    "capabilities_text",
    "echo_json",
    "err_console",
    "make_console",
    "plugins_table",
    "render_inspect",
    "shape_text",
    "status_text",
]

_KIND_LABELS = {
    "tools": "tools",
    "channels": "channels",
    "pipeline_stages": "stages",
    "providers": "providers",
    "http": "http",
}
_STATUS_STYLES = {"active": "green", "ready": "green", "disabled": "dim", "failed": "red"}


def make_console() -> Console:
    """A console on standard output."""
    return Console(highlight=False)


def err_console() -> Console:
    """A console on standard error, for warnings that must not mix with ``--json``."""
    return Console(stderr=True, highlight=False)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (plain text: no colour, no wrapping)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def capabilities_text(capabilities: Mapping[str, Iterable[str]]) -> str:
    """``tools: get_weather, get_forecast; providers: geocoder`` (``-`` for none)."""
    parts = [
        f"{_KIND_LABELS.get(kind, kind)}: {', '.join(names)}"
        for kind, names in capabilities.items()
        if names
    ]
    return "; ".join(parts) or "-"


def status_text(view: PluginView, *, limit: int = 10_000) -> Text:
    """The Status cell: ``Ready``, ``Active``, ``Disabled``, or ``Failed`` with its reason."""
    status = view.status
    text = Text(status.capitalize(), style=_STATUS_STYLES.get(status, ""))
    if view.failure is not None:
        stage, message = view.failure
        lines = message.splitlines() if message else [""]
        # A conflict's explanation starts with a headline; its next line says who needs what.
        first = (
            lines[1].strip()
            if lines[0] == "Dependency conflict detected" and len(lines) > 1
            else lines[0]
        )
        if len(first) > limit:  # the whole reason is in `plugins inspect` and --json
            first = first[: limit - 3].rstrip() + "..."
        text.append(f" ({stage}: {first})", style="red")
    return text


def shape_text(view: PluginView, *, kinds: bool = True) -> str:
    """``hybrid (channels, stages, providers)``, ``capability (tools)``, ``none``; with
    ``kinds=False`` the shape alone."""
    shape, found = view.shape()
    if not kinds or not found:
        return shape
    return f"{shape} ({', '.join(_KIND_LABELS.get(kind, kind) for kind in found)})"


def plugins_table(views: Iterable[PluginView]) -> Table:
    """The ``plugins list`` table: Name, Version, Status, Shape, Capabilities."""
    table = Table(show_lines=False)
    table.add_column("Name", style="bold", no_wrap=True)
    table.add_column("Version", no_wrap=True)
    table.add_column("Status")
    table.add_column("Shape", no_wrap=True)
    table.add_column("Capabilities")
    for view in views:
        table.add_row(
            view.name,
            view.version or "?",
            status_text(view, limit=72),
            shape_text(view, kinds=False),
            capabilities_text(view.capabilities()),
        )
    return table


def render_inspect(console: Console, view: PluginView, inventory: Inventory) -> None:
    """Everything ``plugins inspect`` knows about one plugin."""
    manifest = view.manifest
    plugin = view.plugin
    console.print(Text(f"{view.name} {view.version or ''}".strip(), style="bold"))
    fields: list[tuple[str, Any]] = [("Status", status_text(view))]
    if manifest is not None and plugin is not None:
        fields += [
            ("Description", plugin.description),
            ("Author", plugin.author),
            ("License", plugin.license),
            ("Homepage", plugin.homepage),
            (
                "Needs clawhost",
                f">= {manifest.min_clawdesk_version}" if manifest.min_clawdesk_version else None,
            ),
            ("Source", str(plugin.source)),
            ("Manifest", str(plugin.manifest_path)),
        ]
    others = [str(c.version) for c in view.record.candidates if c is not plugin]
    if others:
        fields.append(("Other versions", ", ".join(others)))
    _print_fields(console, fields)
    _section(console, "Capabilities")
    shape = shape_text(view)
    if shape == "none" and not view.active:  # event hooks are not declared in a manifest
        shape += " (declares no capability; event hooks show only once it is active)"
    console.print(f"  Shape: {shape}", markup=False)
    for kind, names in view.capabilities().items():
        console.print(f"  {_KIND_LABELS.get(kind, kind)}: {', '.join(names) or '-'}")
    _section(console, "Dependencies")
    if not view.dependencies:
        console.print("  none")
    for dependency in view.dependencies:
        mark = "[green]ok[/green]" if dependency.satisfied else "[red]not met[/red]"
        found = ", ".join(dependency.available) or "not installed"
        console.print(
            f"  {escape(dependency.name)} {escape(dependency.requirement)}: {mark} "
            f"(installed: {escape(found)})"
        )
    _section(console, "Dependents")
    dependents = inventory.dependents_of(view.name)
    if not dependents:
        console.print("  none")
    for other, requirement in dependents:
        console.print(
            f"  {escape(other.name)} {other.version or ''} requires {escape(requirement)}"
        )
    _render_permissions(console, view, inventory)
    _render_config(console, view)
    if view.record.diagnostics:
        _section(console, "Diagnostics")
        for diagnostic in view.record.diagnostics:
            console.print(f"  [{diagnostic.severity}] {diagnostic.message}", markup=False)


def _print_fields(console: Console, fields: list[tuple[str, Any]]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")  # paths wrap whole, never cut with an ellipsis
    for label, value in fields:
        if value is None or value == "":
            continue
        table.add_row(label, value if isinstance(value, Text) else Text(str(value)))
    console.print(table)


def _section(console: Console, title: str) -> None:
    console.print()
    console.print(Text(title, style="bold cyan"))


def _render_permissions(console: Console, view: PluginView, inventory: Inventory) -> None:
    """What the manifest asks for, item by item: granted (and by which config key), not
    granted, or impossible to grant; and the command that grants the rest."""
    from .permissions import assess, environment_names, grant_command

    _section(console, "Permissions")
    manifest = view.manifest
    if manifest is None:
        console.print("  unknown")
        return
    items = assess(view.name, manifest.permissions, inventory.config)
    if not items:
        console.print("  requests none")
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("Kind", "Requested", "Granted"):
        table.add_column(column, overflow="fold")
    for item in items:
        permission = item.permission
        if item.problem is not None:
            verdict = Text(f"no: cannot be granted ({item.problem})", style="red")
        elif item.granted:
            verdict = Text(f"yes, by {item.key}", style="green")
        else:
            verdict = Text("no", style="red")
        value = permission.value or "start processes, send signals"
        table.add_row(permission.kind, Text(value), verdict)
    if items:
        console.print(table)
    names = environment_names(manifest)
    if names:
        console.print(
            f"  environment: {', '.join(names)} (its settings are read from them; the sandbox "
            "does not limit the environment)",
            markup=False,
        )
    missing = [item.permission for item in items if not item.granted and item.problem is None]
    if missing:
        console.print(
            f"  To grant: {grant_command(view.name, missing)}", markup=False, soft_wrap=True
        )


def _render_config(console: Console, view: PluginView) -> None:
    _section(console, "Configuration")
    manifest = view.manifest
    if manifest is None or not manifest.config:
        console.print("  no options")
        return
    values = view.config.masked() if view.config is not None else {}
    sources = view.config.sources if view.config is not None else {}
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("Option", "Type", "Value", "From", "Description"):
        table.add_column(column, overflow="fold")
    for key, option in manifest.config.items():
        value, source = "?", "invalid"
        if view.config is not None:
            value = "-" if values.get(key) is None else json.dumps(values[key], default=str)
            source = str(sources.get(key, "unset"))
        described = option.description + (f" (env {option.env})" if option.env else "")
        table.add_row(key, option.type, Text(value), source, described)
    console.print(table)
    if view.config_error is not None:
        console.print("  [red]invalid:[/red]")
        for problem in view.config_error.problems:
            console.print(f"    - {escape(str(problem))}")


def inspect_dict(view: PluginView, inventory: Inventory) -> dict[str, Any]:
    """The ``plugins inspect --json`` object (secrets masked)."""
    from .permissions import assess, grant_command

    manifest = view.manifest
    plugin = view.plugin
    data = view.to_dict()
    data["manifest"] = (
        manifest.model_dump(mode="json", exclude={"config"}) if manifest is not None else None
    )
    if manifest is not None and plugin is not None:
        data["manifest"].update(
            description=plugin.description,
            author=plugin.author,
            license=plugin.license,
            homepage=plugin.homepage,
        )
        data["manifest_path"] = str(plugin.manifest_path)
    data["candidates"] = [
        {"version": str(c.version), "source": str(c.source)} for c in view.record.candidates
    ]
    data["dependencies"] = [dependency.to_dict() for dependency in view.dependencies]
    data["dependents"] = [
        {"name": other.name, "version": other.version, "requirement": requirement}
        for other, requirement in inventory.dependents_of(view.name)
    ]
    items = assess(view.name, manifest.permissions, inventory.config) if manifest else []
    missing = [item.permission for item in items if not item.granted and item.problem is None]
    data["permissions"] = {
        "requested": manifest.permissions.model_dump(mode="json") if manifest else None,
        "granted": (
            {
                "network": [str(rule) for rule in view.granted.network],
                "filesystem": list(view.granted.filesystem),
                "subprocess": view.granted.subprocess,
            }
            if view.granted is not None and not view.refused
            else None
        ),
        "refused": list(view.refused),
        "items": [item.to_dict() for item in items],
        "grant_command": grant_command(view.name, missing) if missing else None,
    }
    data["config"] = _config_dict(view)
    data["diagnostics"] = [diagnostic.to_dict() for diagnostic in view.record.diagnostics]
    return data


def _config_dict(view: PluginView) -> dict[str, Any]:
    manifest = view.manifest
    options = manifest.config if manifest is not None else {}
    values = view.config.masked() if view.config is not None else {}
    sources = view.config.sources if view.config is not None else {}
    return {
        "valid": view.config_error is None,
        "problems": (
            [str(problem) for problem in view.config_error.problems] if view.config_error else []
        ),
        "options": {
            key: {
                "type": option.type,
                "required": option.required,
                "secret": option.is_secret,
                "env": option.env,
                "description": option.description,
                "value": values.get(key) if view.config is not None else None,
                "source": sources.get(key, "unset") if view.config is not None else None,
            }
            for key, option in options.items()
        },
    }
