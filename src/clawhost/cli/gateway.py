"""``clawhost gateway``: run a host from a config until Ctrl-C, logging its lifecycle.

The host is started, served (with hot reload when ``[plugins] hot_reload = true``) and,
on Ctrl-C or SIGTERM, stopped: every plugin is deactivated, dependents first, and the
command exits with status 0. A second Ctrl-C while stopping exits at once (status 130).

With a ``[gateway]`` table in the config (``channel``, ``provider``, ``channel_config``),
it also runs ``clawhost.gateway.Gateway``: messages from that channel go through the
pipeline and the provider, and the command ends when the channel does; supervised
channels (``[plugins.<name>.channels.<instance>]``) are answered the same way. Without
one, the host just serves (tools for an application embedding it, hot reload).

With ``--http [HOST:]PORT`` it also serves ``host.http_app()`` with uvicorn (on 127.0.0.1
unless a host is given): the status page, health routes and plugins' HTTP apps.
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
    from clawhost.gateway import GatewaySettings
    from clawhost.host.host import PluginHost

__all__ = ["gateway_command", "serve_host"]

logger = logging.getLogger("clawhost.gateway")


async def _stop_on_signals(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            if scope.cancel_called:
                logger.warning("Second %s: exiting without waiting", signal.Signals(received).name)
                os._exit(130)
            logger.info("Received %s, stopping", signal.Signals(received).name)
            scope.cancel()


class _HttpFailed(Exception):
    """The HTTP server could not start (the message says why)."""


async def _serve_http(host: PluginHost, address: tuple[str, int], admin: Path | None) -> None:
    from clawhost.surfaces.http import serve

    from .admin import write_admin_file

    url = f"http://{address[0]}:{address[1]}"
    token = write_admin_file(admin, url) if admin is not None else None
    logger.info("Serving HTTP on %s/ (status page, health, plugin routes)", url)
    if admin is not None:
        logger.info("Admin commands: clawhost plugins admin NAME METHOD (token in %s)", admin)
    try:
        await serve(host.http_app(admin_token=token), host=address[0], port=address[1])
    except OSError as exc:
        raise _HttpFailed(f"cannot serve HTTP on {address[0]}:{address[1]}: {exc}") from None
    finally:
        if admin is not None:
            with anyio.CancelScope(shield=True):  # also when stopped by a signal
                await anyio.Path(admin).unlink(missing_ok=True)


async def serve_host(
    host: PluginHost,
    settings: GatewaySettings | None = None,
    http: tuple[str, int] | None = None,
    admin: Path | None = None,
) -> None:
    """Start ``host`` and serve until a signal (or, with ``settings``, until the gateway's
    channel ends), then stop it, even if the signal came while it was starting: what was
    activated is deactivated. With ``http`` (host, port), serve ``host.http_app()`` too."""
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_stop_on_signals, group.cancel_scope)
            gateway = None
            if settings is not None:
                from clawhost.gateway import Gateway

                gateway = Gateway(host, settings)
                gateway.attach()  # supervised channels are answered the same way
            await host.start()
            if http is not None:
                group.start_soon(_serve_http, host, http, admin)
            active = sum(record.is_active for record in host.plugins.values())
            logger.info("Gateway running with %d active plugin(s); press Ctrl-C to stop", active)
            if gateway is None:
                await host.serve()
            else:
                group.start_soon(host.serve)  # hot reload, while the channel runs
                await gateway.run()
                if http is None:
                    group.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await host.stop()
        logger.info("Gateway stopped")


def _settings(path: Path | None) -> GatewaySettings | None:
    """The ``[gateway]`` table of the config file, if it has one."""
    if path is None:
        return None
    from clawhost.core.toml import loads
    from clawhost.gateway import GatewaySettings

    data = loads(path.read_text("utf-8"))
    if "gateway" not in data:
        return None
    try:
        return GatewaySettings.from_config(data)
    except ValueError as exc:
        raise click.ClickException(f"{path}: {exc}") from None


@click.command("gateway")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The config.toml to run (overrides the global --config).",
)
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    help="How much of the lifecycle to log (default: info).",
)
@click.option(
    "--http",
    "http",
    metavar="[HOST:]PORT",
    help="Also serve the status page, health routes and plugins' HTTP apps (uvicorn; "
    "HOST defaults to 127.0.0.1).",
)
@click.pass_obj
def gateway_command(
    state: AppState, config_file: Path | None, log_level: str | None, http: str | None
) -> None:
    """Run a plugin host from config.toml until Ctrl-C (hot reload when configured).

    With a [gateway] table (channel, provider), messages from that channel go through the
    pipeline and the provider until the channel ends (with --http, until Ctrl-C).
    """
    address = _address(http) if http is not None else None
    from clawhost.host.host import PluginHost

    if config_file is not None:
        state.config_file, state.config_explicit = find_config(config_file)
    if log_level is not None:
        state.log_level = log_level
    state.import_paths()
    with cli_logging(state.level_for("info")):
        config = state.load_config()
        settings = _settings(state.config_file)
        if state.config_file is None:
            logger.info("No config.toml: running with every default")
        else:
            logger.info("Configuration: %s", state.config_file)
        host = PluginHost(config=config, path=state.search_path)
        failure: str | None = None
        try:
            from .admin import admin_file

            anyio.run(serve_host, host, settings, address, admin_file(state))
        except* _HttpFailed as failed:
            failure = str(failed.exceptions[0])
        if failure is not None:
            raise click.ClickException(failure)


def _address(text: str) -> tuple[str, int]:
    """``[HOST:]PORT`` as (host, port); 127.0.0.1 when no host is given."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise click.BadParameter(f"{text!r}: expected [HOST:]PORT, e.g. 8000", param_hint="--http")
    return host, int(port)
