"""The resolve stage's view of the plugins on offer, and which versions can be used at all.

``CandidateTable`` reads every discovered version once: its requirements parsed (through
the cached ``parse_requirement``), a requirement on itself set apart, and the problems it
has on its own (a requirement that does not parse, a ``min_clawdesk_version`` above the
host). ``check_usable`` then decides, for one round of resolution, which versions can be
used at all. A version cannot when it has a problem of its own, when another version of
its plugin is pinned, or when one of its requirements names a plugin that is absent or
disabled, or matches no usable version of it. That last rule feeds on itself (a version
that becomes unusable can strand the versions that need it), so it runs to its fixpoint,
which is the same whatever the order; the reason recorded for each version is the first
found in a fixed order, so it is deterministic too.

Each reason is a small ``Fact``; the errors people read are built from them at the end,
when the rest of the resolution is known (see ``_explain``).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from clawhost.core.versions import (
    InvalidRequirementText,
    VersionRequirement,
    parse_requirement,
    parse_version,
)
from clawhost.discovery.manifest import dependency_name

if TYPE_CHECKING:
    from packaging.version import Version

    from clawhost.discovery.discover import DiscoveredPlugin

__all__ = [
    "BadManifest",
    "Candidate",
    "CandidateTable",
    "Dep",
    "Fact",
    "Missing",
    "NeedsNewerHost",
    "NoMatch",
    "NotPinned",
    "OnCycle",
    "Removed",
    "Stranded",
    "Usability",
    "check_usable",
    "group_candidates",
]


class Dep(NamedTuple):
    """One ``[plugin.dependencies]`` entry: ``key`` as written, ``name`` the plugin meant."""

    # A tuple, not a frozen dataclass: a large graph builds thousands, and a frozen
    # dataclass's __init__ costs several times as much.

    name: str
    key: str
    text: str
    requirement: VersionRequirement


# -- why a version cannot be used -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadManifest:
    """A manifest value the resolver cannot read (``field`` is its dotted path)."""

    field: str
    value: str
    reason: str


@dataclass(frozen=True, slots=True)
class NeedsNewerHost:
    """``min_clawdesk_version`` is above the host's version."""

    required: str


@dataclass(frozen=True, slots=True)
class OnCycle:
    """This version was chosen onto a dependency cycle in an earlier round."""

    cycle: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NotPinned:
    """Another version of this plugin is pinned."""


@dataclass(frozen=True, slots=True)
class Removed:
    """The whole plugin was taken out of this round (it failed in an earlier one)."""


@dataclass(frozen=True, slots=True)
class Missing:
    """A required plugin is not on offer (not installed, disabled, or failed before
    resolution: ``failed`` is then the stage and the reason)."""

    dep: Dep
    disabled: bool
    failed: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class NoMatch:
    """No usable version of a required plugin satisfies the requirement."""

    dep: Dep


@dataclass(frozen=True, slots=True)
class Stranded:
    """A required plugin has no usable version at all (it failed)."""

    dep: Dep


Fact = BadManifest | NeedsNewerHost | OnCycle | NotPinned | Removed | Missing | NoMatch | Stranded
NOT_PINNED = NotPinned()
REMOVED = Removed()


class Candidate:
    """One version of one plugin as the resolver sees it; ``index`` identifies it."""

    __slots__ = ("deps", "index", "name", "plugin", "problem", "self_dep", "version")

    def __init__(self, index: int, plugin: DiscoveredPlugin, host_version: Version) -> None:
        self.index = index
        self.plugin = plugin
        self.name = plugin.name
        self.version = plugin.version
        self.self_dep: Dep | None = None
        self.problem: BadManifest | NeedsNewerHost | None = None
        self.deps: tuple[Dep, ...] = ()
        manifest = plugin.manifest
        deps: list[Dep] = []
        for key, value in manifest.dependencies.items():
            # Validated manifests hold text; Manifest.model_construct can hold anything.
            text: object = value
            if not isinstance(text, str):
                reason = "a requirement must be a string"
                self.problem = BadManifest(f"plugin.dependencies.{key}", repr(text), reason)
                return
            try:
                dep = Dep(dependency_name(key), key, text, parse_requirement(text))
            except InvalidRequirementText as exc:
                self.problem = BadManifest(f"plugin.dependencies.{key}", str(text), exc.reason)
                return
            if dep.name == self.name:
                self.self_dep = dep
            else:
                deps.append(dep)
        # Sorted so that the first problem found, and so every explanation, is stable.
        self.deps = tuple(sorted(deps, key=lambda dep: dep.name))
        minimum = manifest.min_clawdesk_version
        if minimum is not None:
            try:
                if parse_version(minimum) > host_version:
                    self.problem = NeedsNewerHost(minimum)
            except InvalidRequirementText as exc:
                self.problem = BadManifest("plugin.min_clawdesk_version", str(minimum), exc.reason)

    def __repr__(self) -> str:
        return f"<Candidate {self.name} {self.version}>"


@functools.lru_cache(maxsize=16384)
def _accepts(text: str, version: Version) -> bool:
    # Plugins share a handful of requirement texts and release numbers, so the same
    # (requirement, version) question comes up thousands of times in a large graph.
    return parse_requirement(text).contains(version)


def group_candidates(
    candidates: Iterable[DiscoveredPlugin] | Mapping[str, Iterable[DiscoveredPlugin]],
) -> dict[str, list[DiscoveredPlugin]]:
    """Plugins by name, newest first; of two records of one version the first is kept."""
    if isinstance(candidates, Mapping):
        flat: Iterable[DiscoveredPlugin] = (p for group in candidates.values() for p in group)
    else:
        flat = candidates
    grouped: dict[str, dict[Version, DiscoveredPlugin]] = {}
    for plugin in flat:
        grouped.setdefault(plugin.name, {}).setdefault(plugin.version, plugin)
    return {
        name: sorted(versions.values(), key=lambda plugin: plugin.version, reverse=True)
        for name, versions in sorted(grouped.items())
    }


class CandidateTable:
    """Every version on offer, indexed for the resolver.

    ``by_name`` holds each plugin's versions newest first (names sorted); ``requirers`` maps
    a plugin name to the versions that require it; ``pinned`` the versions forced.
    """

    def __init__(
        self,
        grouped: Mapping[str, list[DiscoveredPlugin]],
        *,
        host_version: Version,
        disabled: frozenset[str],
        pinned: Mapping[str, Version],
        failed: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.host_version = host_version
        self.disabled = disabled
        self.failed = dict(failed or {})
        self.pinned = dict(pinned)
        self.by_name: dict[str, tuple[Candidate, ...]] = {}
        self.all: list[Candidate] = []
        for name, plugins in grouped.items():
            if name in disabled:
                continue
            versions = tuple(
                Candidate(len(self.all) + offset, plugin, host_version)
                for offset, plugin in enumerate(plugins)
            )
            self.by_name[name] = versions
            self.all.extend(versions)
        self.requirers: dict[str, list[Candidate]] = {}
        for candidate in self.all:
            for dep in candidate.deps:
                self.requirers.setdefault(dep.name, []).append(candidate)
        self._matches: dict[tuple[str, str], tuple[Candidate, ...]] = {}
        self._match_ids: dict[tuple[str, str], frozenset[int]] = {}
        self._dependents_count: dict[str, int] = {}

    def matches(self, dep: Dep) -> tuple[Candidate, ...]:
        """The versions on offer of ``dep.name`` that ``dep`` accepts, newest first; cached."""
        key = (dep.name, dep.text)
        found = self._matches.get(key)
        if found is None:
            found = tuple(
                c for c in self.by_name.get(dep.name, ()) if _accepts(dep.text, c.version)
            )
            self._matches[key] = found
        return found

    def match_ids(self, dep: Dep) -> frozenset[int]:
        """``matches(dep)`` as a set of candidate indices, for membership tests."""
        key = (dep.name, dep.text)
        found = self._match_ids.get(key)
        if found is None:
            found = self._match_ids[key] = frozenset(c.index for c in self.matches(dep))
        return found

    def dependents_count(self, name: str) -> int:
        """How many other plugins have a version that requires ``name``."""
        count = self._dependents_count.get(name)
        if count is None:
            count = len({candidate.name for candidate in self.requirers.get(name, ())})
            self._dependents_count[name] = count
        return count


@dataclass(slots=True)
class Usability:
    """Which versions one round of resolution may use, and why the others may not."""

    table: CandidateTable
    facts: dict[int, Fact]
    #: plugin name -> usable versions, newest first; only plugins with at least one
    usable: dict[str, tuple[Candidate, ...]]
    #: plugins on offer (not removed) with no usable version, sorted
    failed: tuple[str, ...]

    def is_usable(self, candidate: Candidate) -> bool:
        """Whether this round may select ``candidate``."""
        return candidate.index not in self.facts

    def works_alone(self, candidate: Candidate) -> bool:
        """Usable, or unusable only because another version of its plugin is pinned."""
        return self.facts.get(candidate.index, NOT_PINNED) is NOT_PINNED

    def fact_of(self, name: str) -> tuple[Candidate | None, Fact]:
        """The reason a failed plugin reports: its pinned version's, else its newest's."""
        versions = self.table.by_name[name]
        pin = self.table.pinned.get(name)
        if pin is not None:
            chosen = [c for c in versions if c.version == pin]
            if not chosen:
                return None, NOT_PINNED
            return chosen[0], self.facts[chosen[0].index]
        return versions[0], self.facts[versions[0].index]


def check_usable(
    table: CandidateTable,
    removed: Collection[str],
    set_aside: Mapping[int, tuple[str, ...]] | None = None,
) -> Usability:
    """Mark every version that cannot be used in this round, with why, to a fixpoint.

    ``removed`` plugins failed in an earlier round; ``set_aside`` maps versions that were
    chosen onto a cycle in an earlier round to that cycle.
    """
    facts: dict[int, Fact] = {}
    set_aside = set_aside or {}
    for candidate in table.all:
        pin = table.pinned.get(candidate.name)
        if candidate.name in removed:
            facts[candidate.index] = REMOVED
        elif candidate.problem is not None:
            facts[candidate.index] = candidate.problem
        elif candidate.index in set_aside:
            facts[candidate.index] = OnCycle(set_aside[candidate.index])
        elif pin is not None and candidate.version != pin:
            facts[candidate.index] = NOT_PINNED
    left = dict.fromkeys(table.by_name, 0)
    for candidate in table.all:
        if candidate.index not in facts:
            left[candidate.name] += 1

    def first_problem(candidate: Candidate) -> Fact | None:
        for dep in candidate.deps:
            if dep.name not in left:
                return Missing(
                    dep, disabled=dep.name in table.disabled, failed=table.failed.get(dep.name)
                )
            if left[dep.name] == 0:
                return Stranded(dep)
            if all(match.index in facts for match in table.matches(dep)):
                return NoMatch(dep)
        return None

    pending = deque(c for c in table.all if c.index not in facts)
    queued = {c.index for c in pending}
    while pending:
        candidate = pending.popleft()
        queued.discard(candidate.index)
        fact = first_problem(candidate)
        if fact is None:
            continue
        facts[candidate.index] = fact
        left[candidate.name] -= 1
        # Only the versions that require this plugin can be stranded by its loss.
        for requirer in table.requirers.get(candidate.name, ()):
            if requirer.index not in facts and requirer.index not in queued:
                pending.append(requirer)
                queued.add(requirer.index)
    usable: dict[str, tuple[Candidate, ...]] = {}
    for name, versions in table.by_name.items():
        kept = tuple(c for c in versions if c.index not in facts)
        if kept:
            usable[name] = kept
    failed = tuple(name for name in table.by_name if name not in usable and name not in removed)
    return Usability(table, facts, usable, failed)
