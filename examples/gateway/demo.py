"""The clawhost demo gateway: run it with ``nox -s demo`` (which installs the example plugins).

It starts a host from ``config.toml`` and passes a scripted conversation through the
``console`` channel, the ``trim`` and ``redact`` pipeline stages, the offline ``rulebot``
provider and the tools (weather, geocoding, greeter), printing the lifecycle log as it
goes. On the way it shows lazy activation, a dependency conflict explained, and a failing
plugin isolated. ``--watch`` then keeps it running with hot reload: edit
``plugins/greeter/greeter.py``, save, and type ``greet Ada`` again.

Nothing leaves the machine: the weather plugin talks to a fake API on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import anyio

from clawhost import PluginHost, PluginState
from clawhost.errors import ClawhostError, VersionConflict
from clawhost.gateway import Gateway, GatewaySettings

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fake_weather  # noqa: E402 - lives beside this script


def heading(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


def plugin_table(host: PluginHost) -> None:
    rows = [("plugin", "version", "state", "")]
    for name, record in sorted(host.plugins.items()):
        note = ""
        if record.failure is not None:
            note = f"{record.failure.stage}: {record.failure.reason.splitlines()[0]}"
        elif record.state is PluginState.RESOLVED:
            note = "waiting for first use (lazy)"
        rows.append((name, str(record.version or "-"), record.state.name, note[:70]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  "
            + "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
            + "  "
            + row[3]
        )


async def run(args: argparse.Namespace) -> int:
    config_text = (HERE / "config.toml").read_text("utf-8")
    from clawhost.core.toml import loads

    settings = GatewaySettings.from_config(loads(config_text))
    if args.watch:
        settings = GatewaySettings(settings.channel, settings.provider, {"prompt": "you> "})
    with fake_weather.serve() as base_url:
        os.environ["WEATHER_BASE_URL"] = base_url
        heading("clawhost demo gateway")
        print(f"A fake weather API answers on {base_url}: nothing leaves this machine.")
        host = PluginHost.from_config(HERE / "config.toml")
        if args.watch:
            host.config = host.config.model_copy(
                update={"plugins": host.config.plugins.model_copy(update={"hot_reload": True})}
            )

        heading("Starting the host (discover, load, resolve, activate)")
        async with host:
            heading("Plugins")
            plugin_table(host)
            imported = sorted(
                name for name, record in host.plugins.items() if record.target is not None
            )
            known = ", ".join(info.name for info in host.tools.list())
            print(f"\nTools known from manifests before any import: {known}")
            print(
                f"Plugins imported so far: {', '.join(imported)} (tool-only ones wait for a call)"
            )

            conflict = host.plugins.get("geo-next")
            if conflict is not None and conflict.failure is not None:
                heading("A dependency conflict, explained")
                error = conflict.failure.error
                print(
                    error.render()
                    if isinstance(error, VersionConflict)
                    else conflict.failure.reason
                )

            heading("A conversation: console -> trim/redact -> rulebot -> tools -> console")
            gateway = Gateway(host, settings)
            if args.watch:
                print("Hot reload is on: edit examples/gateway/plugins/greeter/greeter.py, save,")
                print("then type 'greet Ada' again. Ctrl-D or Ctrl-C stops.")
                async with anyio.create_task_group() as group:
                    group.start_soon(host.serve)
                    await gateway.run()
                    group.cancel_scope.cancel()
            else:
                await gateway.run()
            dropped = [e for e in gateway.exchanges if e.dropped_by]
            for item in dropped:
                print(f"(message {item.message.id} was dropped by the {item.dropped_by!r} stage)")

            heading("A failing plugin stays alone")
            try:
                await host.tools.invoke("flaky_tool")
            except ClawhostError as exc:
                print(f"flaky_tool -> {type(exc).__name__}: {str(exc).splitlines()[0]}")
            exchange = await gateway.handle_text("weather in Paris")
            answer = exchange.response.text if exchange.response else exchange.error
            print(f"...and the rest still answers: {answer}")

            heading("Plugins now")
            plugin_table(host)
            heading("Stopping the host (dependents first)")
        print("\nDone.")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--watch", action="store_true", help="keep running with hot reload, reading stdin"
    )
    parser.add_argument("--log-level", default="INFO", help="INFO (default) or DEBUG")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="[%(levelname)s] %(message)s", stream=sys.stdout
    )
    try:
        return anyio.run(run, args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
