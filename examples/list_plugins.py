"""Discover the installed ClawDesk plugins and list them, without importing any of them.

Run it with ``nox -s demo``, which first installs the example plugins.
"""

from __future__ import annotations

import sys
import time

import clawhost


def main() -> int:
    discover = clawhost.discover_plugins  # the first attribute access imports discovery
    started = time.perf_counter()
    result = discover(cache=False)
    cold = time.perf_counter() - started
    rows = [("Name", "Version", "Source", "Capabilities")]
    for plugin in sorted(result.plugins, key=lambda p: (p.name, p.version)):
        caps = plugin.manifest.capabilities
        offered = [
            f"{kind}: {', '.join(names)}"
            for kind, names in (
                ("tools", caps.tools),
                ("channels", caps.channels),
                ("stages", caps.pipeline_stages),
                ("providers", caps.providers),
            )
            if names
        ]
        source = plugin.source.distribution or plugin.source.kind.value
        rows.append((plugin.name, str(plugin.version), source, "; ".join(offered) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)
    imported = [p.source.module for p in result.plugins if p.source.module in sys.modules]
    print(
        f"\n{len(result.plugins)} plugins discovered in {cold * 1000:.1f} ms; "
        f"plugin modules imported: {imported or 'none'}"
    )
    return 0 if result.plugins else 1


if __name__ == "__main__":
    raise SystemExit(main())
