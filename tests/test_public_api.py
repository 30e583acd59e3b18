"""The public surface, pinned: adding, removing or renaming an export shows up as a diff here.

The lists below are written out on purpose. When a change to the public API is intended,
update them in the same commit (and the changelog); when this file fails unexpectedly,
something became public, or stopped being public, by accident.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import clawhost
import clawhost.errors

# Every name of ``clawhost.__all__``, in its order.
CLAWHOST_ALL = [
    "DEFAULT_GROUP",
    "ActivationPlan",
    "Capabilities",
    "ChannelRegistry",
    "ConfigOption",
    "Diagnostic",
    "DiscoveredPlugin",
    "DiscoveryCache",
    "DiscoveryResult",
    "DispatchReport",
    "DistributionInfo",
    "EffectivePermissions",
    "EventBus",
    "Failure",
    "HandlerFailure",
    "HealthReport",
    "HostConfig",
    "HostContext",
    "Manifest",
    "Message",
    "NetworkRule",
    "Permissions",
    "Pipeline",
    "PipelineResult",
    "PluginConfig",
    "PluginContext",
    "PluginHost",
    "PluginRecord",
    "PluginSettings",
    "PluginSource",
    "PluginState",
    "PluginsConfig",
    "ProviderRegistry",
    "Registrations",
    "Resolution",
    "Response",
    "SandboxConfig",
    "SandboxScope",
    "SourceKind",
    "Tool",
    "ToolInfo",
    "ToolRegistry",
    "VersionRequirement",
    "__version__",
    "current_scope",
    "disable_signal_interrupts",
    "discover_plugins",
    "enable_signal_interrupts",
    "errors",
    "grant_permissions",
    "hookimpl",
    "hookspec",
    "invalidate_discovery_cache",
    "load_host_config",
    "load_manifest",
    "parse_manifest",
    "parse_requirement",
    "resolve_plan",
    "sandbox_scope",
    "tool",
    "validate_plugin_config",
]

# Every name of ``clawhost.errors.__all__``, in its order.
ERRORS_ALL = [
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

# The data classes of ``clawhost.errors`` that are not exceptions.
ERROR_DATA = {"Problem", "RequirementLink"}

# Where an exported class or function may say it lives.
PUBLIC_MODULES = {
    "clawhost",
    "clawhost.errors",
    "clawhost.gateway",
    "clawhost.hookspecs",
    "clawhost.testing",
}

# Dunder names that are exported on purpose, as httpx exports its ``__version__``.
EXPORTED_DUNDERS = {"__version__"}


def _is_class_or_function(value: object) -> bool:
    # isroutine covers functools wrappers too (parse_requirement is an lru_cache).
    return inspect.isclass(value) or inspect.isroutine(value)


def _private_homes(module: Any, names: list[str]) -> dict[str, str]:
    """The exported classes and functions whose ``__module__`` is not a public module."""
    homes = {}
    for name in names:
        value = getattr(module, name)
        if _is_class_or_function(value) and value.__module__ not in PUBLIC_MODULES:
            homes[name] = value.__module__
    return homes


# -- clawhost ---------------------------------------------------------------------------------


def test_clawhost_all_is_the_pinned_list() -> None:
    assert clawhost.__all__ == CLAWHOST_ALL


def test_every_name_in_clawhost_all_resolves() -> None:
    missing = [name for name in clawhost.__all__ if not hasattr(clawhost, name)]

    assert missing == []


def test_dir_of_clawhost_lists_every_exported_name() -> None:
    assert set(clawhost.__all__) <= set(dir(clawhost))


def test_no_exported_name_is_private() -> None:
    private = [
        name for name in clawhost.__all__ if name.startswith("_") and name not in EXPORTED_DUNDERS
    ]

    assert private == []


def test_exported_classes_and_functions_report_a_public_module() -> None:
    assert _private_homes(clawhost, clawhost.__all__) == {}


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(clawhost, "PluginManager")


def test_the_api_reference_documents_every_exported_name() -> None:
    # docs/api/clawhost.md lists the names itself (grouped by purpose): a new export needs
    # a ``::: clawhost.<name>`` line there, or a mention for the two that are not objects.
    page = (Path(__file__).resolve().parents[1] / "docs" / "api" / "clawhost.md").read_text()
    documented = set(re.findall(r"^::: clawhost\.(\w+)$", page, flags=re.MULTILINE))

    assert documented == set(clawhost.__all__) - {"__version__", "errors"}
    assert "`clawhost.__version__`" in page
    assert "(errors.md)" in page


# -- clawhost.errors --------------------------------------------------------------------------


def test_errors_all_is_the_pinned_list() -> None:
    assert clawhost.errors.__all__ == ERRORS_ALL


def test_clawhost_errors_is_the_errors_module() -> None:
    assert clawhost.errors is sys.modules["clawhost.errors"]


def test_every_error_class_lives_in_clawhost_errors() -> None:
    homes = {
        name: getattr(clawhost.errors, name).__module__
        for name in clawhost.errors.__all__
        if getattr(clawhost.errors, name).__module__ != "clawhost.errors"
    }

    assert homes == {}


def test_every_exception_in_errors_is_a_clawhost_error() -> None:
    outside = [
        name
        for name in clawhost.errors.__all__
        if name not in ERROR_DATA
        and not issubclass(getattr(clawhost.errors, name), clawhost.errors.ClawhostError)
    ]

    assert outside == []


# -- in a fresh interpreter: nothing imported earlier can hide a lazy-loading bug -------------

_FRESH_CHECK = textwrap.dedent(
    """
    import inspect, json, sys

    import clawhost

    report = {"dir_before": sorted(set(clawhost.__all__) - set(dir(clawhost)))}
    homes, missing = {}, []
    for name in clawhost.__all__:
        try:
            value = getattr(clawhost, name)
        except AttributeError:
            missing.append(name)
            continue
        if inspect.isclass(value) or inspect.isroutine(value):
            homes[name] = value.__module__
    report["missing"] = missing
    report["homes"] = homes

    namespace = {}
    exec("from clawhost import *", namespace)
    report["star"] = sorted(set(clawhost.__all__) - set(namespace))

    import clawhost.errors
    report["error_homes"] = {
        name: getattr(clawhost.errors, name).__module__ for name in clawhost.errors.__all__
    }
    print(json.dumps(report))
    """
)


def test_the_public_surface_holds_in_a_fresh_interpreter() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FRESH_CHECK], check=True, capture_output=True, text=True
    )
    report = json.loads(out.stdout)

    assert report["dir_before"] == []
    assert report["missing"] == []
    assert report["star"] == []
    assert {n: m for n, m in report["homes"].items() if m not in PUBLIC_MODULES} == {}
    assert set(report["error_homes"].values()) == {"clawhost.errors"}


def test_a_name_imported_straight_from_clawhost_reports_its_public_module() -> None:
    # ``from clawhost import X`` as the first thing a process does, one class and one
    # function, goes through the same lazy path as attribute access.
    script = (
        "from clawhost import PluginHost, discover_plugins\n"
        "print(PluginHost.__module__, discover_plugins.__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)

    assert out.stdout.split() == ["clawhost", "clawhost"]
