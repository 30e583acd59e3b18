"""Case 1: start-up to "all plugins known" (discovery and manifests), cold and warm.

Baseline: ``importlib.metadata.entry_points(group=...)`` on the same path, which finds the
entry points but reads no manifest. Targets: cold within 1.2x of it; warm under 5 ms at
N >= 1000 and flat in N (within 2x of the smallest N, up to N = 5000).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ._harness import Row, measure
from .fakes import build_site

GROUP = "clawdesk.plugins"

STDLIB = """
import sys
sys.path.insert(0, {site!r})
import importlib.metadata
OP_START = _t.perf_counter()
found = importlib.metadata.entry_points(group={group!r})
OP_END = _t.perf_counter()
EXTRA = {{"plugins": len(found)}}
"""

CLAWHOST = """
import sys
sys.path.insert(0, {site!r})
import clawhost
discover, DiscoveryCache = clawhost.discover_plugins, clawhost.DiscoveryCache
cache = DiscoveryCache({cache!r}) if {cache!r} else False
if {clear!r}:
    cache.invalidate()
OP_START = _t.perf_counter()
result = discover(group={group!r}, cache=cache)
OP_END = _t.perf_counter()
assert result.from_cache == {warm!r}, result.from_cache
assert len(result.plugins) >= {n}, (len(result.plugins), result.diagnostics[:3])
started = _t.perf_counter()
for plugin in result.plugins:
    plugin.manifest
EXTRA = {{"plugins": len(result.plugins), "manifests_ms": (_t.perf_counter() - started) * 1e3}}
"""


def prime(program: str, cache: Path) -> None:
    """Populate the cache. It refuses to save while anything it read is under two seconds
    old (a freshly created environment, say), so retry until that window has passed."""
    deadline = time.monotonic() + 10
    while True:
        measure({"prime": program}, 1)
        if any(cache.glob("discovery-*")) or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    rows: list[Row] = []
    warm_by_n: dict[int, float] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="clawhost-bench-") as tmp:
            site = str(build_site(Path(tmp) / "site", n))
            cache = str(Path(tmp) / "cache")
            common = {"site": site, "group": GROUP, "n": n}
            programs = {
                "stdlib": STDLIB.format(**common),
                "cold": CLAWHOST.format(**common, cache=cache, clear=True, warm=False),
                "cold-nocache": CLAWHOST.format(**common, cache="", clear=False, warm=False),
            }
            cold = measure(programs, repeats)
            prime(CLAWHOST.format(**common, cache=cache, clear=True, warm=False), Path(cache))
            warm = measure(
                {"warm": CLAWHOST.format(**common, cache=cache, clear=False, warm=True)}, repeats
            )["warm"]
        base = cold["stdlib"].op_ms
        ratio = cold["cold"].op_ms / base
        rows.append(
            Row(
                "discovery",
                n,
                "importlib.metadata.entry_points",
                base,
                note="baseline; reads no manifest",
            )
        )
        rows.append(
            Row(
                "discovery",
                n,
                "clawhost cold (cache on, empty)",
                cold["cold"].op_ms,
                baseline="entry_points",
                ratio=ratio,
                target="<= 1.2x",
                met=ratio <= 1.2,
                details={
                    "process_ms": cold["cold"].process_ms,
                    "baseline_process_ms": cold["stdlib"].process_ms,
                },
            )
        )
        nocache_ratio = cold["cold-nocache"].op_ms / base
        rows.append(
            Row(
                "discovery",
                n,
                "clawhost cold (cache off)",
                cold["cold-nocache"].op_ms,
                "entry_points",
                nocache_ratio,
            )
        )
        warm_by_n[n] = warm.op_ms
        smallest = min(warm_by_n)
        flat = warm.op_ms / warm_by_n[smallest]
        targets = [] if n == smallest else ["<= 2x"]
        met = [] if n == smallest else [flat <= 2]
        if n >= 1000:
            targets.append("< 5 ms")
            met.append(warm.op_ms < 5)
        rows.append(
            Row(
                "discovery",
                n,
                "clawhost warm cache",
                warm.op_ms,
                baseline=f"warm N={smallest}",
                ratio=flat,
                target=", ".join(targets) or None,
                met=all(met) if met else None,
                note=(
                    "records are built on first use: building them and parsing every "
                    f"manifest then takes {warm.extra['manifests_ms']:.1f} ms"
                ),
            )
        )
    return rows
