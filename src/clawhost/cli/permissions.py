"""What a plugin asks for, what config.toml grants it, and the edits that grant or revoke.

A manifest's ``[plugin.permissions]`` asks for network endpoints, filesystem paths and
subprocesses; the host grants each one that ``[plugins.sandbox]`` (or the plugin's own
``[plugins.<name>.sandbox]``) covers, and refuses to load a plugin that asks for anything
else. Whether one item is granted is decided here by the host's own ``grant_permissions``,
asked about that item alone, so what these commands say is what the host will do.

A grant is recorded in the plugin's own table, the *consent format*::

    [plugins.weather.sandbox]
    # What `clawhost plugins grant` / `revoke` granted weather (they edit these keys).
    net_allowed = ["api.openweathermap.org:443"]

A list there replaces ``[plugins.sandbox]``'s, so a new one lists every item the plugin
keeps (each written as its manifest asks for it), and the host-wide defaults are never
widened. Edits keep every comment and the layout (tomlkit), are checked by loading the
result before the file is replaced, and replace it atomically.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clawhost.config.host import read_document
from clawhost.core.describe import toml_path
from clawhost.errors import ClawhostError, ConfigError, PermissionsRefused, Problem
from clawhost.sandbox.consent import KEYS, KINDS, Kind, Permission, grant_command, requested

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig, SandboxConfig
    from clawhost.discovery.manifest import Manifest, Permissions

__all__ = [
    "KEYS",
    "KINDS",
    "Item",
    "Permission",
    "PermissionArgumentError",
    "Selection",
    "assess",
    "edit_grants",
    "environment_names",
    "grant_command",
    "host_refusal",
    "requested",
    "select",
]

_SYNTAX = "network[:HOST:PORT], filesystem[:PATH] or subprocess"
_NETWORK_SYNTAX = (
    "network:HOST:PORT, with HOST a name, *.name, an IP address or [IPv6] and PORT 1-65535 or *"
)
_COMMENT = "What `clawhost plugins grant` / `revoke` granted {name} (they edit these keys)."


@dataclass(frozen=True, slots=True)
class Item:
    """One requested permission and what the host config does with it."""

    permission: Permission
    granted: bool
    key: str | None = None  #: the config key that grants it (``plugins.sandbox.net_allowed``)
    problem: str | None = None  #: why it can never be granted (a relative path, ...)

    def to_dict(self) -> dict[str, Any]:
        """The ``plugins inspect --json`` form."""
        return {
            "permission": self.permission.token,
            "kind": self.permission.kind,
            "value": self.permission.value or None,
            "granted": self.granted,
            "granted_by": self.key,
            "problem": self.problem,
        }


class PermissionArgumentError(ClawhostError, ValueError):
    """A PERMISSION given to ``plugins grant`` or ``revoke`` that cannot be used."""


def environment_names(manifest: Manifest) -> list[str]:
    """The environment variables the plugin's settings are read from (not a permission:
    the host reads them, and the sandbox does not limit the environment)."""
    return sorted({option.env for option in manifest.config.values() if option.env})


def _problem(permission: Permission) -> str | None:
    """Why ``permission`` can never be granted, whatever the config says."""
    from clawhost.core.netrules import NetworkRule

    if permission.kind == "network":
        try:
            NetworkRule.parse(permission.value)
        except ValueError as exc:
            return str(exc)
    elif permission.kind == "filesystem":
        expanded = os.path.expanduser(os.path.expandvars(permission.value))
        if not os.path.isabs(expanded):
            return "not an absolute path, which no config can grant"
    return None


def _granted(
    name: str,
    permission: Permission,
    *,
    net_allowed: Sequence[str] = (),
    fs_allowed: Sequence[str] = (),
    allow_subprocess: bool = False,
) -> bool:
    """Whether the host's ``grant_permissions`` grants ``permission`` alone."""
    from clawhost.discovery.manifest import Permissions
    from clawhost.sandbox.permissions import grant_permissions

    alone = Permissions.model_construct(
        network=(permission.value,) if permission.kind == "network" else (),
        filesystem=(permission.value,) if permission.kind == "filesystem" else (),
        subprocess=permission.kind == "subprocess",
    )
    try:
        grant_permissions(
            name,
            alone,
            fs_allowed=fs_allowed,
            net_allowed=net_allowed,
            allow_subprocess=allow_subprocess,
            package_dir=None,
        )
    except (PermissionsRefused, ValueError):
        return False
    return True


def _granted_by(name: str, permission: Permission, sandbox: SandboxConfig) -> bool:
    return _granted(
        name,
        permission,
        net_allowed=sandbox.net_allowed,
        fs_allowed=[str(path) for path in sandbox.fs_allowed],
        allow_subprocess=sandbox.allow_subprocess,
    )


def assess(name: str, permissions: Permissions, config: HostConfig) -> list[Item]:
    """Each permission the manifest asks for: granted by the config, and by which key."""
    sandbox = config.sandbox_for(name)
    overrides = config.settings_for(name).sandbox
    items = []
    for permission in requested(permissions):
        problem = _problem(permission)
        if problem is not None:
            items.append(Item(permission, False, problem=problem))
            continue
        key = KEYS[permission.kind]
        own = getattr(overrides, key) is not None
        where = toml_path(("plugins", name, "sandbox", key) if own else ("plugins", "sandbox", key))
        granted = _granted_by(name, permission, sandbox)
        items.append(Item(permission, granted, where if granted else None))
    return items


def host_refusal(name: str, permissions: Permissions, config: HostConfig) -> str | None:
    """The host's own message for a plugin that asks for more than ``config`` grants
    (what loading it would fail with, less the ``clawhost plugins grant`` command it ends
    with: the commands print their own), or ``None`` when everything is granted."""
    from clawhost.sandbox.permissions import grant_from_config

    try:
        grant_from_config(name, permissions, config, package_dir=None)
    except PermissionsRefused as exc:
        return str(PermissionsRefused(exc.plugin, exc.refused, file=exc.file))
    except ValueError as exc:
        return str(exc)
    return None


# -- PERMISSION arguments -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """What one PERMISSION argument means: the requested items it covers, and the pattern
    to record for them (the argument's own, which may be wider than the items)."""

    argument: str
    covers: tuple[Permission, ...]
    pattern: str | None = None  #: ``None``: record each item as the manifest writes it


def select(
    name: str,
    arguments: Sequence[str],
    asked: Sequence[Permission],
    *,
    file: Path,
    verb: Literal["grant", "revoke"],
) -> list[Selection]:
    """Read ``grant``/``revoke`` PERMISSION arguments against what the plugin asks for.

    No argument means everything it asks for. ``PermissionArgumentError`` names the
    argument, why it cannot be used, and where it would be recorded (file and key).
    """
    usable = [permission for permission in asked if _problem(permission) is None]
    if not arguments:
        return [Selection(permission.token, (permission,)) for permission in usable]
    return [_select_one(name, argument, usable, file=file, verb=verb) for argument in arguments]


def _select_one(
    name: str,
    argument: str,
    asked: Sequence[Permission],
    *,
    file: Path,
    verb: Literal["grant", "revoke"],
) -> Selection:
    def fail(reason: str, kind: Kind | None = None) -> PermissionArgumentError:
        keys = [KEYS[kind]] if kind is not None else list(KEYS.values())
        where = ", ".join(toml_path(("plugins", name, "sandbox", key)) for key in keys)
        return PermissionArgumentError(
            f"cannot {verb} {argument!r} {'to' if verb == 'grant' else 'from'} {name}: "
            f"{reason} (recorded in {file} as {where})"
        )

    kind_text, colon, value = argument.partition(":")
    kind = kind_text.strip().lower()
    if kind not in KINDS:
        raise fail(f"unknown permission {kind_text!r}; a PERMISSION is {_SYNTAX}")
    typed: Kind = kind
    if typed == "subprocess":
        if colon:
            raise fail("subprocess takes no value; write 'subprocess'", typed)
        covers = [permission for permission in asked if permission.kind == "subprocess"]
    elif not colon:
        covers = [permission for permission in asked if permission.kind == typed]
    elif not value.strip() or value != value.strip():
        raise fail(f"an empty or space-padded {typed} value", typed)
    elif typed == "network":
        covers = _network_covers(value, asked, fail)
    else:
        covers = _filesystem_covers(value, asked, fail, name)
    if not covers:
        mine = ", ".join(p.token for p in asked if p.kind == typed) or f"no {typed} permission"
        raise fail(f"{name} does not ask for anything it covers (it asks for: {mine})", typed)
    pattern = value if colon and all(p.value != value for p in covers) else None
    if verb == "revoke":
        pattern = None
    elif pattern is not None and typed == "filesystem":
        pattern = _recorded(Permission("filesystem", pattern))
    return Selection(argument, tuple(covers), pattern)


def _network_covers(value: str, asked: Sequence[Permission], fail: Any) -> list[Permission]:
    from clawhost.core.netrules import NetworkRule
    from clawhost.discovery.manifest import NETWORK_PATTERN

    try:
        rule = NetworkRule.parse(value)
    except ValueError as exc:
        reason = str(exc).removeprefix(f"{value!r}: ").removeprefix(f"{value!r} ")
        raise fail(f"{reason}; a network permission is {_NETWORK_SYNTAX}", "network") from None
    if re.fullmatch(NETWORK_PATTERN, value) is None:
        raise fail(
            f"{value!r} is not a pattern config.toml accepts (letters, digits, '.', '-'); "
            f"a network permission is {_NETWORK_SYNTAX}",
            "network",
        )
    return [
        permission
        for permission in asked
        if permission.kind == "network" and _granted("_", permission, net_allowed=[str(rule)])
    ]


def _filesystem_covers(
    value: str, asked: Sequence[Permission], fail: Any, name: str
) -> list[Permission]:
    expanded = os.path.expanduser(os.path.expandvars(value))
    if not os.path.isabs(expanded):
        raise fail(f"{value!r} is not an absolute path", "filesystem")
    return [
        permission
        for permission in asked
        if permission.kind == "filesystem" and _granted(name, permission, fs_allowed=[expanded])
    ]


# -- recording grants in config.toml --------------------------------------------------------


def _recorded(permission: Permission) -> str:
    """How a granted item is written in config.toml: a path expanded now (``$$`` keeps a
    literal ``$`` from config interpolation), a network pattern as it is."""
    if permission.kind == "filesystem":
        expanded = os.path.normpath(os.path.expanduser(os.path.expandvars(permission.value)))
        return expanded.replace("$", "$$")
    return permission.value


def edit_grants(
    path: Path,
    config: HostConfig,
    name: str,
    asked: Sequence[Permission],
    *,
    grant: Sequence[Selection] = (),
    revoke: Collection[Permission] = (),
) -> HostConfig:
    """Grant the items ``grant`` covers and take back ``revoke``, in the plugin's own
    ``[plugins.<name>.sandbox]`` of the config file at ``path`` (created when absent);
    returns the configuration as it is now. Items granted before stay granted."""
    from clawhost.config.host import HostConfig as Config

    usable = [permission for permission in asked if _problem(permission) is None]
    sandbox = config.sandbox_for(name)
    before = {permission for permission in usable if _granted_by(name, permission, sandbox)}
    patterns: dict[Permission, str] = {}
    for selection in grant:
        for permission in selection.covers:
            patterns.setdefault(permission, selection.pattern or _recorded(permission))
    wanted = (before | set(patterns)) - set(revoke)
    if wanted == before:
        return config
    document = read_document(path)
    created = not _has_sandbox_table(document, name)
    table = _sandbox_table(document, name, path)
    kinds: tuple[Kind, ...] = ("network", "filesystem")
    for kind in kinds:
        mine = [permission for permission in usable if permission.kind == kind]
        keep = [permission for permission in mine if permission in wanted]
        if {p for p in mine if p in before} == set(keep):
            continue
        _edit_list(table, config, name, kind, mine=mine, keep=keep, patterns=patterns)
    if Permission("subprocess") in usable:
        allowed = Permission("subprocess") in wanted
        if allowed != sandbox.allow_subprocess:
            if allowed == config.plugins.sandbox.allow_subprocess:
                table.pop("allow_subprocess", None)
            else:
                table["allow_subprocess"] = allowed
    if created and table:
        import tomlkit

        table.add(tomlkit.nl())  # a blank line before whatever table follows
    _prune(document, name)
    text = document.as_string()
    updated = Config.from_toml(text, file=path)  # checked before the file is touched
    from clawhost.config.host import _write_text

    _write_text(path, text)
    return updated


def _edit_list(
    table: MutableMapping[str, Any],
    config: HostConfig,
    name: str,
    kind: Kind,
    *,
    mine: Sequence[Permission],
    keep: Sequence[Permission],
    patterns: dict[Permission, str],
) -> None:
    """Make ``[plugins.<name>.sandbox] net_allowed`` (or ``fs_allowed``) grant exactly
    ``keep`` of the plugin's ``mine``, keeping whatever else the list holds."""
    import tomlkit

    key = KEYS[kind]
    dropped = [permission for permission in mine if permission not in keep]
    entries = table.get(key)
    if entries is None:
        entries = tomlkit.array()
        table[key] = entries
        entries = table[key]
    for index in reversed(range(len(entries))):
        if any(_entry_covers(str(entries[index]), p, config, name) for p in dropped):
            del entries[index]
    for permission in keep:
        if not any(_entry_covers(str(entry), permission, config, name) for entry in entries):
            written = patterns.get(permission) or _recorded(permission)
            if written not in [str(entry) for entry in entries]:
                entries.append(written)
    if not entries:
        defaults = config.plugins.sandbox
        if not any(_granted_by(name, permission, defaults) for permission in mine):
            del table[key]  # nothing granted either way: leave the defaults in charge
            return
    if len(entries) > 1 and sum(len(str(entry)) + 4 for entry in entries) > 70:
        entries.multiline(True)


def _entry_covers(entry: str, permission: Permission, config: HostConfig, name: str) -> bool:
    """Whether one raw entry of a config list grants ``permission`` (after ``${VAR}``
    substitution, a relative path against the config file's folder)."""
    from clawhost.core.interpolate import InterpolationProblem, interpolate

    try:
        text = interpolate(entry, os.environ)
    except InterpolationProblem:
        return False
    if permission.kind == "network":
        return _granted(name, permission, net_allowed=[text])
    root = os.path.normpath(config.base_dir / os.path.expanduser(text))
    return _granted(name, permission, fs_allowed=[root])


def _table(parent: MutableMapping[str, Any], key: str, path: Path, where: tuple[str, ...]) -> Any:
    """``parent[key]``, a table, created when absent."""
    import tomlkit
    from tomlkit.items import InlineTable

    child = parent.get(key)
    if child is None:
        if isinstance(parent, InlineTable):
            child = tomlkit.inline_table()
        elif where[-1] == "sandbox":
            child = tomlkit.table()
            child.add(tomlkit.comment(_COMMENT.format(name=where[1])))
        else:
            # A super table writes no header of its own, only [plugins.<name>.sandbox].
            child = tomlkit.table(is_super_table=True)
        parent[key] = child
        child = parent[key]
    if not isinstance(child, MutableMapping):
        from clawhost.core.describe import kind_of

        raise ConfigError(path, [Problem(toml_path(where), f"got {kind_of(child)}", "a table")])
    return child


def _has_sandbox_table(document: Any, name: str) -> bool:
    plugins = document.get("plugins")
    section = plugins.get(name) if isinstance(plugins, MutableMapping) else None
    return isinstance(section, MutableMapping) and "sandbox" in section


def _sandbox_table(document: Any, name: str, path: Path) -> Any:
    plugins = _table(document, "plugins", path, ("plugins",))
    section = _table(plugins, name, path, ("plugins", name))
    return _table(section, "sandbox", path, ("plugins", name, "sandbox"))


def _prune(document: Any, name: str) -> None:
    """Drop ``[plugins.<name>.sandbox]`` when it holds nothing but what ``_table`` wrote
    (no key, no comment of the user's), and ``[plugins.<name>]`` when it is left empty and
    has no header of its own."""
    from tomlkit.items import Table

    plugins = document.get("plugins")
    section = plugins.get(name) if isinstance(plugins, MutableMapping) else None
    if not isinstance(section, MutableMapping):
        return
    sandbox = section.get("sandbox")
    if isinstance(sandbox, Table) and not sandbox:
        ours = f"# {_COMMENT.format(name=name)}"
        lines = [line.strip() for line in sandbox.as_string().splitlines()]
        if all(line in ("", ours) for line in lines):
            del section["sandbox"]
    if isinstance(section, Table) and not section and section.is_super_table():
        del plugins[name]
