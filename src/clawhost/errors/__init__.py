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
     │    ├── UndeclaredSurface            an HTTP app its manifest does not declare
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
     ├── NotIsolatable (RegistrationError)  what cannot cross a worker's process boundary
     ├── InvalidPluginProject (ValueError) a folder that is not a plugin project; .problems
     └── InstallError                      ``clawhost plugins install/update/uninstall`` stopped
          ├── InvalidPluginSpec (ValueError)  not a plugin name, path, archive or git URL
          ├── UnsafeArchive (ValueError)      an archive member would land outside its folder
          ├── InstallConflict              installing would leave plugins unresolvable
          └── InstallerFailed              pip, uv or git exited with an error

The classes live in one module per stage (``clawhost.errors.resolution``, ...), but each
reports ``clawhost.errors`` as its module: that is the name to import, to pickle by and to
document.
"""

from __future__ import annotations

from .base import (
    ClawhostError,
    Problem,
)
from .config import (
    ConfigError,
    PluginConfigError,
)
from .discovery import (
    DiscoveryError,
    ManifestError,
)
from .install import (
    InstallConflict,
    InstallerFailed,
    InstallError,
    InvalidPluginProject,
    InvalidPluginSpec,
    UnsafeArchive,
)
from .resolution import (
    DependencyCycle,
    DependencyFailed,
    HostTooOld,
    InvalidRequirement,
    MissingDependency,
    RequirementLink,
    ResolutionError,
    VersionConflict,
)
from .runtime import (
    ContextClosed,
    IllegalTransition,
    LifecycleError,
    NotRegistered,
    PluginFailed,
    PluginNotFound,
    RegistrationConflict,
    RegistrationError,
    ReloadError,
    ToolArgumentsInvalid,
    ToolError,
    ToolFailed,
    ToolNotFound,
    UndeclaredCapability,
    UndeclaredSurface,
)
from .sandbox import (
    PermissionDenied,
    PermissionsRefused,
    PluginTimeout,
)
from .worker import (
    NotIsolatable,
    WorkerDied,
    WorkerError,
)

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


def _show_public_home() -> None:
    # Reprs, pickles (errors cross the worker wire by their qualified name) and the API
    # reference all name clawhost.errors, not the module a class happens to be defined in.
    for name in __all__:
        globals()[name].__module__ = __name__


_show_public_home()
