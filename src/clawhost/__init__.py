"""clawhost: an embeddable, in-process plugin framework for AI-agent gateways.

Every public name is re-exported here and loaded on first use, so ``import clawhost``
costs almost nothing: pydantic, anyio, watchdog and opentelemetry are imported only when
the part of clawhost that needs them is.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from clawhost._version import __version__

if TYPE_CHECKING:
    from clawhost import errors
    from clawhost.config.host import (
        HostConfig,
        PluginsConfig,
        PluginSettings,
        load_host_config,
    )
    from clawhost.config.plugin import PluginConfig, validate_plugin_config
    from clawhost.config.sandbox import SandboxConfig
    from clawhost.core.messages import Message, Response
    from clawhost.core.netrules import NetworkRule
    from clawhost.core.state import PluginState
    from clawhost.core.versions import VersionRequirement, parse_requirement
    from clawhost.discovery.cache import DiscoveryCache, invalidate_discovery_cache
    from clawhost.discovery.discover import (
        DEFAULT_GROUP,
        Diagnostic,
        DiscoveredPlugin,
        DiscoveryResult,
        DistributionInfo,
        PluginSource,
        SourceKind,
        discover_plugins,
    )
    from clawhost.discovery.manifest import (
        Capabilities,
        ConfigOption,
        Manifest,
        Permissions,
        load_manifest,
        parse_manifest,
    )
    from clawhost.hookspecs import hookimpl, hookspec
    from clawhost.host.host import PluginHost
    from clawhost.resolution.plan import ActivationPlan
    from clawhost.resolution.resolve import Resolution, resolve_plan
    from clawhost.runtime.context import HostContext, PluginContext, Registrations
    from clawhost.runtime.events import (
        DispatchReport,
        EventBus,
        HandlerFailure,
        Pipeline,
        PipelineResult,
    )
    from clawhost.runtime.records import Failure, HealthReport, PluginRecord
    from clawhost.runtime.registry import ChannelRegistry, ProviderRegistry, ToolInfo, ToolRegistry
    from clawhost.runtime.tools import Tool, tool
    from clawhost.sandbox.permissions import (
        EffectivePermissions,
        SandboxScope,
        current_scope,
        grant_permissions,
        sandbox_scope,
    )
    from clawhost.sandbox.watchdog import disable_signal_interrupts, enable_signal_interrupts

__all__ = [
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

# name -> the private module that defines it
_LAZY: dict[str, str] = {
    "DEFAULT_GROUP": ".discovery.discover",
    "ActivationPlan": ".resolution.plan",
    "Capabilities": ".discovery.manifest",
    "ChannelRegistry": ".runtime.registry",
    "ConfigOption": ".discovery.manifest",
    "Diagnostic": ".discovery.discover",
    "DiscoveredPlugin": ".discovery.discover",
    "DiscoveryCache": ".discovery.cache",
    "DiscoveryResult": ".discovery.discover",
    "DispatchReport": ".runtime.events",
    "DistributionInfo": ".discovery.discover",
    "EffectivePermissions": ".sandbox.permissions",
    "EventBus": ".runtime.events",
    "Failure": ".runtime.records",
    "HandlerFailure": ".runtime.events",
    "HealthReport": ".runtime.records",
    "HostConfig": ".config.host",
    "HostContext": ".runtime.context",
    "Manifest": ".discovery.manifest",
    "Message": ".core.messages",
    "NetworkRule": ".core.netrules",
    "Permissions": ".discovery.manifest",
    "Pipeline": ".runtime.events",
    "PipelineResult": ".runtime.events",
    "PluginConfig": ".config.plugin",
    "PluginContext": ".runtime.context",
    "PluginHost": ".host.host",
    "PluginRecord": ".runtime.records",
    "PluginSettings": ".config.host",
    "PluginSource": ".discovery.discover",
    "PluginState": ".core.state",
    "PluginsConfig": ".config.host",
    "ProviderRegistry": ".runtime.registry",
    "Registrations": ".runtime.context",
    "Resolution": ".resolution.resolve",
    "Response": ".core.messages",
    "SandboxConfig": ".config.sandbox",
    "SandboxScope": ".sandbox.permissions",
    "SourceKind": ".discovery.discover",
    "Tool": ".runtime.tools",
    "ToolInfo": ".runtime.registry",
    "ToolRegistry": ".runtime.registry",
    "VersionRequirement": ".core.versions",
    "current_scope": ".sandbox.permissions",
    "disable_signal_interrupts": ".sandbox.watchdog",
    "discover_plugins": ".discovery.discover",
    "enable_signal_interrupts": ".sandbox.watchdog",
    "grant_permissions": ".sandbox.permissions",
    "hookimpl": ".hookspecs",
    "hookspec": ".hookspecs",
    "invalidate_discovery_cache": ".discovery.cache",
    "load_host_config": ".config.host",
    "load_manifest": ".discovery.manifest",
    "parse_manifest": ".discovery.manifest",
    "parse_requirement": ".core.versions",
    "resolve_plan": ".resolution.resolve",
    "sandbox_scope": ".sandbox.permissions",
    "tool": ".runtime.tools",
    "validate_plugin_config": ".config.plugin",
}


#: The internal packages (their modules are not a public home for anything).
_INTERNAL = frozenset(
    {
        "core",
        "discovery",
        "config",
        "resolution",
        "sandbox",
        "runtime",
        "worker",
        "reload",
        "surfaces",
        "host",
        "testkit",
    }
)


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module(".errors", __name__)
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'clawhost' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    # Show the public home of the object (clawhost.PluginHost, not clawhost.host.host...).
    if getattr(value, "__module__", "").partition(".")[2].partition(".")[0] in _INTERNAL:
        with contextlib.suppress(AttributeError, TypeError):  # some objects refuse
            value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
