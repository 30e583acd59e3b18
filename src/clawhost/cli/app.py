"""The ``clawhost`` command tree, its global options, and how failures are shown.

::

    clawhost [--config FILE] [--path DIR]... [--log-level LEVEL] [--debug]
      plugins list [--json] [--activate]
      plugins inspect NAME [--json]
      plugins enable NAME | disable NAME
      plugins install SPEC [--branch B] [--force] [--dry-run] [--no-deps] [--yes]
                           [--installer pip|uv]
      plugins update [NAME] [--force] [--dry-run] [--yes] [--installer pip|uv]
      plugins uninstall NAME [--yes] [--installer pip|uv]
      plugins grant NAME [PERMISSION]... [--yes]
      plugins revoke NAME [PERMISSION]...
      plugins create NAME [--directory DIR]
      plugins test PATH [--json] [--with SPEC]...
      doctor [--json] [--no-activate] [--fix]
      gateway [--config FILE] [--log-level LEVEL]
      mcp [--config FILE] [--log-level LEVEL] [--name NAME]

A user error (an invalid config, an unknown plugin, a conflict, pip failing) is one
``Error: ...`` line (with the details it carries) and exit status 1; ``--debug`` shows the
traceback as well. Usage mistakes exit with status 2, as click does.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import click

from clawhost._version import __version__

from .admin import admin_command
from .create import create_command
from .doctor import doctor_command
from .gateway import gateway_command
from .grants import grant_command, revoke_command
from .harness import test_command
from .install import install_command, uninstall_command, update_command
from .listing import inspect_command, list_command
from .mcp import mcp_command
from .state import LEVELS, AppState, cli_logging, find_config
from .toggle import disable_command, enable_command

__all__ = ["cli"]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class ClawhostGroup(click.Group):
    """A group that turns clawhost's own errors into one-line failures."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a ``ClawhostError``, ``OSError`` or ``ImportError`` becomes
        ``Error: <message>`` (with the traceback under ``--debug``)."""
        from clawhost.errors import ClawhostError

        try:
            return super().invoke(ctx)
        except (ClawhostError, OSError, ImportError) as exc:
            state = ctx.find_object(AppState)
            if state is not None and state.debug:
                traceback.print_exception(exc)
            raise _Failure(exc) from exc


class _Failure(click.ClickException):
    """A user error, shown as ``Error: <message>`` with exit status 1."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        text = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
            text = f"{text}: {error.filename}"
        super().__init__(text)


@click.group(cls=ClawhostGroup, context_settings=CONTEXT)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="CLAWHOST_CONFIG",
    help="The host config.toml (default: $CLAWHOST_CONFIG, else ./config.toml if it exists).",
)
@click.option(
    "--path",
    "paths",
    multiple=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Look for installed plugins only in DIR, like 'pip list --path' (a 'pip install "
    "--target' folder); repeatable.",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    help="Show clawhost's log at this level and above.",
)
@click.option("--debug", is_flag=True, help="Log everything and show tracebacks of errors.")
@click.version_option(__version__, "--version", "-V", prog_name="clawhost")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: Path | None,
    paths: tuple[Path, ...],
    log_level: str | None,
    debug: bool,
) -> None:
    """clawhost: manage and run the plugins of an AI-agent gateway."""
    config, explicit = find_config(config_file)
    state = AppState(config, explicit, tuple(path.absolute() for path in paths), log_level, debug)
    ctx.obj = state
    if ctx.invoked_subcommand not in ("gateway", "mcp"):  # these log at their own level
        ctx.with_resource(cli_logging(state.level_for(None)))


@cli.group("plugins", context_settings=CONTEXT)
def plugins() -> None:
    """Manage plugins: list, inspect, enable, disable, install, update, uninstall, grant,
    revoke, create, test, admin."""


for command in (
    admin_command,
    list_command,
    inspect_command,
    enable_command,
    disable_command,
    install_command,
    update_command,
    uninstall_command,
    grant_command,
    revoke_command,
    create_command,
    test_command,
):
    plugins.add_command(command)
cli.add_command(doctor_command)
cli.add_command(gateway_command)
cli.add_command(mcp_command)
