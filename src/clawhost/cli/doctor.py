"""``clawhost doctor``: every problem of this installation, each with a remedy.

The findings follow the troubleshooting table of the guide (plugin not found, incompatible
version, dependency not found, permission denied, hot reload not working, plugin crashes
on activate), plus configuration problems, discovery diagnostics, disabled dependencies,
an unusable sandbox setting and a stale discovery cache. Everything is gathered before
anything is printed, and the exit status is 1 when any finding is an error.

Plugin code is never imported here: discovery, loading and resolution read manifests only,
and the activation check runs each plugin in a subprocess of its own, so a plugin that
kills the interpreter when imported is reported like any other failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio
import click
from rich.text import Text

from .render import echo_json, make_console
from .state import AppState

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.discover import Diagnostic
    from clawhost.host.host import PluginHost
    from clawhost.runtime.records import PluginRecord

    from .probes import ProbeResult

__all__ = ["Finding", "doctor_command", "examine"]

Severity = Literal["error", "warning", "info"]

# The guide's troubleshooting table: problem -> what to do.
NOT_FOUND = "Plugin not found"
INCOMPATIBLE = "Incompatible version"
DEPENDENCY_NOT_FOUND = "Dependency not found"
PERMISSION_DENIED = "Permission denied"
HOT_RELOAD = "Hot reload not working"
CRASHES = "Plugin crashes on activate"
REMEDIES = {
    NOT_FOUND: "Check the plugin directory path (plugins.dirs) and that the plugin is "
    "installed in this environment (clawhost plugins list)",
    INCOMPATIBLE: "Check min_clawdesk_version in the plugin's manifest: upgrade clawhost or "
    "install an older version of the plugin",
    DEPENDENCY_NOT_FOUND: "Install the required dependency plugin first "
    "(clawhost plugins install NAME)",
    PERMISSION_DENIED: "Check the sandbox permissions in the plugin manifest "
    "([plugin.permissions]) against [plugins.sandbox] in config.toml",
    HOT_RELOAD: "Verify hot_reload = true in config.toml and that the file watcher can "
    "watch the plugin folders",
    CRASHES: "Check the logs with 'clawhost --log-level debug gateway', and run its health "
    "check (clawhost plugins test PATH)",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the doctor found: how bad, which problem, about what, and what to do."""

    severity: Severity
    problem: str
    message: str
    remedy: str = ""
    plugin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The ``doctor --json`` form."""
        return {
            "severity": self.severity,
            "problem": self.problem,
            "plugin": self.plugin,
            "message": self.message,
            "remedy": self.remedy,
        }


class _Findings(list[Finding]):
    def add(
        self,
        severity: Severity,
        problem: str,
        message: str,
        remedy: str | None = None,
        plugin: str | None = None,
    ) -> None:
        self.append(
            Finding(
                severity,
                problem,
                message,
                REMEDIES.get(problem, "") if remedy is None else remedy,
                plugin,
            )
        )


def examine(
    state: AppState, *, activate: bool = True, health: bool = True, fix: bool = False
) -> list[Finding]:
    """Every finding about this installation (nothing printed)."""
    findings = _Findings()
    _check_environment(findings)
    config = _check_config(state, findings)
    host = _host(state, config)
    host.discover()
    anyio.run(host.resolve)
    _check_discovery(host.diagnostics, findings)
    _check_sections(host, config, findings)
    ready = _check_plugins(host, config, findings)
    _check_sandbox(config, findings)
    _check_hot_reload(host, config, findings)
    _check_cache(state, config, host, findings, fix=fix)
    if activate and ready:
        from .probes import run_probes

        for name, result in run_probes(state, ready, health=health).items():
            _check_probe(name, result, findings)
    if not any(finding.severity != "info" for finding in findings):
        count = sum(1 for record in host.plugins.values() if record.state.value == "resolved")
        findings.add("info", "All good", f"{count} plugin(s) ready, no problems found", "")
    return list(findings)


def _host(state: AppState, config: HostConfig) -> PluginHost:
    from clawhost.host.host import PluginHost

    return PluginHost(config=config, path=state.search_path, cache=False)


def _check_environment(findings: _Findings) -> None:
    from clawhost._version import __version__

    findings.add(
        "info",
        "Environment",
        f"clawhost {__version__}, Python {sys.version.split()[0]} at {sys.executable}",
        "",
    )
    # The installer ``plugins install`` would use here, found as it finds it (uv beside
    # the interpreter, $UV, the uv package's binary), and honouring $CLAWHOST_INSTALLER.
    from clawhost.errors import InstallError

    from .installer import detect_installer

    asked = os.environ.get("CLAWHOST_INSTALLER") or None
    try:
        installer = detect_installer(tool=asked)
    except InstallError as exc:
        findings.add(
            "warning",
            "No installer",
            f"plugins install, update and uninstall cannot work: {exc}",
            "unset CLAWHOST_INSTALLER, or install what it names"
            if asked
            else f"install uv (https://docs.astral.sh/uv/), or pip: {sys.executable} -m ensurepip",
        )
        return
    used = f"uv ({installer.uv})" if installer.tool == "uv" else f"pip ({sys.executable} -m pip)"
    findings.add("info", "Installer", f"plugins are installed with {used}", "")


def _check_config(state: AppState, findings: _Findings) -> HostConfig:
    from clawhost.config.host import HostConfig
    from clawhost.errors import ConfigError

    if state.config_file is None:
        findings.add("info", "Configuration", "no config.toml: every setting is a default", "")
        return HostConfig()
    try:
        return state.load_config()
    except ConfigError as exc:
        findings.add(
            "error",
            "Invalid configuration",
            str(exc),
            f"fix {exc.file or 'config.toml'} (the rest was checked with the defaults)",
        )
        return HostConfig()


def _problem_of(diagnostic: Diagnostic) -> str:
    message = diagnostic.message
    if "not found" in message or "does not exist" in message or "no plugin.toml" in message:
        return NOT_FOUND
    if "version mismatch" in message:
        return "Version mismatch"
    if "invalid manifest" in message:
        return "Invalid manifest"
    return "Discovery problem"


def _check_discovery(diagnostics: Iterable[Diagnostic], findings: _Findings) -> None:
    remedies = {
        "Version mismatch": "rebuild or reinstall the plugin so its manifest and distribution "
        "agree",
        "Invalid manifest": "fix the fields listed in the plugin's plugin.toml",
        "Discovery problem": "",
    }
    for diagnostic in diagnostics:
        if diagnostic.stage != "discover":
            continue
        problem = _problem_of(diagnostic)
        lines = [f"{diagnostic.message} ({diagnostic.source})"]
        lines.extend(f"  - {item}" for item in diagnostic.problems)
        findings.add(
            "warning" if diagnostic.severity == "warning" else "error",
            problem,
            "\n".join(lines),
            remedies.get(problem),
            diagnostic.plugin,
        )


def _check_sections(host: PluginHost, config: HostConfig, findings: _Findings) -> None:
    installed = sorted(host.plugins)
    for name in sorted(config.plugins.plugin_settings):
        if name not in host.plugins:
            findings.add(
                "warning",
                NOT_FOUND,
                f"[plugins.{name}] configures a plugin that is not installed "
                f"(installed: {', '.join(installed) or 'none'})",
                f"Install it (clawhost plugins install {name}) or remove the section. "
                + REMEDIES[NOT_FOUND],
                name,
            )


def _check_plugins(host: PluginHost, config: HostConfig, findings: _Findings) -> list[str]:
    """Load and resolve failures, disabled dependencies, invalid plugin configuration;
    returns the plugins ready to activate."""
    from clawhost.core.state import PluginState

    ready = []
    for name, record in sorted(host.plugins.items()):
        if record.state is PluginState.DISABLED:
            _check_disabled(host, name, findings)
        elif record.state is PluginState.FAILED:
            _check_failure(record, findings)
        elif record.state is PluginState.RESOLVED and _config_ok(record, config, findings):
            ready.append(name)
    return ready


def _check_disabled(host: PluginHost, name: str, findings: _Findings) -> None:
    from clawhost.core.state import PluginState

    needed_by = sorted(
        other.name
        for other in host.plugins.values()
        if other.state is not PluginState.DISABLED
        and other.manifest is not None
        and name in other.manifest.requirements
    )
    if needed_by:
        findings.add(
            "error",
            "Disabled dependency",
            f"{name} is disabled, but {', '.join(needed_by)} require(s) it",
            f"clawhost plugins enable {name}",
            name,
        )
    else:
        findings.add("info", "Disabled", f"{name} is disabled in config.toml", "", name)


def _check_failure(record: PluginRecord, findings: _Findings) -> None:
    from clawhost.errors import (
        DependencyCycle,
        DependencyFailed,
        HostTooOld,
        ManifestError,
        MissingDependency,
        PermissionsRefused,
        VersionConflict,
    )

    failure = record.failure
    assert failure is not None
    error = failure.error
    name = record.name
    if isinstance(error, PermissionsRefused):
        findings.add(
            "error",
            PERMISSION_DENIED,
            f"{name} asks for permissions the host does not grant: {'; '.join(error.refused)}",
            error.command or REMEDIES[PERMISSION_DENIED],
            name,
        )
    elif isinstance(error, HostTooOld):
        findings.add("error", INCOMPATIBLE, str(error), None, name)
    elif isinstance(error, MissingDependency) and error.disabled:
        findings.add(
            "error",
            "Disabled dependency",
            str(error),
            f"clawhost plugins enable {error.dependency}",
            name,
        )
    elif isinstance(error, MissingDependency):
        findings.add(
            "error",
            DEPENDENCY_NOT_FOUND,
            str(error),
            f"clawhost plugins install {error.dependency}",
            name,
        )
    elif isinstance(error, VersionConflict):
        findings.add(
            "error", "Dependency conflict", error.render(), "follow the suggestions above", name
        )
    elif isinstance(error, DependencyCycle):
        findings.add(
            "error", "Dependency cycle", str(error), "remove one of the requirements", name
        )
    elif isinstance(error, DependencyFailed):
        findings.add(
            "error",
            "Dependency failed",
            f"{name}: {error}",
            f"fix {error.dependency} first",
            name,
        )
    elif isinstance(error, ManifestError):
        findings.add("error", "Invalid manifest", str(error), "fix its plugin.toml", name)
    else:
        findings.add("error", f"Failed to {failure.stage}", f"{name}: {failure.reason}", "", name)


def _config_ok(record: PluginRecord, config: HostConfig, findings: _Findings) -> bool:
    from clawhost.config.plugin import validate_plugin_config
    from clawhost.errors import PluginConfigError

    manifest = record.manifest
    if manifest is None:
        return True
    try:
        validate_plugin_config(
            record.name,
            manifest.config,
            config.settings_for(record.name).config,
            file=config.file,
        )
    except PluginConfigError as exc:
        findings.add(
            "error",
            "Invalid plugin configuration",
            str(exc),
            f"set the options in [plugins.{record.name}.config] (or their environment "
            "variables); clawhost plugins inspect " + record.name + " lists them",
            record.name,
        )
        return False
    return True


def _check_sandbox(config: HostConfig, findings: _Findings) -> None:
    from clawhost.sandbox.permissions import memory_limit_warning

    sandbox = config.plugins.sandbox
    # A worker process enforces the limit itself (isolation = "process").
    warning = memory_limit_warning(
        sandbox.max_memory_mb if sandbox.isolation != "process" else None
    )
    if warning:
        findings.add("warning", "Sandbox", warning, "remove max_memory_mb, or accept the risk")
    for folder in config.plugins.sandbox.fs_allowed:
        if not os.path.exists(folder):
            findings.add(
                "warning",
                "Sandbox",
                f"[plugins.sandbox] fs_allowed names {folder}, which does not exist",
                "create it, or fix the path (is an environment variable unset?)",
            )


def _check_hot_reload(host: PluginHost, config: HostConfig, findings: _Findings) -> None:
    from clawhost.discovery.discover import SourceKind

    settings = config.plugins
    editable = [
        record.name
        for record in host.plugins.values()
        if record.plugin is not None and record.plugin.source.kind is SourceKind.DIRECTORY
    ]
    if not settings.hot_reload:
        if editable:
            findings.add(
                "info",
                HOT_RELOAD,
                f"hot_reload is off: changes to {', '.join(sorted(editable))} need a restart",
                "set [plugins] hot_reload = true while developing",
            )
        return
    if not hasattr(host, "watch"):
        findings.add(
            "warning",
            HOT_RELOAD,
            "hot_reload = true, but this clawhost cannot watch plugins yet",
            "upgrade clawhost",
        )
    for folder in settings.dirs:
        if not folder.is_dir():
            findings.add("warning", HOT_RELOAD, f"the plugin folder {folder} does not exist", None)
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        observer = Observer()
        watched = [folder for folder in settings.dirs if folder.is_dir()] or [config.base_dir]
        for folder in watched:
            # The handler ignores everything: the watcher only has to start.
            observer.schedule(FileSystemEventHandler(), str(folder), recursive=True)
        observer.start()
        observer.stop()
        observer.join(timeout=2)
    except Exception as exc:  # inotify limits, permissions, a missing backend
        findings.add("error", HOT_RELOAD, f"the file watcher cannot start: {exc}", None)


def _check_cache(
    state: AppState, config: HostConfig, host: PluginHost, findings: _Findings, *, fix: bool
) -> None:
    from clawhost.discovery.cache import DiscoveryCache, cache_disabled_by_environment

    if cache_disabled_by_environment() or not config.plugins.discovery_cache:
        return
    cache = DiscoveryCache.default()
    path = list(sys.path if state.search_path is None else state.search_path)
    cached = cache.load(config.plugins.entry_point_group, path, list(config.plugins.dirs))
    if cached is None:
        return
    fresh = {
        (p.name, str(p.version), str(p.manifest_path), p.manifest.model_dump_json())
        for record in host.plugins.values()
        for p in record.candidates
        if p.source.kind.value != "memory"
    }
    remembered = {
        (p.name, str(p.version), str(p.manifest_path), p.manifest.model_dump_json())
        for p in cached.plugins
    }
    if fresh == remembered:
        return
    if fix:
        removed = cache.invalidate()
        findings.add(
            "info",
            "Stale discovery cache",
            f"the discovery cache disagreed with the disk; deleted {removed} cache file(s)",
            "",
        )
        return
    findings.add(
        "warning",
        "Stale discovery cache",
        f"the discovery cache in {cache.directory} disagrees with what is on disk "
        "(a file changed without its modification time)",
        "run 'clawhost doctor --fix' to delete it (or set CLAWHOST_NO_CACHE=1)",
    )


def _check_probe(name: str, result: ProbeResult, findings: _Findings) -> None:
    report = result.report
    if report is None:
        detail = f"\n{result.output}" if result.output else ""
        findings.add(
            "error", CRASHES, f"{name}: {result.crash} while activating{detail}", None, name
        )
        return
    for finding in report.findings:
        if finding.severity != "error":
            continue
        if finding.step == "activate":
            problem = PERMISSION_DENIED if "may not use" in finding.message else CRASHES
            findings.add("error", problem, f"{name}: {finding.message}", None, name)
        elif finding.step == "health check":
            findings.add(
                "warning",
                "Unhealthy",
                f"{name}: {finding.message}",
                "check its configuration and the services it talks to",
                name,
            )
        elif finding.step in ("deactivate", "leftovers"):
            findings.add("warning", "Deactivation", f"{name}: {finding.message}", "", name)
        else:
            findings.add(
                "error", f"Failed to {finding.step}", f"{name}: {finding.message}", "", name
            )


_STYLES = {"error": "bold red", "warning": "yellow", "info": "dim"}
_ORDER = {"error": 0, "warning": 1, "info": 2}


def _render(findings: list[Finding]) -> None:
    console = make_console()
    for finding in sorted(findings, key=lambda item: _ORDER[item.severity]):
        head = Text(f"[{finding.severity}] ", style=_STYLES[finding.severity])
        head.append(finding.problem, style="bold")
        if finding.plugin:
            head.append(f" ({finding.plugin})")
        console.print(head)
        for line in finding.message.splitlines():
            console.print(Text(f"    {line}"))
        if finding.remedy:
            console.print(Text(f"    -> {finding.remedy}", style="cyan"))
    errors = sum(finding.severity == "error" for finding in findings)
    warnings = sum(finding.severity == "warning" for finding in findings)
    verdict = Text(
        f"{errors} error(s), {warnings} warning(s)", style="bold red" if errors else "bold green"
    )
    console.print(verdict)


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option(
    "--activate/--no-activate",
    default=True,
    show_default=True,
    help="Activate each ready plugin in a subprocess of its own, to catch crashes.",
)
@click.option("--no-health", is_flag=True, help="Skip the plugins' health checks.")
@click.option("--fix", is_flag=True, help="Delete a stale discovery cache.")
@click.pass_obj
def doctor_command(
    state: AppState, as_json: bool, activate: bool, no_health: bool, fix: bool
) -> None:
    """Diagnose this installation: every problem, each with a remedy.

    Exits with status 1 when any finding is an error.
    """
    findings = examine(state, activate=activate, health=not no_health, fix=fix)
    errors = [finding for finding in findings if finding.severity == "error"]
    if as_json:
        echo_json({"ok": not errors, "findings": [finding.to_dict() for finding in findings]})
    else:
        _render(findings)
    if errors:
        raise SystemExit(1)
