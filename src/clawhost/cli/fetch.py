"""Getting a plugin into a scratch folder, ready to check, before anything is installed.

Every kind of SPEC ends as one wheel in the scratch folder: a registry requirement is
fetched (``pip wheel --no-deps``), a directory or a git checkout is built, a source
archive is checked and unpacked (no member may land outside the folder) and then built,
a wheel is checked and used as it is. The wheel's manifests are then read from the zip:
nothing is installed or imported, and what is installed afterwards is exactly the wheel
that was checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .archives import extract_archive
from .installer import Installer, git_clone
from .wheels import read_wheel

if TYPE_CHECKING:
    from packaging.requirements import Requirement

    from clawhost.discovery.discover import DiscoveredPlugin

    from .spec import InstallSource

__all__ = ["Fetched", "fetch"]


@dataclass(frozen=True)
class Fetched:
    """A plugin distribution in the scratch folder, read but not installed."""

    source: InstallSource
    distribution: str
    version: str
    plugins: tuple[DiscoveredPlugin, ...]
    requires: tuple[Requirement, ...]
    install_args: tuple[str, ...]  #: what to hand the installer (the wheel, usually)


def fetch(
    source: InstallSource, scratch: Path, installer: Installer, *, no_build_isolation: bool
) -> Fetched:
    """Fetch or build ``source`` into ``scratch`` and read its plugins."""
    from clawhost.errors import InvalidPluginSpec

    wheels = scratch / "wheels"
    if source.kind == "wheel":
        assert source.path is not None
        wheel = source.path
    elif source.kind == "registry" and installer.tool == "uv":
        assert source.requirement is not None
        return _fetch_with_uv(source, scratch, installer)
    else:
        wheel = installer.build_wheel(
            _buildable(source, scratch, installer), wheels, no_build_isolation=no_build_isolation
        )
    info = read_wheel(wheel)
    if not info.plugins:
        raise InvalidPluginSpec(
            source.spec,
            f"{info.distribution or wheel.name} is not a clawhost plugin: "
            "it has no 'clawdesk.plugins' entry point",
        )
    return Fetched(
        source, info.distribution, info.version, info.plugins, info.requires, (str(wheel),)
    )


def _buildable(source: InstallSource, scratch: Path, installer: Installer) -> str:
    """What ``pip wheel`` is given for ``source``: a requirement or a checked folder."""
    if source.kind == "registry":
        assert source.requirement is not None
        return source.requirement
    if source.kind == "directory":
        assert source.path is not None
        return str(source.path)
    if source.kind == "archive":
        assert source.path is not None
        return str(extract_archive(source.path, scratch / "unpacked"))
    assert source.url is not None
    return str(
        git_clone(source.url, scratch / "checkout", branch=source.branch, echo=installer.echo)
    )


def _fetch_with_uv(source: InstallSource, scratch: Path, installer: Installer) -> Fetched:
    """uv has no ``pip wheel``: install the requirement alone into a scratch folder and
    read it there with discovery's rules."""
    from importlib.metadata import PathDistribution

    from packaging.requirements import InvalidRequirement, Requirement

    from clawhost.discovery.discover import discover_plugins
    from clawhost.errors import InvalidPluginSpec

    assert source.requirement is not None
    site = scratch / "site"
    installer.install_target(source.requirement, site)
    found = discover_plugins(path=[str(site)], cache=False)
    if not found.plugins:
        raise InvalidPluginSpec(source.spec, "it is not a clawhost plugin (no entry point)")
    first = found.plugins[0]
    distribution = PathDistribution(first.source.location)
    requires = []
    for line in distribution.requires or ():
        try:
            requires.append(Requirement(line))
        except InvalidRequirement:
            continue
    name = first.source.distribution or source.requirement
    version = str(distribution.version)
    return Fetched(source, name, version, found.plugins, tuple(requires), (f"{name}=={version}",))
