"""Run the benchmark suite: ``python -m benchmarks [--quick] [--cases a,b] [--sizes 10,100]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import (
    bench_audit,
    bench_discovery,
    bench_events,
    bench_isolation,
    bench_reload,
    bench_resolve,
    bench_startup,
)
from ._harness import RESULTS, render_table, write_results

CASES = {
    "discovery": bench_discovery.run,
    "startup": bench_startup.run,
    "audit": bench_audit.run,
    "events": bench_events.run,
    "resolve": bench_resolve.run,
    "reload": bench_reload.run,
    "isolation": bench_isolation.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smallest N, 3 repeats: a smoke run")
    parser.add_argument("--sizes", default="10,100,1000", help="comma-separated N values")
    parser.add_argument("--repeats", type=int, default=9, help="cold processes per figure")
    parser.add_argument("--cases", default=",".join(CASES), help=f"any of {', '.join(CASES)}")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    sizes = [10] if args.quick else [int(size) for size in args.sizes.split(",")]
    repeats = 3 if args.quick else args.repeats
    rows = []
    for case in args.cases.split(","):
        print(f"running {case} for N={sizes} x{repeats} ...", file=sys.stderr, flush=True)
        rows.extend(CASES[case](sizes, repeats))
    write_results(rows, args.out, {"sizes": sizes, "repeats": repeats, "cases": args.cases})
    print(render_table(rows))
    print(f"\nwritten to {args.out}", file=sys.stderr)
    missed = [row for row in rows if row.met is False]
    if missed and not args.quick:
        print(f"{len(missed)} target(s) not met; see docs/performance.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
