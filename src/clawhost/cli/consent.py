"""Asking once before a plugin gets what its manifest asks for (install, update, grant).

The permissions the host config does not grant yet are listed, plugin by plugin, and one
question covers them all. For an update that is only what the new version asks for on
top of what the old one was granted: an escalation needs consent again, an unchanged
request does not. ``--yes`` answers for scripts; without it, a command whose standard
input is not a terminal never grants anything: it says what was not granted, what the
host will do about it, and the exact ``clawhost plugins grant`` command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from .permissions import (
    Item,
    assess,
    edit_grants,
    environment_names,
    grant_command,
    host_refusal,
    requested,
    select,
)

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.discover import DiscoveredPlugin

__all__ = [
    "DECLINED",
    "NOT_A_TERMINAL",
    "Request",
    "ask",
    "describe_item",
    "interactive",
    "record",
    "report_not_granted",
    "requests_for",
    "show",
]

#: Why nothing was granted: not asked, because no one could have answered.
NOT_A_TERMINAL = "standard input is not a terminal, so no one was asked; --yes grants"
DECLINED = "declined"


@dataclass(frozen=True)
class Request:
    """What one plugin asks for that the config does not grant yet."""

    plugin: DiscoveredPlugin
    pending: tuple[Item, ...]  #: grantable, not granted
    blocked: tuple[Item, ...]  #: can never be granted (a relative path, ...)

    @property
    def name(self) -> str:
        """The plugin's name."""
        return self.plugin.name


def requests_for(plugins: Sequence[DiscoveredPlugin], config: HostConfig) -> list[Request]:
    """For each plugin, what it asks for beyond what ``config`` grants."""
    found = []
    for plugin in plugins:
        items = assess(plugin.name, plugin.manifest.permissions, config)
        pending = tuple(item for item in items if not item.granted and item.problem is None)
        blocked = tuple(item for item in items if item.problem is not None)
        found.append(Request(plugin, pending, blocked))
    return found


def interactive() -> bool:
    """Whether someone can answer a question: standard input is a terminal."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def describe_item(item: Item) -> str:
    """``network     api.example.com:443``, aligned for a list."""
    permission = item.permission
    value = permission.value or "may start processes and send signals"
    return f"{permission.kind:<11} {value}"


def show(console: Console, requests: Sequence[Request], *, update: bool) -> None:
    """List what each plugin asks for that is not granted yet."""
    for request in requests:
        if not (request.pending or request.blocked):
            continue
        version = f"{request.name} {request.plugin.version}"
        if update:
            console.print(
                f"{version} asks for more than it was granted:", markup=False, soft_wrap=True
            )
        else:
            console.print(f"{version} asks for these permissions:", markup=False, soft_wrap=True)
        for item in request.pending:
            console.print(f"  {describe_item(item)}", markup=False, soft_wrap=True)
        for item in request.blocked:
            console.print(
                f"  {describe_item(item)}  (cannot be granted: {item.problem})",
                markup=False,
                soft_wrap=True,
            )
        names = environment_names(request.plugin.manifest)
        if names and not update:
            console.print(
                f"  (its settings are read from the environment variables {', '.join(names)}; "
                "the sandbox does not limit the environment)",
                markup=False,
                soft_wrap=True,
            )


def ask(
    console: Console,
    requests: Sequence[Request],
    *,
    target: Path,
    yes: bool,
    update: bool = False,
) -> str | None:
    """Show the permissions ``requests`` need and ask once; ``None`` when they are to be
    granted, else why not (``DECLINED``, ``NOT_A_TERMINAL``). Nothing pending: ``None``."""
    show(console, requests, update=update)
    names = [request.name for request in requests if request.pending]
    if not names:
        return None
    if yes:
        return None
    if not interactive():
        return NOT_A_TERMINAL
    question = f"Grant them to {', '.join(names)} (recorded in {target})?"
    return None if click.confirm(question, default=False, err=True) else DECLINED


def record(
    console: Console, requests: Sequence[Request], config: HostConfig, target: Path
) -> HostConfig:
    """Write every pending grant of ``requests`` into ``target``; returns the config as
    it is now."""
    for request in requests:
        if not request.pending:
            continue
        asked = requested(request.plugin.manifest.permissions)
        tokens = [item.permission.token for item in request.pending]
        selections = select(request.name, tokens, asked, file=target, verb="grant")
        config = edit_grants(target, config, request.name, asked, grant=selections)
        listed = ", ".join(str(item.permission) for item in request.pending)
        console.print(
            f"Granted {request.name}: {listed} (in {target}, [plugins.{request.name}.sandbox])",
            markup=False,
            soft_wrap=True,
        )
    return config


def report_not_granted(
    warn: Console, requests: Sequence[Request], config: HostConfig, why: str
) -> None:
    """Say, for each plugin left asking for more than it is granted, that it will not
    load, the host's own refusal, and the command that grants what it asks for."""
    for request in requests:
        if not (request.pending or request.blocked):
            continue
        refusal = host_refusal(request.name, request.plugin.manifest.permissions, config)
        lines = [
            f"Not granted ({why}): {request.name} {request.plugin.version} will not load "
            "until it is granted what it asks for. The host refuses it with:",
            f"  {refusal}",
        ]
        if request.pending:
            permissions = [item.permission for item in request.pending]
            lines += ["To grant it:", f"  {grant_command(request.name, permissions)}"]
        if request.blocked:
            lines.append(
                f"Some of it cannot be granted at all: {request.name}'s manifest must change."
            )
        warn.print("\n".join(lines), style="yellow", markup=False, soft_wrap=True)
