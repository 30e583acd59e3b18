"""clawhost: an embeddable, in-process plugin framework for AI-agent gateways.

Every public name is re-exported here and loaded on first use, so ``import clawhost``
costs almost nothing: pydantic, anyio, watchdog and opentelemetry are imported only when
the part of clawhost that needs them is.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from . import errors
    from ._cache import DiscoveryCache, invalidate_discovery_cache
    from ._discover import (
        DEFAULT_GROUP,
        Diagnostic,
        DiscoveredPlugin,
        DiscoveryResult,
        DistributionInfo,
        PluginSource,
        SourceKind,
        discover_plugins,
    )
    from ._manifest import (
        Capabilities,
        ConfigOption,
        Manifest,
        Permissions,
        load_manifest,
        parse_manifest,
    )
    from ._versions import VersionRequirement, parse_requirement

__all__ = [
    "DEFAULT_GROUP",
    "Capabilities",
    "ConfigOption",
    "Diagnostic",
    "DiscoveredPlugin",
    "DiscoveryCache",
    "DiscoveryResult",
    "DistributionInfo",
    "Manifest",
    "Permissions",
    "PluginSource",
    "SourceKind",
    "VersionRequirement",
    "__version__",
    "discover_plugins",
    "errors",
    "invalidate_discovery_cache",
    "load_manifest",
    "parse_manifest",
    "parse_requirement",
]

# name -> the private module that defines it
_LAZY: dict[str, str] = {
    "DEFAULT_GROUP": "._discover",
    "Capabilities": "._manifest",
    "ConfigOption": "._manifest",
    "Diagnostic": "._discover",
    "DiscoveredPlugin": "._discover",
    "DiscoveryCache": "._cache",
    "DiscoveryResult": "._discover",
    "DistributionInfo": "._discover",
    "Manifest": "._manifest",
    "Permissions": "._manifest",
    "PluginSource": "._discover",
    "SourceKind": "._discover",
    "VersionRequirement": "._versions",
    "discover_plugins": "._discover",
    "invalidate_discovery_cache": "._cache",
    "load_manifest": "._manifest",
    "parse_manifest": "._manifest",
    "parse_requirement": "._versions",
}


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module(".errors", __name__)
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'clawhost' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    # Show the public home of the object (clawhost.PluginHost, not clawhost._host...).
    if getattr(value, "__module__", "").startswith("clawhost._"):
        with contextlib.suppress(AttributeError, TypeError):  # some objects refuse
            value.__module__ = __name__
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
