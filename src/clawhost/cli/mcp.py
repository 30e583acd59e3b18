"""``clawhost mcp``: serve every plugin's tools to an MCP client over stdio.

The host is built from the config as ``clawhost gateway`` builds it (``--config``,
``--path``, ``--log-level``), started once stdout is protected, and served through
``clawhost.surfaces.mcp``. Standard output carries the protocol and nothing else; the log goes
to standard error. The command ends when the client closes its end (stdin), or on
Ctrl-C / SIGTERM: every plugin is deactivated, dependents first, and it exits with
status 0. A second signal while stopping exits at once (status 130).
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import click

from .state import LEVELS, AppState, cli_logging, find_config

if TYPE_CHECKING:
    from clawhost.host.host import PluginHost

__all__ = ["mcp_command"]

logger = logging.getLogger("clawhost.mcp")


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            name = signal.Signals(received).name
            if scope.cancel_called:
                logger.warning("Second %s: exiting without waiting", name)
                os._exit(130)
            logger.info("Received %s, stopping", name)
            scope.cancel()


async def _serve(host: PluginHost, name: str) -> None:
    from clawhost.surfaces.mcp import serve_stdio

    async with anyio.create_task_group() as group:
        group.start_soon(_stop_on_signals, group.cancel_scope)
        await serve_stdio(host, name=name)
        group.cancel_scope.cancel()
    logger.info("MCP server stopped")


@click.command("mcp")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The config.toml to run (overrides the global --config).",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    help="How much to log on standard error (default: info).",
)
@click.option(
    "--name",
    default="clawhost",
    show_default=True,
    help="The server name MCP clients are told.",
)
@click.pass_obj
def mcp_command(
    state: AppState, config_file: Path | None, log_level: str | None, name: str
) -> None:
    """Serve every plugin's tools to an MCP client over stdio (needs the 'mcp' extra).

    Calls get the host's guards: argument validation, deadlines, permissions, lazy
    activation and hot reload; clients are told when the tool list changes. Ends when the
    client disconnects, or on Ctrl-C.
    """
    from clawhost.host.host import PluginHost
    from clawhost.surfaces.mcp import require_mcp

    require_mcp()
    if config_file is not None:
        state.config_file, state.config_explicit = find_config(config_file)
    if log_level is not None:
        state.log_level = log_level
    state.import_paths()
    with cli_logging(state.level_for("info")):
        config = state.load_config()
        if state.config_file is None:
            logger.info("No config.toml: running with every default")
        else:
            logger.info("Configuration: %s", state.config_file)
        host = PluginHost(config=config, path=state.search_path)
        anyio.run(_serve, host, name)
