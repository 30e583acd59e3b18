"""What a refusal needs to name its fix: a permission, the command that grants it, the table.

A manifest's ``[plugin.permissions]`` asks for ``Permission``s; ``grant_command`` is the
``clawhost plugins grant`` command line that records them in config.toml, and
``GrantSource`` says which table (``[plugins.sandbox]`` or the plugin's own
``[plugins.<name>.sandbox]``) and which file each grant was read from. They live here, in
the sandbox layer, so the host's own ``PermissionsRefused`` can end with the command; the
CLI (``clawhost.cli.permissions``) uses the same ones.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from clawhost.core.describe import toml_path

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.discovery.manifest import Permissions

__all__ = ["KEYS", "KINDS", "GrantSource", "Kind", "Permission", "grant_command", "requested"]

Kind = Literal["network", "filesystem", "subprocess"]
KINDS: tuple[Kind, ...] = ("network", "filesystem", "subprocess")
#: The sandbox key that grants each kind.
KEYS: dict[Kind, str] = {
    "network": "net_allowed",
    "filesystem": "fs_allowed",
    "subprocess": "allow_subprocess",
}


@dataclass(frozen=True, slots=True, order=True)
class Permission:
    """One thing a manifest asks for: ``network`` ``host:port``, ``filesystem`` path (as
    the manifest writes them), or ``subprocess`` (no value)."""

    kind: Kind
    value: str = ""

    @property
    def token(self) -> str:
        """How the command line names it: ``network:api.example.com:443``, ``subprocess``."""
        return f"{self.kind}:{self.value}" if self.value else self.kind

    def __str__(self) -> str:
        return f"{self.kind} {self.value}" if self.value else self.kind


def requested(permissions: Permissions) -> list[Permission]:
    """Everything ``[plugin.permissions]`` asks for, in the manifest's order."""
    asked = [Permission("network", value) for value in permissions.network]
    asked += [Permission("filesystem", value) for value in permissions.filesystem]
    if permissions.subprocess:
        asked.append(Permission("subprocess"))
    return list(dict.fromkeys(asked))


def grant_command(name: str, permissions: Iterable[Permission]) -> str:
    """``clawhost plugins grant NAME PERMISSION...``, quoted for a shell."""
    tokens = [shlex.quote(permission.token) for permission in permissions]
    return " ".join(["clawhost plugins grant", shlex.quote(name), *tokens])


@dataclass(frozen=True, slots=True)
class GrantSource:
    """Where one plugin's grants were read from, for the messages that refuse it: the
    config file (``None``: configured in code), and the keys its own
    ``[plugins.<plugin>.sandbox]`` gives (the others come from ``[plugins.sandbox]``)."""

    plugin: str
    own: frozenset[str] = frozenset()
    file: Path | None = None

    @classmethod
    def of(cls, plugin: str, config: HostConfig) -> GrantSource:
        """Where ``config`` grants ``plugin`` what it grants."""
        overrides = config.settings_for(plugin).sandbox
        own = frozenset(key for key in KEYS.values() if getattr(overrides, key) is not None)
        return cls(plugin, own, config.file)

    def key(self, key: str) -> tuple[str, ...]:
        """The TOML path of ``key`` as it applies to the plugin."""
        if key in self.own:
            return ("plugins", self.plugin, "sandbox", key)
        return ("plugins", "sandbox", key)

    def table(self, key: str) -> str:
        """``[plugins.sandbox]`` or ``[plugins.<plugin>.sandbox]``: the table ``key`` is read
        from for the plugin."""
        return f"[{toml_path(self.key(key)[:-1])}]"
