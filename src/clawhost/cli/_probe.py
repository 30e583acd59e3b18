"""Run one plugin's conformance check in this process and write the report as JSON.

``python -m clawhost.cli._probe NAME --report FILE [--config F] [--path D]...``

The management commands never import plugin code themselves: ``doctor`` and
``plugins list --activate`` run this once per plugin in a subprocess, and ``plugins test``
runs it inside the throw-away environment it built, so a plugin that crashes the
interpreter (``os._exit``, a segfault in C code) takes only its own probe down. It needs
neither click nor rich.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clawhost.cli._probe")
    parser.add_argument("plugin", help="the plugin's name (or, with --project, unused)")
    parser.add_argument("--report", required=True, type=Path, help="write the JSON report here")
    parser.add_argument("--config", type=Path, help="the host config.toml")
    parser.add_argument("--path", action="append", default=[], help="look for plugins here")
    parser.add_argument("--project", type=Path, help="check this project folder instead")
    parser.add_argument("--no-health", action="store_true", help="skip the health check")
    parser.add_argument(
        "--grant-requested",
        action="store_true",
        help="grant every plugin the permissions its manifest asks for",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Check one plugin; exit 0 when a report was written, 3 when the check could not run."""
    options = _parser().parse_args(argv)
    # The host would log every other plugin's problems too; the report says what matters,
    # and a crash's own output (a traceback, what the plugin printed) is kept clean.
    logging.basicConfig(level=logging.CRITICAL, format="[%(levelname)s] %(message)s")
    for entry in reversed(options.path):
        if entry not in sys.path:
            sys.path.insert(0, entry)  # plugins installed there must be importable too
    import anyio

    from clawhost.config.host import load_host_config
    from clawhost.errors import ClawhostError
    from clawhost.testkit.conformance import check_plugin

    try:
        host_config = load_host_config(options.config) if options.config else None
        target: str | Path = options.project if options.project else options.plugin
        report = anyio.run(
            lambda: check_plugin(
                target,
                host_config=host_config,
                path=options.path or None,
                grant_requested=options.grant_requested,
                health=not options.no_health,
                raise_on_failure=False,
            )
        )
    except (ClawhostError, ValueError, OSError) as exc:
        print(f"probe: {exc}", file=sys.stderr)
        return 3
    temporary = options.report.with_suffix(".partial")
    temporary.write_text(json.dumps(report.to_dict()), "utf-8")
    os.replace(temporary, options.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
