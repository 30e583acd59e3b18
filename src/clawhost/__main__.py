"""``clawhost`` and ``python -m clawhost``: the command line, from the ``cli`` extra.

The command needs click and rich (``pip install 'clawhost[cli]'``); without them it says
so in one line and exits with status 2, instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["main"]

EXTRA_HINT = "pip install 'clawhost[cli]'"


def _missing_dependency() -> str | None:
    for module in ("click", "rich"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
            found = False
        if not found or sys.modules.get(module, ...) is None:
            return module
    return None


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``clawhost`` command (``argv`` defaults to the process's arguments)."""
    missing = _missing_dependency()
    if missing is not None:
        print(
            f"clawhost: the command line needs {missing}, from the 'cli' extra: {EXTRA_HINT}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    from .cli.app import cli

    cli.main(args=list(argv) if argv is not None else None, prog_name="clawhost")


if __name__ == "__main__":
    main()
