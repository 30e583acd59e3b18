"""Timing in cold processes, medians, same-run ratios, and result files.

Every figure is the median of ``repeats`` fresh interpreter processes. A child reports the
time of the operation itself (after its imports) and its own import time; the parent
records the wall-clock time of the whole process too. Ratios are always taken between
figures measured in the same run, interleaved, so machine noise hits both sides alike.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _source_prologue() -> str:
    """A child runs with ``-I`` (no ``PYTHONPATH``): when the parent imports clawhost from a
    ``PYTHONPATH`` entry (a source checkout), the child is given that entry first too, so a
    run from a work tree measures that tree's code, not whatever copy is installed."""
    entries = [entry for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    for entry in entries:
        if (Path(entry) / "clawhost" / "__init__.py").is_file():
            return f"import sys as _s\n_s.path.insert(0, {os.path.abspath(entry)!r})\n"
    return ""


# Child prologue: the operation's code sets OP_START/OP_END; the epilogue prints the timings.
_PROLOGUE = _source_prologue() + "import time as _t\n_T0 = _t.perf_counter()\n"
_EPILOGUE = (
    "\nimport json as _j\n"
    "print('@@BENCH@@' + _j.dumps({'import_ms': (OP_START - _T0) * 1e3, "
    "'op_ms': (OP_END - OP_START) * 1e3, 'extra': globals().get('EXTRA', {})}))\n"
)


@dataclass
class Sample:
    """Medians over repeated cold processes of one program."""

    op_ms: float
    import_ms: float
    process_ms: float
    runs: int
    extra: dict[str, Any] = field(default_factory=dict)


def run_child(
    code: str, *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> dict[str, Any]:
    """Run one cold interpreter (``-I``: no cwd or user site on the path) and parse its report."""
    program = _PROLOGUE + textwrap.dedent(code) + _EPILOGUE
    started = time.perf_counter()
    completed = subprocess.run(
        [sys.executable, "-I", "-c", program],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1e3
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{completed.stderr}")
    line = next(line for line in completed.stdout.splitlines() if line.startswith("@@BENCH@@"))
    report: dict[str, Any] = json.loads(line[len("@@BENCH@@") :])
    report["process_ms"] = wall
    return report


def measure(
    programs: Mapping[str, str], repeats: int, *, env: Mapping[str, str] | None = None
) -> dict[str, Sample]:
    """Run each program ``repeats`` times, interleaved, and take medians."""
    reports: dict[str, list[dict[str, Any]]] = {name: [] for name in programs}
    for _ in range(repeats):
        for name, code in programs.items():
            reports[name].append(run_child(code, env=env))
    samples = {}
    for name, runs in reports.items():
        extras: dict[str, Any] = {}
        for key in runs[0]["extra"]:
            values = [run["extra"][key] for run in runs]
            extras[key] = (
                statistics.median(values) if isinstance(values[0], int | float) else values[0]
            )
        samples[name] = Sample(
            op_ms=statistics.median(run["op_ms"] for run in runs),
            import_ms=statistics.median(run["import_ms"] for run in runs),
            process_ms=statistics.median(run["process_ms"] for run in runs),
            runs=len(runs),
            extra=extras,
        )
    return samples


@dataclass
class Row:
    """One line of a result table."""

    case: str
    n: int | None
    subject: str
    value_ms: float
    baseline: str | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def write_results(rows: Sequence[Row], path: Path, settings: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine(),
        "settings": dict(settings),
        "rows": [asdict(row) for row in rows],
    }
    path.write_text(json.dumps(document, indent=2) + "\n", "utf-8")


def _duration(ms: float) -> str:
    if ms < 1:
        return f"{ms * 1000:.2f} µs"
    return f"{ms:.1f} ms"


def render_table(rows: Sequence[Row]) -> str:
    """A Markdown table, for the terminal and for docs/performance.md."""
    header = ["case", "N", "subject", "median", "vs", "ratio", "target", "met"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row.case,
            "" if row.n is None else str(row.n),
            row.subject,
            _duration(row.value_ms),
            row.baseline or "",
            "" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target or "",
            {True: "yes", False: "**no**", None: ""}[row.met],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
