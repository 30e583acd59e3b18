"""What ``clawhost plugins install SPEC`` was given, checked before anything runs.

A SPEC is a registry name (``weather`` means the distribution ``clawdesk-plugin-weather``;
a full distribution name works too, each with an optional version specifier), a local
directory, a ``.tar.gz``/``.zip`` source archive or ``.whl`` file, or a git URL (with
``--branch``). Nothing given here can ever reach pip or git as an option: a SPEC starting
with ``-`` is refused, names must be valid requirements without URLs or markers, and the
commands built from a SPEC put it after ``--``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clawhost.discovery.manifest import DISTRIBUTION_PREFIX
from clawhost.errors import InvalidPluginSpec

__all__ = ["GIT_PROTOCOLS", "InstallSource", "parse_spec", "validate_extra"]

Kind = Literal["registry", "directory", "archive", "wheel", "git"]

#: The only transports a git URL may use (``ext::`` would run a command).
GIT_PROTOCOLS = ("https", "http", "ssh", "git", "file")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".zip")
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]")
_BRANCH = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._/+-]*$")


@dataclass(frozen=True, slots=True)
class InstallSource:
    """Where a plugin comes from, as checked from a SPEC."""

    kind: Kind
    spec: str  #: as given
    requirement: str | None = None  #: registry: ``clawdesk-plugin-weather>=1.2``
    path: Path | None = None  #: directory, archive or wheel
    url: str | None = None  #: git
    branch: str | None = None  #: git

    def __str__(self) -> str:
        if self.kind == "registry":
            return f"{self.requirement} (registry)"
        if self.kind == "git":
            return f"{self.url}" + (f" (branch {self.branch})" if self.branch else "")
        return str(self.path)


def parse_spec(spec: str, *, branch: str | None = None) -> InstallSource:
    """Check a SPEC; ``InvalidPluginSpec`` says why one cannot be used."""
    _check_text(spec)
    if branch is not None:
        _check_branch(spec, branch)
    if spec.startswith("git+") or _SCHEME.match(spec) or _SCP_LIKE.match(spec):
        return _git(spec, branch)
    if branch is not None:
        raise InvalidPluginSpec(spec, "--branch applies to git URLs only")
    # As with pip, "weather" is a name even when a folder of that name is here.
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise InvalidPluginSpec(
                spec, "no such file or directory, and not a plugin name or requirement"
            )
        return _local(spec, path)
    return _registry(spec)


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec
        or "\\" in spec
        or spec.startswith((".", "~"))
        or spec.lower().endswith((".whl", *ARCHIVE_SUFFIXES))
    )


def validate_extra(spec: str) -> str:
    """A requirement or path given beside a SPEC (``plugins test --with``), checked the
    same way; returns it."""
    _check_text(spec)
    return spec


def _check_text(spec: str) -> None:
    if not spec.strip():
        raise InvalidPluginSpec(spec, "it is empty")
    if spec != spec.strip():
        raise InvalidPluginSpec(spec, "it has leading or trailing spaces")
    if spec.startswith("-"):
        raise InvalidPluginSpec(spec, "it starts with '-', so pip would read it as an option")
    if any(ord(character) < 32 for character in spec):
        raise InvalidPluginSpec(spec, "it contains control characters")


def _check_branch(spec: str, branch: str) -> None:
    if _BRANCH.match(branch) is None or ".." in branch:
        raise InvalidPluginSpec(
            spec, f"--branch {branch!r} is not a branch or tag name (letters, digits, . _ / + -)"
        )


def _git(spec: str, branch: str | None) -> InstallSource:
    url = spec[len("git+") :] if spec.startswith("git+") else spec
    match = _SCHEME.match(url)
    if match is not None:
        scheme = match.group("scheme").lower()
        if scheme not in GIT_PROTOCOLS:
            raise InvalidPluginSpec(
                spec, f"git URLs may use {', '.join(GIT_PROTOCOLS)}, not {scheme}://"
            )
    elif _SCP_LIKE.match(url) is None:
        raise InvalidPluginSpec(spec, "not a git URL (https://..., ssh://..., git@host:path)")
    if any(character.isspace() for character in url):
        raise InvalidPluginSpec(spec, "a URL cannot contain spaces")
    return InstallSource("git", spec, url=url, branch=branch)


def _local(spec: str, path: Path) -> InstallSource:
    resolved = path.absolute()
    if resolved.is_dir():
        return InstallSource("directory", spec, path=resolved)
    name = resolved.name.lower()
    if name.endswith(".whl"):
        return InstallSource("wheel", spec, path=resolved)
    if name.endswith(ARCHIVE_SUFFIXES):
        return InstallSource("archive", spec, path=resolved)
    raise InvalidPluginSpec(spec, "a file to install is a .whl, .tar.gz, .tgz or .zip")


def _registry(spec: str) -> InstallSource:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirement = Requirement(spec)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise InvalidPluginSpec(
            spec, f"not a plugin name, path, archive or git URL ({reason})"
        ) from None
    if requirement.url:
        raise InvalidPluginSpec(spec, "give a git URL directly (with --branch), not 'name @ URL'")
    if requirement.marker is not None:
        raise InvalidPluginSpec(spec, "environment markers ('; ...') are not allowed")
    name = requirement.name.lower().replace("_", "-").replace(".", "-")
    if not name.startswith(DISTRIBUTION_PREFIX):
        name = DISTRIBUTION_PREFIX + name
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return InstallSource("registry", spec, requirement=f"{name}{extras}{requirement.specifier}")
