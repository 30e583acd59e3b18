"""Every error clawhost raises, as data.

Each error carries structured fields (the plugin, the file, the field, the requirement)
and builds its message from them, so the CLI, logs and tests read fields instead of
parsing text. Where the meaning matches a builtin, the error subclasses it too
(``ValueError``, ``LookupError``, ``PermissionError``, ``TimeoutError``).

The tree:

    ClawhostError
     ├── DiscoveryError                    discovery could not run at all (not one plugin)
     ├── ManifestError (ValueError)        a plugin.toml that cannot be used; .problems
     ├── ConfigError (ValueError)          a config.toml that cannot be used; .problems
     │    └── PluginConfigError            one plugin's [plugins.<name>.config] is invalid
     ├── ResolutionError                   a plugin cannot be part of a consistent set
     │    ├── InvalidRequirement (ValueError)   a requirement string that does not parse
     │    ├── MissingDependency            a required plugin is not installed (or disabled)
     │    ├── VersionConflict              no version satisfies every requirement on it
     │    ├── DependencyCycle              plugins that (transitively) require each other
     │    ├── HostTooOld                   min_clawdesk_version is above the host's version
     │    └── DependencyFailed             a dependency failed, so its dependents cannot run
     ├── PermissionsRefused (PermissionError)  a manifest asks more than the host grants
     ├── PermissionDenied (PermissionError)    plugin code touched what it may not
     ├── PluginTimeout (TimeoutError)      a call into plugin code overran its limit
     ├── LifecycleError                    the lifecycle was asked something it cannot do
     │    ├── PluginNotFound (LookupError) no plugin of that name
     │    ├── IllegalTransition            e.g. activating a plugin that is already active
     │    └── PluginFailed                 a stage failed for one plugin; .stage, .reason
     ├── RegistrationError (ValueError)    what a plugin tried to register was refused
     │    ├── UndeclaredCapability         not listed under [plugin.capabilities]
     │    ├── RegistrationConflict         the name is already registered by another plugin
     │    └── ContextClosed                registered after the plugin was deactivated
     ├── NotRegistered (LookupError)       no channel, provider or stage of that name
     ├── ToolError                         using a tool failed
     │    ├── ToolNotFound (LookupError)   no tool of that name
     │    ├── ToolArgumentsInvalid (ValueError)  the arguments do not match the schema
     │    └── ToolFailed                   the tool raised; .__cause__ is what it raised
     ├── ReloadError                       a hot reload failed and was rolled back
 ├── WorkerDied                        a plugin's worker process exited or was killed
 ├── WorkerError                       a worker raised an error that has no host-side type
 ├── NotIsolatable (RegistrationError) what cannot cross a worker's process boundary
     ├── InvalidPluginProject (ValueError) a folder that is not a plugin project; .problems
     └── InstallError                      ``clawhost plugins install/update/uninstall`` stopped
          ├── InvalidPluginSpec (ValueError)  not a plugin name, path, archive or git URL
          ├── UnsafeArchive (ValueError)      an archive member would land outside its folder
          ├── InstallConflict              installing would leave plugins unresolvable
          └── InstallerFailed              pip, uv or git exited with an error
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ClawhostError",
    "ConfigError",
    "ContextClosed",
    "DependencyCycle",
    "DependencyFailed",
    "DiscoveryError",
    "HostTooOld",
    "IllegalTransition",
    "InstallConflict",
    "InstallError",
    "InstallerFailed",
    "InvalidPluginProject",
    "InvalidPluginSpec",
    "InvalidRequirement",
    "LifecycleError",
    "ManifestError",
    "MissingDependency",
    "NotIsolatable",
    "NotRegistered",
    "PermissionDenied",
    "PermissionsRefused",
    "PluginConfigError",
    "PluginFailed",
    "PluginNotFound",
    "PluginTimeout",
    "Problem",
    "RegistrationConflict",
    "RegistrationError",
    "ReloadError",
    "RequirementLink",
    "ResolutionError",
    "ToolArgumentsInvalid",
    "ToolError",
    "ToolFailed",
    "ToolNotFound",
    "UndeclaredCapability",
    "UndeclaredSurface",
    "UnsafeArchive",
    "VersionConflict",
    "WorkerDied",
    "WorkerError",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about one field of a file.

    ``field`` is a dotted path into the document (``plugin.capabilities.tools[0]``), or
    ``None`` when the finding concerns the whole file (a TOML syntax error, a size limit).
    """

    field: str | None
    message: str
    expected: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.field or "(file)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        text = f"{where}: {self.message}"
        if self.expected:
            text = f"{text}; expected {self.expected}"
        return text


class ClawhostError(Exception):
    """Base class of every error clawhost raises on purpose."""


class DiscoveryError(ClawhostError):
    """Discovery could not run at all (for example, a plugin directory that is a file).

    Problems with a single plugin never raise this: they become diagnostics and the
    other plugins are still discovered.
    """


class ManifestError(ClawhostError, ValueError):
    """A ``plugin.toml`` that cannot be used, with every problem found in it.

    All problems of one file are reported together, not only the first.
    """

    def __init__(
        self, file: Path | str, problems: tuple[Problem, ...] | list[Problem], plugin: str | None
    ) -> None:
        self.file = Path(file)
        self.problems = tuple(problems)
        self.plugin = plugin
        super().__init__(self._render())

    def _render(self) -> str:
        who = f"plugin {self.plugin!r}" if self.plugin else "plugin"
        count = len(self.problems)
        head = f"{who}: invalid manifest {self.file} ({count} problem{'s' if count != 1 else ''})"
        return "\n".join([head, *(f"  - {problem}" for problem in self.problems)])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.file, self.problems, self.plugin))


# -- configuration --------------------------------------------------------------------------


class ConfigError(ClawhostError, ValueError):
    """A host ``config.toml`` that cannot be used, with every problem found in it.

    Each problem's ``field`` is the dotted table and key (``plugins.sandbox.max_concurrency``).
    """

    def __init__(
        self, file: Path | str | None, problems: tuple[Problem, ...] | list[Problem]
    ) -> None:
        self.file = Path(file) if file is not None else None
        self.problems = tuple(problems)
        super().__init__(self._render())

    def _head(self) -> str:
        where = str(self.file) if self.file is not None else "configuration"
        count = len(self.problems)
        return f"invalid {where} ({count} problem{'s' if count != 1 else ''})"

    def _render(self) -> str:
        return "\n".join([self._head(), *(f"  - {problem}" for problem in self.problems)])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.file, self.problems))


class PluginConfigError(ConfigError):
    """One plugin's configuration does not match its manifest's schema.

    Messages never include the value of a secret option.
    """

    def __init__(
        self, plugin: str, file: Path | str | None, problems: tuple[Problem, ...] | list[Problem]
    ) -> None:
        self.plugin = plugin
        super().__init__(file, problems)

    def _head(self) -> str:
        return f"plugin {self.plugin!r}: {super()._head()}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.file, self.problems))


# -- resolution -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequirementLink:
    """One requirement in a chain: ``requirer`` (at ``requirer_version``) needs ``dependency``
    in ``requirement``. ``requirer`` is ``None`` for a requirement made by the host or the
    user (``plugins install``)."""

    requirer: str | None
    requirer_version: str | None
    dependency: str
    requirement: str

    def __str__(self) -> str:
        who = "the host" if self.requirer is None else f"{self.requirer} v{self.requirer_version}"
        return f"{who} requires {self.dependency} {self.requirement}"


class ResolutionError(ClawhostError):
    """``plugin`` cannot be part of a consistent set of plugins; subclasses say why."""

    plugin: str

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(message)


class InvalidRequirement(ResolutionError, ValueError):
    """A version requirement that cannot be parsed, naming the plugin and the field."""

    def __init__(self, plugin: str, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(plugin, f"plugin {plugin!r}: {field} = {value!r} is invalid: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.field, self.value, self.reason))


class MissingDependency(ResolutionError):
    """``plugin`` requires ``dependency``, which is not installed (or is disabled)."""

    def __init__(
        self, plugin: str, dependency: str, requirement: str, disabled: bool = False
    ) -> None:
        self.dependency = dependency
        self.requirement = requirement
        self.disabled = disabled
        why = "is disabled" if disabled else "is not installed"
        super().__init__(plugin, f"{plugin} requires {dependency} {requirement}, which {why}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.dependency, self.requirement, self.disabled))


class VersionConflict(ResolutionError):
    """No version of ``dependency`` satisfies every requirement on it.

    ``chain`` holds the requirements involved, ``available`` the versions on offer, and
    ``suggestions`` what a person can do about it. ``unusable`` pairs each version on offer
    that would satisfy the chain but cannot be used with the reason why (its own
    ``min_clawdesk_version``, its own dependencies); such versions are not in ``available``.
    """

    # Pickling passes every field positionally (see __reduce__).
    def __init__(  # noqa: PLR0917
        self,
        plugin: str,
        dependency: str,
        chain: tuple[RequirementLink, ...],
        available: tuple[str, ...],
        suggestions: tuple[str, ...] = (),
        unusable: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.dependency = dependency
        self.chain = chain
        self.available = available
        self.suggestions = suggestions
        self.unusable = unusable
        super().__init__(plugin, self.render())

    def summary(self) -> str:
        """The conflict on one line, for logs."""
        needs = "; ".join(str(link) for link in self.chain)
        offered = ", ".join(self.available) or "none"
        return f"dependency conflict: {needs} (available {self.dependency}: {offered})"

    def render(self) -> str:
        """The explanation, as the CLI prints it."""
        lines = ["Dependency conflict detected"]
        lines.extend(f"  {link}" for link in self.chain)
        offered = ", ".join(self.available) if self.available else "none"
        lines.append(f"  available {self.dependency} versions: {offered}")
        lines.extend(
            f"  {self.dependency} {version} cannot be used: {reason}"
            for version, reason in self.unusable
        )
        lines.append("These version requirements are incompatible.")
        if self.suggestions:
            lines.append("Suggestions:")
            lines.extend(f"  {index}. {text}" for index, text in enumerate(self.suggestions, 1))
        return "\n".join(lines)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (
                self.plugin,
                self.dependency,
                self.chain,
                self.available,
                self.suggestions,
                self.unusable,
            ),
        )


class DependencyCycle(ResolutionError):
    """Plugins that require each other; ``cycle`` lists them, first repeated last."""

    def __init__(self, plugin: str, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        super().__init__(plugin, f"dependency cycle: {' -> '.join(cycle)}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.cycle))


class HostTooOld(ResolutionError):
    """The plugin's ``min_clawdesk_version`` is newer than the host."""

    def __init__(self, plugin: str, version: str, required: str, host_version: str) -> None:
        self.version = version
        self.required = required
        self.host_version = host_version
        super().__init__(
            plugin,
            f"{plugin} v{version} needs clawdesk >= {required}, but this host is "
            f"{host_version}: upgrade the host or use an older {plugin}",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.version, self.required, self.host_version))


class DependencyFailed(ResolutionError):
    """A dependency of ``plugin`` failed (to resolve, load or activate), so it cannot run."""

    def __init__(
        self, plugin: str, dependency: str, reason: str | None = None, stage: str | None = None
    ) -> None:
        self.dependency = dependency
        self.reason = reason
        #: The stage at which the dependency failed (load, resolve, activate, run), if known.
        self.stage = stage
        message = f"dependency {dependency} failed" + (f" at stage {stage}" if stage else "")
        super().__init__(plugin, f"{message}: {reason}" if reason else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.dependency, self.reason, self.stage))


# -- sandbox ----------------------------------------------------------------------------------


class PermissionsRefused(ClawhostError, PermissionError):
    """A plugin's manifest asks for more than the host config grants; it is not loaded.

    ``refused`` lists each permission asked for and not granted, and why, e.g.
    ``"network api.example.com:443: not in [plugins.sandbox] net_allowed"``.
    """

    def __init__(self, plugin: str, refused: tuple[str, ...]) -> None:
        self.plugin = plugin
        self.refused = refused
        super().__init__(
            f"plugin {plugin!r} asks for permissions the host does not grant: " + "; ".join(refused)
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.refused))


class PermissionDenied(ClawhostError, PermissionError):
    """Plugin code tried to use a resource it has no permission for.

    ``kind`` is ``filesystem``, ``network`` or ``subprocess``; ``resource`` is what it
    tried to touch (a resolved path, ``host:port``, a command).
    """

    def __init__(self, plugin: str, kind: str, resource: str, detail: str | None = None) -> None:
        self.plugin = plugin
        self.kind = kind
        self.resource = resource
        self.detail = detail
        message = f"plugin {plugin!r} may not use {kind} resource {resource}"
        super().__init__(f"{message} ({detail})" if detail else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.kind, self.resource, self.detail))


class PluginTimeout(ClawhostError, TimeoutError):
    """A call into plugin code did not finish within its limit.

    ``interrupted`` tells whether the plugin's code was actually stopped; when Python
    cannot interrupt it (blocked inside C code in a thread), the call fails anyway and the
    code finishes in the background.
    """

    def __init__(self, plugin: str, operation: str, limit: float, interrupted: bool = True) -> None:
        self.plugin = plugin
        self.operation = operation
        self.limit = limit
        self.interrupted = interrupted
        tail = "" if interrupted else " (it could not be interrupted and runs on in the background)"
        super().__init__(f"plugin {plugin!r}: {operation} did not finish within {limit:g}s{tail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.operation, self.limit, self.interrupted))


# -- lifecycle --------------------------------------------------------------------------------


class LifecycleError(ClawhostError):
    """The lifecycle was asked to do something it cannot do."""


class PluginNotFound(LifecycleError, LookupError):
    """No plugin of that name is known to the host."""

    def __init__(self, plugin: str, known: tuple[str, ...] = ()) -> None:
        self.plugin = plugin
        self.known = known
        hint = f"; known plugins: {', '.join(known)}" if known else ""
        super().__init__(f"plugin not found: {plugin!r}{hint}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.known))


class IllegalTransition(LifecycleError):
    """A state change the lifecycle does not allow, with what to do instead."""

    def __init__(self, plugin: str, current: str, target: str, hint: str = "") -> None:
        self.plugin = plugin
        self.current = current
        self.target = target
        self.hint = hint
        message = f"plugin {plugin!r} cannot go from {current} to {target}"
        super().__init__(f"{message}: {hint}" if hint else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.current, self.target, self.hint))


class PluginFailed(LifecycleError):
    """A lifecycle stage failed for one plugin: ``stage`` and ``reason`` say which and why.

    The original exception, when there is one, is ``__cause__``.
    """

    def __init__(self, plugin: str, stage: str, reason: str) -> None:
        self.plugin = plugin
        self.stage = stage
        self.reason = reason
        super().__init__(f"plugin {plugin!r} failed to {stage}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.stage, self.reason))


# -- registrations ----------------------------------------------------------------------------


class RegistrationError(ClawhostError, ValueError):
    """Something a plugin tried to register was refused."""


class UndeclaredCapability(RegistrationError):
    """A plugin registered a capability its manifest does not declare."""

    def __init__(self, plugin: str, kind: str, name: str, declared: tuple[str, ...]) -> None:
        self.plugin = plugin
        self.kind = kind
        self.name = name
        self.declared = declared
        listed = ", ".join(declared) if declared else "none"
        super().__init__(
            f"plugin {plugin!r} registered {kind} {name!r}, which its manifest does not declare "
            f"under [plugin.capabilities] {kind}s (declared: {listed})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.kind, self.name, self.declared))


class UndeclaredSurface(RegistrationError):
    """A plugin offered a gateway surface (an HTTP app) its manifest does not declare."""

    def __init__(self, plugin: str, surface: str, section: str) -> None:
        self.plugin = plugin
        self.surface = surface
        self.section = section
        super().__init__(
            f"plugin {plugin!r} registered {surface}, which its manifest does not declare: "
            f"add {section} (manifest_version = 2) to its plugin.toml"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.surface, self.section))


class RegistrationConflict(RegistrationError):
    """Two plugins claim one name; the first registration stands."""

    def __init__(self, kind: str, name: str, owner: str, claimant: str) -> None:
        self.kind = kind
        self.name = name
        self.owner = owner
        self.claimant = claimant
        super().__init__(
            f"plugin {claimant!r} cannot register {kind} {name!r}: plugin {owner!r} already did"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.kind, self.name, self.owner, self.claimant))


class ContextClosed(RegistrationError):
    """A plugin registered something through a context the host has closed: after its
    deactivation (or a failed activation), from a thread or timer it left running."""

    def __init__(self, plugin: str, kind: str, name: str) -> None:
        self.plugin = plugin
        self.kind = kind
        self.name = name
        super().__init__(
            f"plugin {plugin!r} registered {kind} {name!r} after it was deactivated; "
            "its context is closed (stop background work in a deactivate hook or cleanup)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.kind, self.name))


class NotRegistered(ClawhostError, LookupError):
    """Nothing of that kind is registered under that name (a channel, provider or stage)."""

    def __init__(self, kind: str, name: str, known: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        hint = f"; registered: {', '.join(known)}" if known else ""
        super().__init__(f"no {kind} named {name!r}{hint}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.kind, self.name, self.known))


# -- tools ------------------------------------------------------------------------------------


class ToolError(ClawhostError):
    """Using a tool failed."""


class ToolNotFound(ToolError, LookupError):
    """No tool of that name is registered or declared."""

    def __init__(self, tool: str, known: tuple[str, ...] = ()) -> None:
        self.tool = tool
        self.known = known
        hint = f"; known tools: {', '.join(known)}" if known else ""
        super().__init__(f"tool not found: {tool!r}{hint}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.tool, self.known))


class ToolArgumentsInvalid(ToolError, ValueError):
    """The arguments do not match the tool's input schema; every problem is listed."""

    def __init__(self, tool: str, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.tool = tool
        self.problems = tuple(problems)
        lines = [f"invalid arguments for tool {tool!r}"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.tool, self.problems))


class ToolFailed(ToolError):
    """The tool's own code raised; the exception it raised is ``__cause__``."""

    def __init__(self, tool: str, plugin: str, reason: str) -> None:
        self.tool = tool
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"tool {tool!r} (plugin {plugin!r}) failed: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.tool, self.plugin, self.reason))


# -- hot reload -------------------------------------------------------------------------------


class ReloadError(ClawhostError):
    """A hot reload failed at ``stage``; the old version was kept and still serves."""

    def __init__(self, plugin: str, stage: str, reason: str) -> None:
        self.plugin = plugin
        self.stage = stage
        self.reason = reason
        super().__init__(f"reload of plugin {plugin!r} failed to {stage}: {reason}; rolled back")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.stage, self.reason))


# -- process isolation ------------------------------------------------------------------------


class WorkerDied(ClawhostError):
    """A plugin's worker process (``isolation = "process"``) is gone: it exited, crashed,
    ran out of memory or was killed by the host at a deadline.

    ``operation`` is the call that met it gone (``None``: it died between calls);
    ``returncode`` is the process's exit status, negative for a signal (``-9``: SIGKILL),
    ``None`` when unknown; ``reason`` says why the host killed it or gave up on it.
    """

    def __init__(
        self,
        plugin: str,
        operation: str | None,
        pid: int | None,
        returncode: int | None,
        reason: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.operation = operation
        self.pid = pid
        self.returncode = returncode
        self.reason = reason
        if returncode is None:
            how = "is not running"
        elif returncode < 0:
            how = f"was killed by signal {-returncode} ({_signal_name(-returncode)})"
        else:
            how = f"exited with status {returncode}"
        process = f"worker process (pid {pid})" if pid is not None else "worker process"
        message = f"plugin {plugin!r}: its {process} {how}"
        if operation:
            message = f"{message} during {operation}"
        super().__init__(f"{message}; {reason}" if reason else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.plugin, self.operation, self.pid, self.returncode, self.reason),
        )


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


class WorkerError(ClawhostError):
    """Plugin code in a worker process raised an exception whose type the host cannot
    rebuild (the plugin's own exception classes): ``type_name`` is its qualified name,
    ``message`` its text, ``remote_traceback`` the traceback as the worker formatted it.

    Builtin exceptions and clawhost's own errors cross the boundary as themselves.
    """

    def __init__(
        self,
        plugin: str,
        type_name: str,
        message: str,
        remote_traceback: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}" if message else type_name)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.type_name, self.message, self.remote_traceback))


class NotIsolatable(RegistrationError):
    """Something that cannot work across a worker process's boundary, from a plugin with
    ``isolation = "process"``: a provider or channel factory (Python objects the host would
    call directly), or an in-memory plugin. ``what`` names it, ``why`` explains."""

    def __init__(self, plugin: str, what: str, why: str) -> None:
        self.plugin = plugin
        self.what = what
        self.why = why
        super().__init__(
            f'plugin {plugin!r} runs in process isolation (isolation = "process"), '
            f"where {what} cannot work: {why}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.what, self.why))


# -- plugin projects and installation ---------------------------------------------------------


class InvalidPluginProject(ClawhostError, ValueError):
    """A folder that is not a plugin project (``plugins test``, ``clawhost.testing``).

    A project is a folder with a ``pyproject.toml`` whose ``clawdesk.plugins`` entry point
    names a package holding ``plugin.toml``, or a directory plugin (``plugin.toml`` with
    ``entry``). ``problems`` says what is missing, each naming the file and the field.
    """

    def __init__(self, path: Path | str, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        lines = [f"{self.path} is not a plugin project"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.problems))


class InstallError(ClawhostError):
    """``clawhost plugins install``, ``update`` or ``uninstall`` stopped before a change."""


class InvalidPluginSpec(InstallError, ValueError):
    """What to install is not a plugin name, a path, an archive or a git URL.

    Refused before anything runs: ``spec`` is what was given and ``reason`` why it cannot
    be used (it would be read as an option, it is not a valid requirement, ...).
    """

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"cannot install {spec!r}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.spec, self.reason))


class UnsafeArchive(InstallError, ValueError):
    """A member of ``archive`` would be written outside the folder it is unpacked into.

    ``member`` is its name in the archive and ``reason`` what is wrong with it (an absolute
    path, a ``..`` component, a link pointing out, a device file).
    """

    def __init__(self, archive: Path | str, member: str, reason: str) -> None:
        self.archive = Path(archive)
        self.member = member
        self.reason = reason
        super().__init__(f"refusing {self.archive.name}: member {member!r} {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.archive, self.member, self.reason))


class InstallConflict(InstallError):
    """Installing ``plugin`` (``version``) would leave plugins unresolvable.

    ``failures`` maps each plugin that would fail to why (a ``ResolutionError``: usually a
    ``VersionConflict``, whose ``render()`` explains it with suggestions). ``explanation``,
    when given, is the message (the CLI's explanation of every failure, with suggestions).
    """

    def __init__(
        self,
        plugin: str,
        version: str,
        failures: dict[str, ResolutionError],
        explanation: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.version = version
        self.failures = dict(failures)
        self.explanation = explanation
        names = ", ".join(sorted(self.failures))
        super().__init__(explanation or f"installing {plugin} v{version} would break: {names}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.version, self.failures, self.explanation))


class InstallerFailed(InstallError):
    """pip, uv or git exited with ``returncode``; ``output`` holds the end of what it said."""

    def __init__(self, command: tuple[str, ...], returncode: int, output: str = "") -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.output = output
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        tool = " ".join(self.command[:3]) if self.command else "installer"
        detail = f": {last.strip()}" if last else ""
        super().__init__(f"{tool} exited with status {returncode}{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.command, self.returncode, self.output))
