"""Real installed-distribution layouts on disk, for purpose-built (often broken) plugins.

``SiteDir.add`` writes what an installer writes for a wheel: a ``.dist-info`` directory
with METADATA, entry_points.txt, RECORD and INSTALLER, and the package files beside it.
Example plugins are not faked this way: they are built into real wheels and installed
with pip (see ``conftest.py``).
"""

from __future__ import annotations

import os
import textwrap
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

GROUP = "clawdesk.plugins"


def manifest(name: str | None = "demo", version: str | None = "1.0.0", **sections: str) -> str:
    """A small valid manifest; keyword arguments append raw TOML sections by name."""
    lines = ["[plugin]"]
    if name is not None:
        lines.append(f'name = "{name}"')
    if version is not None:
        lines.append(f'version = "{version}"')
    text = "\n".join(lines) + "\n"
    for body in sections.values():
        text += "\n" + textwrap.dedent(body).strip() + "\n"
    return text


class SiteDir:
    """A directory used as a ``sys.path`` entry holding installed distributions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return str(self.root)

    def add(
        self,
        distribution: str,
        version: str,
        *,
        entry_points: Mapping[str, str] | None = None,
        files: Mapping[str, str | bytes] | None = None,
        group: str = GROUP,
        metadata: Iterable[str] = (),
    ) -> Path:
        """Install a distribution; returns its .dist-info directory."""
        escaped = distribution.replace("-", "_")
        dist_info = self.root / f"{escaped}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        headers = ["Metadata-Version: 2.1", f"Name: {distribution}", f"Version: {version}"]
        headers.extend(metadata)
        (dist_info / "METADATA").write_text("\n".join(headers) + "\n\n", "utf-8")
        (dist_info / "INSTALLER").write_text("pip\n", "utf-8")
        if entry_points:
            body = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
            (dist_info / "entry_points.txt").write_text(f"[{group}]\n{body}", "utf-8")
        record = [f"{dist_info.name}/METADATA,,", f"{dist_info.name}/RECORD,,"]
        for relative, content in (files or {}).items():
            path = self.root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, "utf-8")
            record.append(f"{relative},,")
        (dist_info / "RECORD").write_text("\n".join(record) + "\n", "utf-8")
        return dist_info

    def add_plugin(
        self,
        name: str,
        version: str = "1.0.0",
        *,
        module: str | None = None,
        plugin_toml: str | bytes | None = None,
        code: str = "",
        distribution: str | None = None,
    ) -> Path:
        """Install a one-plugin distribution with its manifest inside its package."""
        module = module or f"plugin_{name.replace('-', '_')}"
        toml = plugin_toml if plugin_toml is not None else manifest(name, version)
        return self.add(
            distribution or f"clawdesk-plugin-{name}",
            version,
            entry_points={name: module},
            files={f"{module}/__init__.py": code, f"{module}/plugin.toml": toml},
        )


def age(root: Path, seconds: float = 3600) -> None:
    """Set the mtime of everything under ``root`` (and ``root``) into the past.

    The discovery cache will not trust stamps made within two seconds of the save, so
    tests that want a warm cache age their files first.
    """
    stamp = time.time() - seconds
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(folder, name), (stamp, stamp))
    os.utime(root, (stamp, stamp))


def directory_plugin(
    root: Path,
    name: str,
    code: str,
    *,
    version: str = "1.0.0",
    folder: str | None = None,
    module: str | None = None,
    entry_object: str | None = None,
    sections: Mapping[str, str] | None = None,
) -> Path:
    """Write a directory plugin (``plugin.toml`` + its module) under ``root``.

    ``sections`` appends raw TOML tables (``capabilities='[plugin.capabilities]...'``).
    The module gets a name of its own (unless ``module`` is given), so tests never collide
    in ``sys.modules``.
    """
    module = module or f"dirplugin_{name.replace('-', '_')}_{uuid.uuid4().hex[:12]}"
    folder_path = root / (folder or f"{name}-{version}")
    folder_path.mkdir(parents=True, exist_ok=True)
    entry = module if entry_object is None else f"{module}:{entry_object}"
    text = manifest(name, version) + f'entry = "{entry}"\n'
    for body in (sections or {}).values():
        text += "\n" + textwrap.dedent(body).strip() + "\n"
    (folder_path / "plugin.toml").write_text(text, "utf-8")
    (folder_path / f"{module}.py").write_text(textwrap.dedent(code), "utf-8")
    return folder_path
