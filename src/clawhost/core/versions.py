"""Version requirements: PEP 440 specifiers plus the caret and tilde ranges of npm and cargo.

``parse_requirement`` turns the text of a ``[plugin.dependencies]`` value into a
``VersionRequirement``: a ``packaging`` ``SpecifierSet`` (the PEP 440 translation) and the
pre-release rule of the form it was written in. Parsed requirements are cached.

Forms understood, alone or combined with commas or spaces (``">=1.0, <2.0"``,
``">=1.0.0 <2.0.0"``):

=================  ===============================  =====================================
written            means                            notes
=================  ===============================  =====================================
``^1.5.0``         ``>=1.5.0, <2.0.0``              left-most non-zero part is fixed
``^0.2.3``         ``>=0.2.3, <0.3.0``              0.x: the minor is fixed
``^0.0.3``         ``>=0.0.3, <0.0.4``              0.0.x: the patch is fixed
``^1.2`` ``^1``    ``>=1.2.0, <2.0.0`` / ``<2``     missing parts count as zero
``~1.5.2``         ``>=1.5.2, <1.6.0``              the minor is fixed
``~1``             ``>=1.0.0, <2.0.0``
``1.2.3``          ``==1.2.3``                      a bare version is exact (npm rule)
``=1.2.3``         ``==1.2.3``
``1.2.*``          ``==1.2.*``                      also ``1.2.x`` and ``1.x``
``*``              any version
``>=1.0`` ...      PEP 440 as written               ``~=``, ``==``, ``!=``, ``<``, ``===``
=================  ===============================  =====================================

Pre-releases: a PEP 440 specifier follows packaging's rule (pre-releases match only when a
specifier names one). A caret or tilde range whose lower bound is a pre-release admits
pre-releases of that same release only (``^1.2.3-beta.2`` matches ``1.2.3rc1`` but not
``1.4.0a1``), which is npm's rule. Semver pre-release spellings (``1.2.3-beta.2``) are
accepted and read as their PEP 440 equivalents (``1.2.3b2``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

__all__ = ["InvalidRequirementText", "VersionRequirement", "parse_requirement", "parse_version"]

_TOKEN = re.compile(
    r"(?P<op>\^|~=|~|===|==|!=|<=|>=|<|>|=)?\s*(?P<ver>[0-9A-Za-z*][0-9A-Za-z*.+!_-]*)"
)
_SEPARATORS = re.compile(r"[\s,]*")
_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?(?P<rest>.*)$"
)
_WILDCARDS = frozenset({"x", "X", "*"})


class InvalidRequirementText(ValueError):
    """The text of a version requirement cannot be parsed; ``reason`` says why."""

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"invalid version requirement {text!r}: {reason}")


@dataclass(frozen=True, slots=True)
class VersionRequirement:
    """A parsed version requirement.

    ``text`` is what the manifest said; ``specifier`` is its PEP 440 translation, which is
    what error messages show beside the original when the two differ.
    """

    text: str
    specifier: SpecifierSet
    # Releases (x.y.z tuples) whose pre-releases a caret/tilde range admits (npm's rule).
    prerelease_releases: frozenset[tuple[int, ...]] = frozenset()
    # The PEP 440 translation in the order written, for messages.
    translation: str = ""
    # True when a PEP 440 comparator written in the text names a pre-release itself.
    pep440_prereleases: bool = False

    def contains(self, version: Version | str) -> bool:
        """Whether ``version`` satisfies this requirement."""
        if isinstance(version, str):
            version = parse_version(version)
        if version.is_prerelease and not (
            self.pep440_prereleases or _release3(version) in self.prerelease_releases
        ):
            return False
        return self.specifier.contains(version, prereleases=True)

    @property
    def is_any(self) -> bool:
        """Whether every version satisfies this requirement (``*``)."""
        return len(self.specifier) == 0

    def describe(self) -> str:
        """The original text, with its PEP 440 meaning when that reads differently."""
        translated = self.translation or "any version"
        if translated.replace(", ", ",") == self.text.replace(", ", ",").replace(" ", ","):
            return self.text
        if self.is_any:
            return self.text if self.text == "*" else f"{self.text} (any version)"
        return f"{self.text} (meaning {translated})"

    def __str__(self) -> str:
        return self.text


def _release3(version: Version) -> tuple[int, ...]:
    release = (*tuple(version.release), 0, 0, 0)
    return release[:3]


@functools.lru_cache(maxsize=4096)
def parse_version(text: str) -> Version:
    """Parse a version, accepting semver spellings (``1.2.3-beta.2``); cached."""
    try:
        return Version(text)
    except InvalidVersion:
        raise InvalidRequirementText(text, "not a valid version (PEP 440 or semver)") from None


@functools.lru_cache(maxsize=4096)
def parse_requirement(text: str) -> VersionRequirement:
    """Parse a requirement in any of the forms this module documents; cached.

    Raises ``InvalidRequirementText`` with the reason when the text cannot be parsed.
    """
    if not isinstance(text, str):
        raise InvalidRequirementText(repr(text), "a requirement must be a string")
    stripped = text.strip()
    if not stripped:
        raise InvalidRequirementText(text, "empty requirement; write '*' to accept any version")
    if "||" in stripped:
        raise InvalidRequirementText(
            text, "alternatives ('||') are not supported; one range per dependency"
        )
    specifiers: list[str] = []
    pep440: list[str] = []
    prerelease_releases: set[tuple[int, ...]] = set()
    position = 0
    for match in _TOKEN.finditer(stripped):
        gap = stripped[position : match.start()]
        if gap.strip() == "-":
            raise InvalidRequirementText(
                text, "hyphen ranges are not supported; write '>=A, <=B' instead"
            )
        if _SEPARATORS.fullmatch(gap) is None:
            raise InvalidRequirementText(text, f"unexpected {gap.strip()!r}")
        position = match.end()
        op, ver = match.group("op") or "", match.group("ver")
        if op == "^":
            specifiers.extend(_caret(text, ver, prerelease_releases))
        elif op == "~":
            specifiers.extend(_tilde(text, ver, prerelease_releases))
        elif op in ("", "=", "==") and (ver in _WILDCARDS or _has_wildcard(ver)):
            specifiers.extend(_wildcard(text, ver))
        elif op in ("", "="):
            specifiers.append(f"=={_pep440(text, ver)}")
        else:
            pep440.append(f"{op}{ver}")
            specifiers.append(f"{op}{ver}")
    if _SEPARATORS.fullmatch(stripped[position:]) is None:
        raise InvalidRequirementText(text, f"unexpected {stripped[position:].strip()!r}")
    try:
        specifier_set = SpecifierSet(",".join(specifiers))
        written = SpecifierSet(",".join(pep440))
    except InvalidSpecifier as exc:
        raise InvalidRequirementText(text, str(exc).rstrip(".")) from None
    return VersionRequirement(
        text=stripped,
        specifier=specifier_set,
        prerelease_releases=frozenset(prerelease_releases),
        translation=", ".join(specifiers),
        pep440_prereleases=any(spec.prereleases for spec in written),
    )


def _has_wildcard(ver: str) -> bool:
    return any(part in _WILDCARDS for part in ver.split("."))


def _wildcard(text: str, ver: str) -> list[str]:
    parts = ver.split(".")
    fixed: list[str] = []
    for part in parts:
        if part in _WILDCARDS:
            break
        if not part.isdigit():
            raise InvalidRequirementText(text, f"{ver!r}: only numbers may precede a wildcard")
        fixed.append(part)
    if any(part not in _WILDCARDS for part in parts[len(fixed) :]):
        raise InvalidRequirementText(text, f"{ver!r}: nothing may follow a wildcard")
    if not fixed:
        return []
    return [f"=={'.'.join(fixed)}.*"]


def _pep440(text: str, ver: str) -> str:
    try:
        return str(Version(ver))
    except InvalidVersion:
        raise InvalidRequirementText(text, f"{ver!r} is not a valid version") from None


def _partial(text: str, ver: str) -> tuple[list[int], Version]:
    """Split ``1.2``/``1.2.x``/``1.2.3-beta.1`` into the given numbers and a full version."""
    match = _PARTIAL.match(ver)
    if match is None:
        raise InvalidRequirementText(text, f"{ver!r} is not a version")
    given: list[int] = []
    parts = [match.group(key) for key in ("major", "minor", "patch")]
    for index, part in enumerate(parts):
        if part is None or part in _WILDCARDS:
            if any(later is not None and later not in _WILDCARDS for later in parts[index:]):
                raise InvalidRequirementText(text, f"{ver!r}: nothing may follow a wildcard")
            break
        given.append(int(part))
    rest = match.group("rest")
    if not given:
        raise InvalidRequirementText(text, f"{ver!r}: a range needs at least a major version")
    if rest and len(given) < 3:
        raise InvalidRequirementText(
            text, f"{ver!r}: a pre-release or build suffix needs a full x.y.z version"
        )
    full = ".".join(str(n) for n in ([*given, 0, 0, 0])[:3]) + rest
    try:
        version = Version(full)
    except InvalidVersion:
        raise InvalidRequirementText(text, f"{ver!r} is not a valid version") from None
    return given, version


def _bounds(
    lower: Version, upper: tuple[int, int, int], released: set[tuple[int, ...]]
) -> list[str]:
    if lower.is_prerelease:
        released.add(_release3(lower))
    return [f">={lower}", f"<{upper[0]}.{upper[1]}.{upper[2]}"]


def _caret(text: str, ver: str, released: set[tuple[int, ...]]) -> list[str]:
    given, lower = _partial(text, ver)
    major, minor, patch = ([*given, 0, 0, 0])[:3]
    if major > 0 or len(given) == 1:
        upper = (major + 1, 0, 0)
    elif minor > 0 or len(given) == 2:
        upper = (0, minor + 1, 0)
    else:
        upper = (0, 0, patch + 1)
    return _bounds(lower, upper, released)


def _tilde(text: str, ver: str, released: set[tuple[int, ...]]) -> list[str]:
    given, lower = _partial(text, ver)
    major, minor = ([*given, 0, 0])[:2]
    upper = (major + 1, 0, 0) if len(given) == 1 else (major, minor + 1, 0)
    return _bounds(lower, upper, released)
