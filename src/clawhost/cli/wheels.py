"""The plugins a wheel holds, read from the zip without installing or importing it.

Discovery's rules, applied to a wheel: the ``clawdesk.plugins`` entry points in its
``.dist-info/entry_points.txt`` name the plugins' modules, each package ships its
``plugin.toml``, and the distribution's version is the plugin's (the manifest must agree).
"""

from __future__ import annotations

import configparser
import email.parser
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from clawhost.discovery.discover import DEFAULT_GROUP, DiscoveredPlugin, PluginSource, SourceKind
from clawhost.discovery.manifest import MANIFEST_FILENAME, MAX_MANIFEST_BYTES, parse_manifest
from clawhost.errors import InvalidPluginSpec, ManifestError, Problem

from .archives import check_zip

if TYPE_CHECKING:
    from packaging.requirements import Requirement

__all__ = ["WheelInfo", "read_wheel"]


@dataclass(frozen=True)
class WheelInfo:
    """A built wheel: its distribution, version, requirements and plugins."""

    path: Path
    distribution: str
    version: str
    requires: tuple[Requirement, ...] = ()
    plugins: tuple[DiscoveredPlugin, ...] = field(default=())


def read_wheel(path: Path, *, group: str = DEFAULT_GROUP) -> WheelInfo:
    """Read a wheel's metadata and plugin manifests (checking the zip first)."""
    names = set(check_zip(path, links=False))
    dist_infos = sorted(
        {name.split("/", 1)[0] for name in names if name.split("/", 1)[0].endswith(".dist-info")}
    )
    if len(dist_infos) != 1:
        raise InvalidPluginSpec(str(path), "not a wheel: it needs exactly one .dist-info folder")
    dist_info = dist_infos[0]
    with zipfile.ZipFile(path) as handle:
        metadata = email.parser.Parser().parsestr(
            handle.read(f"{dist_info}/METADATA").decode("utf-8", "replace"), headersonly=True
        )
        distribution = str(metadata.get("Name") or "")
        version = str(metadata.get("Version") or "")
        requires = _requirements(metadata.get_all("Requires-Dist") or [])
        entry_points = _entry_points(handle, f"{dist_info}/entry_points.txt", names, group)
        plugins = tuple(
            _plugin(
                handle,
                path,
                names,
                point=point,
                value=value,
                distribution=distribution,
                version=version,
            )
            for point, value in entry_points.items()
        )
    return WheelInfo(path, distribution, version, requires, plugins)


def _requirements(lines: list[str]) -> tuple[Requirement, ...]:
    from packaging.requirements import InvalidRequirement, Requirement

    found = []
    for line in lines:
        try:
            found.append(Requirement(line))
        except InvalidRequirement:
            continue  # pip will complain about it itself
    return tuple(found)


def _entry_points(
    handle: zipfile.ZipFile, member: str, names: set[str], group: str
) -> dict[str, str]:
    if member not in names:
        return {}
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names' case
    parser.read_string(handle.read(member).decode("utf-8", "replace"))
    if not parser.has_section(group):
        return {}
    return {key.strip(): value.strip() for key, value in parser.items(group)}


def _plugin(
    handle: zipfile.ZipFile,
    wheel: Path,
    names: set[str],
    *,
    point: str,
    value: str,
    distribution: str,
    version: str,
) -> DiscoveredPlugin:
    module = value.partition(":")[0].strip()
    parts = module.split(".")
    candidates = ["/".join([*parts, MANIFEST_FILENAME])]
    if len(parts) > 1:
        candidates.append("/".join([*parts[:-1], MANIFEST_FILENAME]))
    member = next((candidate for candidate in candidates if candidate in names), None)
    where = f"{wheel}!/{candidates[0]}"
    if member is None:
        raise ManifestError(
            where,
            [Problem(None, f"the wheel has no {MANIFEST_FILENAME} beside module {module!r}")],
            point,
        )
    raw = handle.read(member)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(where, [Problem(None, "file is too large")], point)
    text = raw.decode("utf-8", "replace")
    manifest_path = f"{wheel}!/{member}"
    manifest = parse_manifest(text, manifest_path, required=())
    if manifest.version and version and manifest.version != _normal(version):
        raise ManifestError(
            manifest_path,
            [
                Problem(
                    "plugin.version",
                    f"{manifest.version} disagrees with the distribution",
                    _normal(version),
                )
            ],
            manifest.name or point,
        )
    source = PluginSource(
        SourceKind.DISTRIBUTION,
        value,
        wheel,
        wheel,
        distribution=distribution,
        entry_point_name=point,
    )
    return DiscoveredPlugin(
        manifest.name or point,
        version or manifest.version or "0",
        source,
        manifest_path,
        manifest=manifest,
        manifest_text=text,
    )


def _normal(version: str) -> str:
    from clawhost.core.versions import parse_version

    return str(parse_version(version))
