"""Per-plugin permissions: what a plugin may touch, and which plugin is running now.

``grant_permissions`` turns what a manifest asks for into ``EffectivePermissions``, within
what the host config allows, or refuses the plugin with every reason at once. A
``SandboxScope`` pairs those permissions with the plugin; the host enters it (a context
variable) around every call into the plugin's code, and the audit hook in ``audit``
checks file, network and process operations against the scope that is current. The scope
and its context variable live in ``clawhost.sandbox.scope``, below the audit hook; they
are re-exported here, their public home.

This is a guard rail against mistakes, not a security boundary: see docs/sandbox.md.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clawhost.core.describe import toml_path
from clawhost.core.netrules import NetworkRule
from clawhost.errors import ConfigError, PermissionsRefused, Problem
from clawhost.sandbox import audit as _audit  # noqa: F401 (registers the audit hook's installer)
from clawhost.sandbox.consent import KINDS, GrantSource, Kind, Permission, grant_command
from clawhost.sandbox.scope import (
    EffectivePermissions,
    SandboxScope,
    _prefixes,
    _real_folder,
    _within,
    current_scope,
    enter_scope,
    leave_scope,
    resolve_path,
    sandbox_scope,
)

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.manifest import (
        Permissions,
    )  # pydantic: not needed to enforce permissions

__all__ = [
    "SYSTEM_READABLE",
    "EffectivePermissions",
    "SandboxScope",
    "current_scope",
    "enter_scope",
    "grant_from_config",
    "grant_permissions",
    "leave_scope",
    "memory_limit_warning",
    "resolve_path",
    "sandbox_scope",
]

#: Files outside Python's own directories that the standard library reads by itself
#: (time zones, MIME types, the OS release) and that every plugin may therefore read.
SYSTEM_READABLE: tuple[str, ...] = (
    os.devnull,
    "/dev/urandom",
    "/dev/random",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/usr/lib/zoneinfo",
    "/usr/share/lib/zoneinfo",
    "/etc/zoneinfo",
    "/etc/mime.types",
    "/etc/httpd/mime.types",
    "/etc/httpd/conf/mime.types",
    "/etc/apache/mime.types",
    "/etc/apache2/mime.types",
    "/usr/local/etc/httpd/conf/mime.types",
    "/usr/local/lib/netscape/mime.types",
    "/usr/local/etc/mime.types",
    "/etc/os-release",
    "/usr/lib/os-release",
)


def grant_permissions(
    plugin: str,
    asked: Permissions,
    *,
    fs_allowed: Sequence[str],
    net_allowed: Sequence[str],
    allow_subprocess: bool,
    package_dir: Path | None,
    source: GrantSource | None = None,
) -> EffectivePermissions:
    """The permissions ``plugin`` gets: everything its manifest asks for, or nothing.

    A manifest path is granted when it lies inside an ``fs_allowed`` folder (compared after
    resolving ``..`` and symlinks, whole components only); ``~`` and ``$VARS`` in manifest
    paths are expanded. A network pattern is granted when a host pattern covers it
    (``*.example.com:443`` covers ``api.example.com:443``; ``*`` ports cover any port).
    Anything not granted raises ``PermissionsRefused`` listing every refused item and why,
    and ending with the ``clawhost plugins grant`` command that grants them. ``source``
    says where the grants were read from (table per key, config file), for the messages;
    without it they name ``[plugins.sandbox]``. A malformed ``net_allowed`` entry is the
    host's mistake: ``ValueError`` (a ``ConfigError`` naming file and key with ``source``).
    """
    refused: list[str] = []
    grantable: dict[Kind, list[Permission]] = {kind: [] for kind in KINDS}
    impossible = False
    host_roots = [os.path.realpath(os.path.expanduser(root)) for root in fs_allowed]
    host_write = frozenset(host_roots), _prefixes(host_roots)
    filesystem: list[str] = []
    for entry in asked.filesystem:
        expanded = os.path.expanduser(os.path.expandvars(entry))
        if not os.path.isabs(expanded):
            refused.append(f"filesystem {entry}: not an absolute path")
            impossible = True
            continue
        resolved = os.path.realpath(expanded)
        if not _within(resolved, *host_write):
            shown = entry if resolved == os.path.normpath(entry) else f"{entry} ({resolved})"
            refused.append(f"filesystem {shown}: outside {_named(source, 'fs_allowed', False)}")
            grantable["filesystem"].append(Permission("filesystem", entry))
        elif resolved not in filesystem:
            filesystem.append(resolved)
    host_rules = _host_rules(net_allowed, source)
    network: list[NetworkRule] = []
    for text in asked.network:
        try:
            rule = NetworkRule.parse(text)
        except ValueError as exc:
            refused.append(f"network {text}: {exc}")
            impossible = True
            continue
        if not any(granted.covers(rule) for granted in host_rules):
            refused.append(f"network {text}: not in {_named(source, 'net_allowed', True)}")
            grantable["network"].append(Permission("network", text))
        elif rule not in network:
            network.append(rule)
    if asked.subprocess and not allow_subprocess:
        refused.append(f"subprocess: {_named(source, 'allow_subprocess', False)} is false")
        grantable["subprocess"].append(Permission("subprocess"))
    if refused:
        missing = dict.fromkeys(p for kind in KINDS for p in grantable[kind])
        raise PermissionsRefused(
            plugin,
            tuple(refused),
            grant_command(plugin, missing) if missing else None,
            str(source.file) if source is not None and source.file is not None else None,
            complete=not impossible,
        )
    # The package's folder through the sandbox's real-path cache: its site is known, so
    # only the folder itself is looked at (os.path.realpath would walk every component).
    readable = [_real_folder(os.fspath(package_dir))] if package_dir is not None else []
    readable.extend(_system_readable())
    return EffectivePermissions(
        plugin=plugin,
        filesystem=tuple(filesystem),
        network=tuple(network),
        subprocess=asked.subprocess,
        readable=tuple(dict.fromkeys(readable)),
    )


def grant_from_config(
    plugin: str, asked: Permissions, config: HostConfig, *, package_dir: Path | None
) -> EffectivePermissions:
    """``grant_permissions`` with what ``config`` grants ``plugin`` (``[plugins.sandbox]``
    merged with ``[plugins.<plugin>.sandbox]``); its messages name the table each grant
    was read from, and the config file."""
    sandbox = config.sandbox_for(plugin)
    grant = functools.partial(
        grant_permissions,
        plugin,
        asked,
        fs_allowed=[str(path) for path in sandbox.fs_allowed],
        net_allowed=sandbox.net_allowed,
        allow_subprocess=sandbox.allow_subprocess,
        package_dir=package_dir,
    )
    try:
        return grant()  # the sources matter only to the messages of a refusal:
    except (PermissionsRefused, ValueError):
        pass
    return grant(source=GrantSource.of(plugin, config))  # the same refusal, naming them


def _named(source: GrantSource | None, key: str, table_by_default: bool) -> str:
    """``key`` with the table it was read from (``[plugins.weather.sandbox] net_allowed``);
    without a ``source``, as the messages always named it."""
    if source is None:
        return f"[plugins.sandbox] {key}" if table_by_default else key
    return f"{source.table(key)} {key}"


def _host_rules(net_allowed: Sequence[str], source: GrantSource | None) -> list[NetworkRule]:
    rules: list[NetworkRule] = []
    for index, text in enumerate(net_allowed):
        try:
            rules.append(NetworkRule.parse(text))
        except ValueError as exc:
            if source is None:
                raise ValueError(f"[plugins.sandbox] net_allowed: {exc}") from None
            field = toml_path((*source.key("net_allowed"), index))
            problem = Problem(field, f"got {text!r}: {exc}", "a 'host:port' pattern")
            raise ConfigError(source.file, [problem]) from None
    return rules


@functools.cache
def _system_readable() -> tuple[str, ...]:
    """``SYSTEM_READABLE`` resolved, once: every grant shares it."""
    return tuple(os.path.realpath(path) for path in SYSTEM_READABLE)


def memory_limit_warning(max_memory_mb: int | None) -> str | None:
    """What the host logs at start-up when ``max_memory_mb`` is set but cannot be enforced.

    Plugins share the host's process and heap; no per-plugin memory limit can hold there.
    The host does not log it for plugins with ``isolation = "process"``, whose worker
    process enforces the limit.
    Returns ``None`` when no limit is configured.
    """
    if not max_memory_mb:
        return None
    return (
        f"[plugins.sandbox] max_memory_mb = {max_memory_mb} is not enforced: plugins run "
        "inside the host process, where Python cannot limit one plugin's memory. Limiting "
        'memory needs a plugin running in its own process: isolation = "process" (in '
        "[plugins.sandbox] or a plugin's own table) enforces it; otherwise, only install "
        "plugins you trust not to exhaust memory."
    )
