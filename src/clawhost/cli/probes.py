"""Conformance checks in subprocesses (``_probe``), one per plugin, run concurrently.

A probe that dies without writing its report (``os._exit``, a segfault, a timeout) is
reported as a crash with its exit status and the end of what it printed, never as a crash
of the command that ran it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clawhost.testkit.conformance import ConformanceReport

    from .state import AppState

__all__ = ["ProbeResult", "probe_command", "run_probe", "run_probes"]

DEFAULT_TIMEOUT = 120.0


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found: its report, or why it has none."""

    plugin: str
    report: ConformanceReport | None
    crash: str | None  #: why there is no report (exit status, signal, timeout)
    output: str  #: the end of what the probe printed (stdout and stderr)

    @property
    def ok(self) -> bool:
        """Whether the probe wrote a report and the report has no error."""
        return self.report is not None and self.report.ok


def probe_command(
    plugin: str,
    report: Path,
    *,
    python: str = sys.executable,
    config: Path | None = None,
    paths: Sequence[Path] = (),
    project: Path | None = None,
    health: bool = True,
    grant_requested: bool = False,
) -> list[str]:
    """The argument list that checks ``plugin`` with ``python`` (no shell involved)."""
    command = [python, "-m", "clawhost.cli._probe", "--report", os.fspath(report)]
    if config is not None:
        command += ["--config", os.fspath(config)]
    for path in paths:
        command += ["--path", os.fspath(path)]
    if project is not None:
        command += ["--project", os.fspath(project)]
    if not health:
        command.append("--no-health")
    if grant_requested:
        command.append("--grant-requested")
    return [*command, "--", plugin]


def run_probe(
    plugin: str,
    command: Sequence[str],
    report: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    cwd: Path | None = None,
) -> ProbeResult:
    """Run one probe command and read the report it wrote."""
    from clawhost.testkit.conformance import ConformanceReport

    environment = {**os.environ, "CLAWHOST_NO_CACHE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        finished = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=environment,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = _text(exc.stdout) + _text(exc.stderr)
        return ProbeResult(plugin, None, f"did not finish within {timeout:g}s", _tail(output))
    output = _tail(finished.stdout + finished.stderr)
    if finished.returncode == 0 and report.is_file():
        try:
            data = json.loads(report.read_text("utf-8"))
            return ProbeResult(plugin, ConformanceReport.from_dict(data), None, output)
        except (ValueError, KeyError, TypeError) as exc:
            return ProbeResult(plugin, None, f"wrote an unreadable report ({exc})", output)
    return ProbeResult(plugin, None, _describe_exit(finished.returncode), output)


def run_probes(
    state: AppState,
    plugins: Iterable[str],
    *,
    health: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    jobs: int | None = None,
) -> dict[str, ProbeResult]:
    """Check each installed plugin in its own subprocess, a few at a time."""
    names = list(plugins)
    if not names:
        return {}
    with tempfile.TemporaryDirectory(prefix="clawhost-probe-") as folder:

        def one(name: str) -> ProbeResult:
            report = Path(folder) / f"{name}.json"
            command = probe_command(
                name, report, config=state.config_file, paths=state.paths, health=health
            )
            return run_probe(name, command, report, timeout=timeout)

        workers = jobs or min(len(names), os.cpu_count() or 2, 8)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the interpreter was killed by {name}"
    if returncode == 3:
        return "the check could not run"
    return f"the interpreter exited with status {returncode}"


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
