"""``clawhost plugins test PATH``: the test harness, end to end, every finding together.

1. **manifest**: the project is read and its manifest validated, importing nothing;
2. **install**: it is built and installed (``--no-deps``) into a throw-away virtual
   environment that sees this interpreter's packages (clawhost, pytest, installed
   dependency plugins) through a ``.pth`` file, so nothing is downloaded and the current
   environment is left alone; ``--with`` installs more (dependency plugins) beside it;
3. **conformance**: in that environment, a probe finds the plugin as a host would,
   activates it in a test host, checks every declared capability is registered and
   nothing else, runs its health check, deactivates it and checks nothing is left;
4. **tests**: the project's own tests run with pytest, in that environment.

A directory plugin (a folder with ``plugin.toml`` and ``entry``) has nothing to build: its
conformance check runs from the folder, in a subprocess of this interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile
import venv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from .install import installer_option
from .render import echo_json, make_console
from .state import AppState

if TYPE_CHECKING:
    from clawhost.discovery.project import PluginProject
    from clawhost.testkit.conformance import ConformanceReport

__all__ = ["HarnessResult", "make_throwaway_environment", "test_command"]


@dataclass
class HarnessResult:
    """Every step of one harness run and every finding."""

    path: Path
    plugin: str | None = None
    version: str | None = None
    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    findings: list[tuple[str, str, str]] = field(default_factory=list)  # step, severity, text
    conformance: dict[str, Any] | None = None
    tests_output: str = ""

    @property
    def ok(self) -> bool:
        """Whether no finding is an error."""
        return not any(severity == "error" for _, severity, _ in self.findings)

    def step(self, name: str, ok: bool, detail: str = "") -> None:
        """Record a step; a failed one is also an error finding."""
        self.steps.append((name, ok, detail))
        if not ok:
            self.findings.append((name, "error", detail))

    def to_dict(self) -> dict[str, Any]:
        """The ``plugins test --json`` object."""
        return {
            "path": str(self.path),
            "plugin": self.plugin,
            "version": self.version,
            "ok": self.ok,
            "steps": [{"name": n, "ok": ok, "detail": d} for n, ok, d in self.steps],
            "findings": [
                {"step": step, "severity": severity, "message": message}
                for step, severity, message in self.findings
            ],
            "conformance": self.conformance,
            "tests_output": self.tests_output,
        }


def make_throwaway_environment(root: Path) -> tuple[Path, Path]:
    """A virtual environment at ``root`` without pip that sees this interpreter's
    packages after its own; returns its python and its site-packages folder."""
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt", clear=True).create(root)
    scheme_vars = {"base": str(root), "platbase": str(root)}
    purelib = Path(sysconfig.get_path("purelib", scheme="venv", vars=scheme_vars))
    purelib.mkdir(parents=True, exist_ok=True)
    inherited = [
        entry
        for entry in sys.path
        if os.path.basename(entry) in ("site-packages", "dist-packages") and os.path.isdir(entry)
    ]
    # addsitedir, not a plain path line: the inherited folders' own .pth files (editable
    # installs among them) must count too. The environment's own folder stays first.
    line = f"import site; list(map(site.addsitedir, {inherited!r}))\n"
    (purelib / "_clawhost_inherited.pth").write_text(line, "utf-8")
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = root / bindir / ("python.exe" if os.name == "nt" else "python")
    return python, purelib


def _read(result: HarnessResult) -> PluginProject | None:
    from clawhost.discovery.project import read_project
    from clawhost.errors import InvalidPluginProject, ManifestError

    try:
        projects = read_project(result.path)
    except (InvalidPluginProject, ManifestError) as exc:
        result.step("manifest", False, str(exc))
        return None
    project = projects[0]
    result.plugin, result.version = project.name, project.version
    names = ", ".join(f"{p.name} {p.version}" for p in projects)
    result.step("manifest", True, f"{names} ({project.manifest_path.name} is valid)")
    return project


def _install(
    result: HarnessResult,
    purelib: Path,
    extras: tuple[str, ...],
    *,
    no_build_isolation: bool,
    echo: bool,
    tool: str | None = None,
) -> bool:
    from clawhost.errors import InstallError

    from .installer import detect_installer
    from .spec import validate_extra

    try:
        installer = detect_installer(echo=echo, tool=tool)
        items = [str(result.path), *(validate_extra(extra) for extra in extras)]
        installer.install(
            items, target=purelib, no_deps=True, no_build_isolation=no_build_isolation
        )
    except InstallError as exc:
        detail = str(exc)
        output = getattr(exc, "output", "")
        result.step("install", False, f"{detail}\n{output}".strip())
        return False
    result.step(
        "install", True, f"built and installed into a throw-away environment with {installer.tool}"
    )
    return True


def _conform(
    result: HarnessResult,
    state: AppState,
    project: PluginProject,
    python: Path | None,
    scratch: Path,
    *,
    health: bool,
    timeout: float,
) -> None:
    from .probes import probe_command, run_probe

    report_file = scratch / "conformance.json"
    command = probe_command(
        project.name,
        report_file,
        python=str(python) if python is not None else sys.executable,
        config=state.config_file,
        project=project.root if python is None else None,
        health=health,
        grant_requested=True,
    )
    probe = run_probe(project.name, command, report_file, timeout=timeout)
    if probe.report is None:
        detail = f"the check crashed: {probe.crash}" + (f"\n{probe.output}" if probe.output else "")
        result.step("conformance", False, detail)
        return
    _merge(result, probe.report, python)


def _merge(result: HarnessResult, report: ConformanceReport, python: Path | None) -> None:
    result.conformance = report.to_dict()
    for step in report.steps:
        result.steps.append((step.name, step.ok, step.detail))
    for finding in report.findings:
        result.findings.append((finding.step, finding.severity, finding.message))
    environment = str(python.parent.parent) if python is not None else None
    if environment is not None and report.source and environment not in report.source:
        result.findings.append(
            (
                "conformance",
                "error",
                f"the plugin checked is not the one built from {result.path}: {report.source}",
            )
        )


def _run_tests(
    result: HarnessResult, python: Path, *, timeout: float, extra_env: dict[str, str]
) -> None:
    tests = result.path / "tests"
    found = [*result.path.glob("test_*.py")]
    if tests.is_dir():
        found += [*tests.rglob("test_*.py"), *tests.rglob("*_test.py")]
    if not found:
        # Starting pytest only to hear "no tests collected" costs seconds.
        result.findings.append(("tests", "warning", "no test files (tests/test_*.py): none run"))
        result.steps.append(("tests", True, "no test files"))
        return
    command = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    try:
        finished = subprocess.run(
            command,
            cwd=result.path,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env={**os.environ, **extra_env},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result.step("tests", False, f"pytest did not finish within {timeout:g}s")
        return
    output = (finished.stdout + finished.stderr).strip()
    result.tests_output = output
    summary = output.splitlines()[-1] if output else ""
    if finished.returncode == 0:
        result.step("tests", True, summary)
    elif finished.returncode == 5:
        result.findings.append(("tests", "warning", "pytest collected no tests"))
        result.steps.append(("tests", True, "no tests collected"))
    elif "No module named pytest" in output:
        result.step("tests", False, "pytest is not installed in this environment")
    else:
        tail = "\n".join(output.splitlines()[-25:])
        result.step("tests", False, f"pytest exited with status {finished.returncode}\n{tail}")


def run_harness(
    state: AppState,
    path: Path,
    *,
    extras: tuple[str, ...] = (),
    tests: bool = True,
    health: bool = True,
    no_build_isolation: bool = False,
    timeout: float = 300.0,
    keep: bool = False,
    installer: str | None = None,
) -> HarnessResult:
    """Run every step of the harness on the project at ``path`` (``installer``: pip or
    uv, as ``--installer`` of ``plugins install``; the default chooses as it does)."""
    result = HarnessResult(path.absolute())
    project = _read(result)
    if project is None:
        return result
    scratch = Path(tempfile.mkdtemp(prefix="clawhost-test-"))
    try:
        python: Path | None = None
        if project.layout == "project":
            python, purelib = make_throwaway_environment(scratch / "env")
            if not _install(
                result,
                purelib,
                extras,
                no_build_isolation=no_build_isolation,
                echo=state.debug,
                tool=installer,
            ):
                return result
        _conform(result, state, project, python, scratch, health=health, timeout=timeout)
        if tests:
            _run_tests(
                result,
                python or Path(sys.executable),
                timeout=timeout,
                extra_env={"CLAWHOST_NO_CACHE": "1", "PYTHONDONTWRITEBYTECODE": "1"},
            )
    finally:
        if keep:
            click.echo(f"Kept the test environment in {scratch}", err=True)
        else:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    return result


def _render(result: HarnessResult) -> None:
    console = make_console()
    title = f"{result.plugin or result.path.name} {result.version or ''}".strip()
    table = Table(title=f"clawhost plugins test: {title}", title_justify="left")
    table.add_column("Check", no_wrap=True)
    table.add_column("Result", no_wrap=True)
    table.add_column("Detail")
    for name, ok, detail in result.steps:
        mark = Text("pass", style="green") if ok else Text("FAIL", style="bold red")
        table.add_row(name, mark, Text(detail.splitlines()[0] if detail else ""))
    console.print(table)
    if result.findings:
        console.print(Text("Findings:", style="bold"))
        for step, severity, message in result.findings:
            style = "red" if severity == "error" else "yellow"
            console.print(Text(f"  [{severity}] {step}: {message}", style=style))
    errors = sum(severity == "error" for _, severity, _ in result.findings)
    if result.ok:
        console.print(Text(f"PASSED: {title} conforms", style="bold green"))
    else:
        console.print(Text(f"FAILED: {errors} problem(s) found in {title}", style="bold red"))


@click.command("test")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--with",
    "extras",
    multiple=True,
    metavar="SPEC",
    help="Also install SPEC (a dependency plugin's folder or wheel) into the test "
    "environment; repeatable.",
)
@click.option("--no-tests", is_flag=True, help="Do not run the project's own tests.")
@click.option("--no-health", is_flag=True, help="Do not run the health check.")
@click.option(
    "--no-build-isolation",
    is_flag=True,
    help="Build the project in this environment instead of an isolated one (offline).",
)
@click.option("--keep", is_flag=True, help="Keep the throw-away environment for a look.")
@click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds per step.")
@installer_option
@click.pass_obj
def test_command(  # noqa: PLR0917 - click passes each option positionally
    state: AppState,
    path: Path,
    as_json: bool,
    extras: tuple[str, ...],
    no_tests: bool,
    no_health: bool,
    no_build_isolation: bool,
    keep: bool,
    timeout: float,
    installer_name: str | None,
) -> None:
    """Validate, build, install, activate, check and test the plugin project at PATH.

    Every finding is reported together; the exit status is 1 when any check failed.
    Plugin configuration (for required options) comes from --config.
    """
    result = run_harness(
        state,
        path,
        extras=extras,
        tests=not no_tests,
        health=not no_health,
        no_build_isolation=no_build_isolation,
        timeout=timeout,
        keep=keep,
        installer=installer_name,
    )
    if as_json:
        echo_json(result.to_dict())
    else:
        _render(result)
    if not result.ok:
        raise SystemExit(1)
