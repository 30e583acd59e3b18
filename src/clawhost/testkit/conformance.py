"""The conformance check: one plugin walked through its whole lifecycle in a test host.

resolve → activate → registrations (every declared capability registered, nothing
undeclared, every tool's schema exportable) → health check → deactivate → nothing left
behind. Every finding is collected; none stops the walk early unless the plugin cannot be
activated at all. ``clawhost plugins test`` and ``clawhost doctor`` run it in a subprocess.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio

from clawhost.testkit.recorder import HookRecorder

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.project import PluginProject
    from clawhost.host.host import PluginHost
    from clawhost.runtime.records import PluginRecord

__all__ = ["ConformanceReport", "Finding", "Step", "check_plugin"]

Severity = Literal["error", "warning"]
_KINDS = ("tools", "channels", "pipeline_stages", "providers")
# Threads the host and anyio keep in pools on purpose; anything else still running after
# deactivation was started by the plugin and not stopped.
_POOLED_THREADS = ("AnyIO worker thread", "clawhost-", "asyncio_", "ThreadPoolExecutor")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem the check found: the step that found it, what, and how bad."""

    step: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"[{self.severity}] {self.step}: {self.message}"


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the walk and whether it passed."""

    name: str
    ok: bool
    detail: str = ""
    duration: float = 0.0


@dataclass
class ConformanceReport:
    """What ``check_plugin`` found about one plugin."""

    plugin: str
    version: str | None = None
    source: str | None = None
    steps: list[Step] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    declared: dict[str, list[str]] = field(default_factory=dict)
    registered: dict[str, list[str]] = field(default_factory=dict)
    operations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no finding is an error (warnings do not fail the check)."""
        return not self.errors

    @property
    def errors(self) -> list[Finding]:
        """The findings that fail the check."""
        return [finding for finding in self.findings if finding.severity == "error"]

    def add(self, step: str, message: str, severity: Severity = "error") -> None:
        """Record a finding."""
        self.findings.append(Finding(step, message, severity))

    def passed(self, name: str, detail: str = "", duration: float = 0.0) -> None:
        """Record a step that passed."""
        self.steps.append(Step(name, True, detail, duration))

    def failed(self, name: str, message: str, duration: float = 0.0) -> None:
        """Record a step that failed, and its finding."""
        self.steps.append(Step(name, False, message, duration))
        self.add(name, message)

    def raise_for_findings(self) -> None:
        """Raise ``AssertionError`` listing every error finding, if there is one."""
        if not self.ok:
            raise AssertionError(str(self))

    def __str__(self) -> str:
        head = f"plugin {self.plugin!r}" + (f" v{self.version}" if self.version else "")
        if not self.findings:
            return f"{head}: conforms ({len(self.steps)} steps passed)"
        verdict = "does not conform" if not self.ok else "conforms, with warnings"
        lines = [f"{head} {verdict}:"]
        lines.extend(f"  - {finding}" for finding in self.findings)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``clawhost plugins test --json``)."""
        return {
            "plugin": self.plugin,
            "version": self.version,
            "source": self.source,
            "ok": self.ok,
            "steps": [
                {
                    "name": step.name,
                    "ok": step.ok,
                    "detail": step.detail,
                    "duration_ms": round(step.duration * 1e3, 3),
                }
                for step in self.steps
            ],
            "findings": [
                {"step": f.step, "message": f.message, "severity": f.severity}
                for f in self.findings
            ],
            "declared": self.declared,
            "registered": self.registered,
            "operations": self.operations,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConformanceReport:
        """The report ``to_dict`` described (read back from a subprocess)."""
        return cls(
            plugin=data["plugin"],
            version=data.get("version"),
            source=data.get("source"),
            steps=[
                Step(item["name"], item["ok"], item.get("detail", ""), item["duration_ms"] / 1e3)
                for item in data.get("steps", ())
            ],
            findings=[
                Finding(item["step"], item["message"], item.get("severity", "error"))
                for item in data.get("findings", ())
            ],
            declared=dict(data.get("declared", {})),
            registered=dict(data.get("registered", {})),
            operations=list(data.get("operations", ())),
        )


async def check_plugin(
    plugin: str | os.PathLike[str] | object,
    *,
    name: str | None = None,
    version: str = "0.1.0",
    manifest: Any = None,
    config: Mapping[str, Any] | None = None,
    host_config: HostConfig | None = None,
    dependencies: Sequence[Any] = (),
    path: Sequence[str] | None = None,
    grant_requested: bool | None = None,
    health: bool = True,
    health_timeout: float = 5.0,
    environ: Mapping[str, str] | None = None,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Walk one plugin through activate → registrations → health check → deactivate.

    ``plugin`` is one of:

    * the name of an installed (or directory) plugin, found by discovery on ``path``
      (default ``sys.path``) and in ``host_config``'s plugin directories; what it depends
      on is found the same way;
    * a ``pathlib.Path`` to a plugin project (``pyproject.toml`` + ``plugin.toml``, or a
      directory plugin), imported from its source tree (a ``str`` written as a path to an
      existing folder, ``"./my-plugin"``, counts too); with several plugins in it,
      ``name`` picks one;
    * a plugin object (instance, class or module with ``@hookimpl`` hooks), named ``name``
      (default: derived from the object), with an optional ``manifest`` (a ``Manifest``, a
      ``[plugin]`` dict or a path to ``plugin.toml``). Without a manifest, no capability
      is declared, so the registrations are only listed.

    ``dependencies`` offers more plugins (objects, tuples, project paths) to a project or
    object under test. ``config`` holds the plugin's ``[plugins.<name>.config]`` values;
    ``host_config`` a whole host configuration. Unless a ``host_config`` is given (or
    ``grant_requested`` says otherwise), every plugin gets the permissions its manifest
    asks for: the check is about the plugin, not about the host's policy.

    Returns the report; with ``raise_on_failure`` (the default) raises ``AssertionError``
    listing every error finding instead, when there is one.
    """
    target = _target(
        plugin,
        name=name,
        version=version,
        manifest=manifest,
        config=config,
        host_config=host_config,
        dependencies=dependencies,
        path=path,
        grant_requested=host_config is None if grant_requested is None else grant_requested,
        environ=environ,
    )
    report = ConformanceReport(target.name)
    await _walk(target, report, health=health, health_timeout=health_timeout)
    if raise_on_failure:
        report.raise_for_findings()
    return report


def _target(
    plugin: Any,
    *,
    name: str | None,
    version: str,
    manifest: Any,
    config: Mapping[str, Any] | None,
    host_config: HostConfig | None,
    dependencies: Sequence[Any],
    path: Sequence[str] | None,
    grant_requested: bool,
    environ: Mapping[str, str] | None,
) -> _Target:
    """The host to check ``plugin`` in, and how it was given."""
    from clawhost.testkit.kit import make_test_host, prepare

    extra: dict[str, Any] = {"environ": environ} if environ is not None else {}
    if isinstance(plugin, str) and not _looks_like_path(plugin):
        return _Target(
            plugin,
            _installed_host(
                plugin,
                config,
                host_config=host_config,
                path=path,
                grant_requested=grant_requested,
                extra=extra,
            ),
        )
    if path is not None:
        extra["path"] = path
    project = None
    if isinstance(plugin, (str, os.PathLike)):
        spec: Any = Path(plugin).expanduser()
        prepared = prepare(spec)
        names = [item.name for item in prepared if item.name is not None]
        if name is None and len(names) > 1:
            raise ValueError(f"{plugin} holds several plugins ({', '.join(names)}); pass name=")
        target_name = name or names[0]
        project = next(item.project for item in prepared if item.name == target_name)
        enforce = True
    else:
        target_name = name or _derived_name(plugin)
        enforce = manifest is not None
        if isinstance(manifest, Mapping):
            manifest = {"version": version, **manifest}
        spec = (target_name, plugin, manifest) if enforce else (target_name, plugin)
    host = make_test_host(
        spec,
        *dependencies,
        config={target_name: config} if config is not None else None,
        host_config=host_config,
        grant_requested=grant_requested,
        **extra,
    )
    return _Target(target_name, host, project, enforce)


def _installed_host(
    name: str,
    config: Mapping[str, Any] | None,
    *,
    host_config: HostConfig | None,
    path: Sequence[str] | None,
    grant_requested: bool,
    extra: dict[str, Any],
) -> PluginHost:
    """A host that finds plugins the way a real one does (``name`` is installed)."""
    from clawhost.config.host import HostConfig
    from clawhost.discovery.discover import discover_plugins
    from clawhost.host.host import PluginHost
    from clawhost.testkit.kit import granted_config, with_plugin_settings

    base = host_config if host_config is not None else HostConfig()
    if grant_requested:
        found = discover_plugins(
            group=base.plugins.entry_point_group, path=path, dirs=base.plugins.dirs, cache=False
        )
        ordered = sorted(found.plugins, key=lambda item: item.version)
        newest = {item.name: item.manifest for item in ordered}  # the newest version wins
        base = granted_config(base, newest)
    if config is not None:
        base = with_plugin_settings(base, name, values=config)
    return PluginHost(config=base, path=path, cache=False, **extra)


def _looks_like_path(text: str) -> bool:
    # "weather" is a plugin name even when a folder of that name is here; "./weather" is not.
    return (os.sep in text or text.startswith((".", "~"))) and os.path.isdir(
        os.path.expanduser(text)
    )


def _derived_name(target: object) -> str:
    from clawhost.host.host import _name_of

    return _name_of(target)


@dataclass(frozen=True, slots=True)
class _Target:
    """What is checked: the plugin's name, its host, and how it was given."""

    name: str
    host: PluginHost
    project: PluginProject | None = None
    enforce: bool = True  #: whether a manifest declares what it may register


async def _walk(
    target: _Target, report: ConformanceReport, *, health: bool, health_timeout: float
) -> None:
    host, name = target.host, target.name
    recorder = HookRecorder().attach(host)
    threads_before = set(threading.enumerate())
    try:
        record = await _resolve(host, name, report)
        if record is not None and await _activate(host, record, report):
            if target.project is not None:
                _check_import_location(target.project, report)
            _check_registrations(host, record, report, enforce=target.enforce)
            if health:
                await _health(host, name, report, health_timeout)
            await _deactivate(host, record, report)
    finally:
        with anyio.CancelScope(shield=True):
            await host.stop()
        recorder.detach()
        report.operations = [f"{call.plugin}: {call.operation}" for call in recorder.calls]
    await _check_threads(threads_before, report)


async def _resolve(host: PluginHost, name: str, report: ConformanceReport) -> PluginRecord | None:
    from clawhost.core.state import PluginState

    started = time.perf_counter()
    host.discover()
    await host.resolve()
    elapsed = time.perf_counter() - started
    record = host.plugins.get(name)
    if record is None:
        known = ", ".join(sorted(host.plugins)) or "none"
        unnamed = [str(item) for item in host.diagnostics if item.plugin in (None, name)]
        detail = f"; {'; '.join(unnamed)}" if unnamed else ""
        report.failed("discover", f"plugin {name!r} not found (found: {known}){detail}", elapsed)
        return None
    plugin = record.plugin
    report.version = str(record.version) if record.version else None
    report.source = str(plugin.source) if plugin else None
    if record.manifest is not None:
        report.declared = {
            kind: list(getattr(record.manifest.capabilities, kind)) for kind in _KINDS
        }
    for diagnostic in record.diagnostics:
        # Problems with other copies of the plugin (an older install the checked one
        # shadows) are worth a note, not a failure.
        report.add(diagnostic.stage, diagnostic.message, "warning")
    if record.state is PluginState.DISABLED:
        report.failed("resolve", "disabled in the host config (enabled = false)", elapsed)
        return None
    if record.state is PluginState.FAILED and record.failure is not None:
        report.failed(record.failure.stage, record.failure.reason, elapsed)
        return None
    report.passed("resolve", f"v{report.version}", elapsed)
    return record


async def _activate(host: PluginHost, record: PluginRecord, report: ConformanceReport) -> bool:
    from clawhost.errors import PluginFailed

    started = time.perf_counter()
    try:
        await host.activate(record.name)
    except PluginFailed as exc:
        report.failed("activate", exc.reason, time.perf_counter() - started)
        return False
    report.passed("activate", "", time.perf_counter() - started)
    return True


def _check_import_location(project: PluginProject, report: ConformanceReport) -> None:
    """A project's module imported from anywhere but its source tree is another copy."""
    module = sys.modules.get(project.module)
    location = getattr(module, "__file__", None)
    if location is None:
        return
    root = os.path.realpath(project.import_root)
    if not os.path.realpath(location).startswith(root + os.sep):
        report.add(
            "activate",
            f"module {project.module!r} was imported from {location}, not from {root} "
            "(another copy shadows the project's source tree)",
            "warning",
        )


def _check_registrations(
    host: PluginHost, record: PluginRecord, report: ConformanceReport, *, enforce: bool
) -> None:
    """Every declared capability registered and nothing undeclared (when a manifest was
    given: an in-memory plugin without one may register anything), every tool's schema
    exportable."""
    started = time.perf_counter()
    registered = host.context.registrations(record.name)
    report.registered = registered.as_dict()
    problems: list[str] = []
    manifest = record.manifest
    if enforce and manifest is not None:
        for kind in _KINDS:
            declared = set(getattr(manifest.capabilities, kind))
            have = set(getattr(registered, kind))
            missing = sorted(declared - have)
            undeclared = sorted(have - declared)
            if missing:
                problems.append(f"declared {kind} not registered: {', '.join(missing)}")
            if undeclared:
                problems.append(f"registered {kind} not declared: {', '.join(undeclared)}")
    for tool_name in registered.tools:
        try:
            host.tools.get(tool_name).schema("openai")
        except Exception as exc:
            problems.append(f"tool {tool_name!r} has no usable schema: {exc}")
    elapsed = time.perf_counter() - started
    if problems:
        for problem in problems:
            report.add("registrations", problem)
        report.steps.append(Step("registrations", False, "; ".join(problems), elapsed))
    else:
        counts = ", ".join(
            f"{len(names)} {kind if len(names) != 1 else kind.removesuffix('s')}"
            for kind, names in report.registered.items()
            if names
        )
        report.passed("registrations", counts or "nothing registered", elapsed)


async def _health(host: PluginHost, name: str, report: ConformanceReport, limit: float) -> None:
    result = await host.health_check(name, limit=limit)
    if result.healthy:
        report.passed("health check", "healthy", result.duration)
    else:
        report.failed("health check", f"unhealthy: {result.reason}", result.duration)


async def _deactivate(host: PluginHost, record: PluginRecord, report: ConformanceReport) -> None:
    started = time.perf_counter()
    before = len(record.diagnostics)
    await host.deactivate(record.name)
    elapsed = time.perf_counter() - started
    raised = [item.message for item in record.diagnostics[before:] if item.stage == "deactivate"]
    if raised:
        report.failed("deactivate", "; ".join(raised), elapsed)
    else:
        report.passed("deactivate", "", elapsed)
    left = host.context.registrations(record.name)
    if left.is_empty():
        report.passed("leftovers", "nothing left registered")
    else:
        shown = ", ".join(
            f"{kind}: {', '.join(names)}" for kind, names in left.as_dict().items() if names
        )
        report.failed("leftovers", f"still registered after deactivation: {shown}")


async def _check_threads(before: set[threading.Thread], report: ConformanceReport) -> None:
    """Threads the plugin started and did not stop (a warning: they may end soon)."""
    deadline = time.monotonic() + 0.5
    while True:
        left = [
            thread
            for thread in threading.enumerate()
            if thread not in before
            and thread.is_alive()
            and not thread.name.startswith(_POOLED_THREADS)
        ]
        if not left or time.monotonic() > deadline:
            break
        await anyio.sleep(0.05)
    if left:
        names = ", ".join(sorted(thread.name for thread in left))
        report.add("leftovers", f"threads still running after deactivation: {names}", "warning")
