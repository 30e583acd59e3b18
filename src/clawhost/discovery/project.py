"""A plugin project on disk (a source tree, not an installed distribution), read without
importing any of its code.

Two layouts are plugin projects:

* a Python project: ``pyproject.toml`` whose ``[project.entry-points."clawdesk.plugins"]``
  names the plugin's module, a package (under ``src/`` or the project folder) holding the
  ``plugin.toml`` manifest, as ``clawhost plugins create`` generates it;
* a directory plugin: a folder holding ``plugin.toml`` whose ``[plugin] entry`` names the
  code, importable with that folder on the path.

``clawhost plugins test`` validates a project this way before it builds anything, and
``clawhost.testing`` loads a project's plugin from its source tree.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clawhost.discovery.discover import DEFAULT_GROUP
from clawhost.discovery.manifest import MANIFEST_FILENAME, Manifest, load_manifest
from clawhost.errors import InvalidPluginProject, Problem

__all__ = ["PluginProject", "read_project"]

Layout = Literal["project", "directory"]


@dataclass(frozen=True, slots=True)
class PluginProject:
    """One plugin of a project folder, as far as it can be known without importing it."""

    root: Path  #: the project folder
    name: str  #: the plugin's name (the manifest's, else the entry point's)
    version: str  #: the manifest's version, else ``[project] version``
    entry: str  #: ``module`` or ``module:object``
    import_root: Path  #: the folder the module is imported from (``src/`` or the root)
    manifest_path: Path
    manifest: Manifest
    layout: Layout
    distribution: str | None = None  #: ``[project] name`` for a Python project

    @property
    def module(self) -> str:
        """The module the entry names."""
        return self.entry.partition(":")[0]


def read_project(path: Path | str, *, group: str = DEFAULT_GROUP) -> tuple[PluginProject, ...]:
    """Every plugin of the project at ``path``; ``InvalidPluginProject`` or
    ``ManifestError`` (every problem of the manifest) when it cannot be used."""
    root = Path(path).expanduser().absolute()
    if not root.is_dir():
        raise InvalidPluginProject(root, [Problem(None, "not a directory")])
    if (root / MANIFEST_FILENAME).is_file() and not (root / "pyproject.toml").is_file():
        return (_directory_plugin(root),)
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file():
        raise InvalidPluginProject(
            root,
            [
                Problem(
                    None,
                    f"neither pyproject.toml nor {MANIFEST_FILENAME} found",
                    "a Python project (clawhost plugins create) or a directory plugin",
                )
            ],
        )
    return _python_project(root, pyproject, group)


def _directory_plugin(root: Path) -> PluginProject:
    manifest_path = root / MANIFEST_FILENAME
    manifest = load_manifest(manifest_path, required=("name", "version", "entry"))
    assert manifest.name is not None
    assert manifest.version is not None
    assert manifest.entry is not None
    return PluginProject(
        root=root,
        name=manifest.name,
        version=manifest.version,
        entry=manifest.entry,
        import_root=root,
        manifest_path=manifest_path,
        manifest=manifest,
        layout="directory",
    )


def _python_project(root: Path, pyproject: Path, group: str) -> tuple[PluginProject, ...]:
    try:
        data = tomllib.loads(pyproject.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidPluginProject(root, [Problem("pyproject.toml", str(exc))]) from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise InvalidPluginProject(
            root, [Problem("pyproject.toml: [project]", "missing", "a [project] table")]
        )
    field = f'pyproject.toml: [project.entry-points."{group}"]'
    entry_points = _table(_table(project.get("entry-points")).get(group))
    if not entry_points:
        raise InvalidPluginProject(
            root,
            [Problem(field, "missing", "one entry point: <plugin name> = 'module:Object'")],
        )
    distribution = project.get("name") if isinstance(project.get("name"), str) else None
    project_version = project.get("version") if isinstance(project.get("version"), str) else None
    found: list[PluginProject] = []
    problems: list[Problem] = []
    for point_name, value in entry_points.items():
        if not isinstance(value, str) or not _is_entry(value):
            problems.append(
                Problem(f"{field} {point_name}", f"got {value!r}", "'module' or 'module:object'")
            )
            continue
        located = _locate_package(root, value.partition(":")[0])
        if isinstance(located, Problem):
            problems.append(located)
            continue
        import_root, manifest_path = located
        # A ManifestError lists every problem of the manifest, naming the file.
        manifest = load_manifest(manifest_path, required=())
        name = manifest.name or str(point_name)
        version = manifest.version or project_version
        if version is None:
            problems.append(
                Problem(
                    f"{manifest_path}: plugin.version",
                    "missing, and [project] version is dynamic or absent",
                    "a version in plugin.toml",
                )
            )
            continue
        if manifest.version and project_version and manifest.version != project_version:
            problems.append(
                Problem(
                    f"{manifest_path}: plugin.version",
                    f"{manifest.version} disagrees with [project] version {project_version}",
                    "the same version in both",
                )
            )
            continue
        found.append(
            PluginProject(
                root=root,
                name=name,
                version=version,
                entry=value,
                import_root=import_root,
                manifest_path=manifest_path,
                manifest=manifest,
                layout="project",
                distribution=distribution,
            )
        )
    if problems:
        raise InvalidPluginProject(root, problems)
    return tuple(found)


def _table(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_entry(value: str) -> bool:
    module, _, attribute = value.partition(":")
    dotted = [module, *([attribute] if attribute else [])]
    return all(part and all(p.isidentifier() for p in part.split(".")) for part in dotted)


def _locate_package(root: Path, module: str) -> tuple[Path, Path] | Problem:
    """The import root and manifest of ``module``: the package the entry names (or the
    package holding the module it names), under ``src/`` or the project folder."""
    parts = module.split(".")
    looked: list[str] = []
    for base in (root / "src", root):
        package = base.joinpath(*parts)
        if package.is_dir():
            folder = package
        elif len(parts) > 1 and package.with_suffix(".py").is_file():
            folder = package.parent
        else:
            continue
        manifest = folder / MANIFEST_FILENAME
        if manifest.is_file():
            return base, manifest
        looked.append(os.fspath(manifest))
    if looked:
        return Problem(
            f"module {module}",
            f"no {MANIFEST_FILENAME} beside its code (looked at {', '.join(looked)})",
            f"the manifest inside the package, e.g. src/{parts[0]}/{MANIFEST_FILENAME}",
        )
    return Problem(
        f"module {module}",
        f"not found under {root / 'src'} or {root}",
        "the package the entry point names",
    )
