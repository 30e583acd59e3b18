"""Choosing one version of every plugin: directly where nothing is contested, by resolvelib
where something is, and finding the plugin to fail when nothing works.

After ``check_usable`` every usable version's requirements each match some usable version,
and a requirement on a plugin with a single usable version is known to hold. So the newest
usable version of everything is tried first. When every requirement holds, that is the
answer (nothing can be newer) and resolvelib never runs. When some do not, only the
connected parts of the graph that contain a broken requirement are worked on; an edge
joins two plugins when one requires the other and the other still offers a choice, so the
parts are independent. For each part, ``narrow`` drops the versions that cannot be in any
solution selecting all its roots; the newest of what is left is tried, and resolvelib
searches (and backtracks) only when that does not fit either. A part whose plugins require
each other is searched by ``_backtrack`` instead, because resolvelib can go round such a
cycle of versions until it gives up on a part that has a solution.

When a part has no solution, its roots (all its plugins, when every enabled plugin is
wanted) are admitted in priority order: pinned plugins first, then plugins more others
depend on, then by name. The first root that cannot be admitted together with those
before it fails, found by bisection over that order (adding roots only ever makes a
solution harder), and the caller explains why against the solution for those before it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from resolvelib import (
    AbstractProvider,
    BaseReporter,
    ResolutionImpossible,
    ResolutionTooDeep,
    Resolver,
)

from clawhost.resolution.narrow import Narrowed, narrow
from clawhost.resolution.plan import kahn_levels

if TYPE_CHECKING:
    from resolvelib.providers import Preference
    from resolvelib.structs import Matches, RequirementInformation

    from clawhost.resolution.candidates import Candidate, CandidateTable, Usability

__all__ = ["Choice", "choose_versions"]

# resolvelib counts a round per pin or backtrack; a few dozen per version on offer is far
# beyond what a solvable plugin graph needs, and bounds a pathological one.
_ROUNDS_PER_CANDIDATE = 50
# Choices the fallback search makes before it gives up on a part (see _backtrack).
_SEARCH_NODES = 20_000

Domains = Mapping[str, tuple["Candidate", ...]]


@dataclass(slots=True)
class Choice:
    """The versions chosen, or the root to fail and the solution for the roots before it."""

    chosen: dict[str, Candidate]
    victim: str | None = None
    background: dict[str, Candidate] = field(default_factory=dict)


def choose_versions(usability: Usability, *, roots: Sequence[str] | None) -> Choice:
    """Pick a version of every wanted plugin, or say which root must fail.

    ``roots`` is ``None`` when every usable plugin is wanted; otherwise only the named
    roots and what they need are chosen.
    """
    table = usability.table
    usable = usability.usable
    if roots is not None:
        wanted = _by_priority([root for root in roots if root in usable], table)
        return _settle(usability, frozenset(usable), wanted, {})
    newest = {name: versions[0] for name, versions in usable.items()}
    broken = _broken(newest, table)
    if not broken:
        return Choice(newest)
    parts = _parts(usable)
    chosen = newest
    for part in sorted({parts[name] for name in broken}, key=min):
        choice = _settle(usability, part, _by_priority(part, table), chosen)
        if choice.victim is not None:
            return choice
        chosen = choice.chosen
    return Choice(chosen)


def _settle(
    usability: Usability, scope: Collection[str], roots: list[str], chosen: dict[str, Candidate]
) -> Choice:
    mapping = _attempt(usability, scope, roots)
    if mapping is not None:
        return Choice({**chosen, **mapping})
    victim, background = _first_unadmittable(usability, scope, roots)
    return Choice(chosen, victim, background)


def _attempt(
    usability: Usability, scope: Collection[str], roots: Sequence[str]
) -> dict[str, Candidate] | None:
    """A solution selecting every root (and what they need, within ``scope``), or None."""
    narrowed = narrow(usability, scope, roots)
    if narrowed is None:
        return None
    picked = _newest(narrowed.domains, roots)
    if not _broken(picked, usability.table):
        return picked
    if _cyclic(narrowed.domains):
        return _backtrack(usability, scope, roots, narrowed)
    return _resolve(narrowed.domains, usability.table, roots)


def _newest(domains: Domains, roots: Iterable[str]) -> dict[str, Candidate]:
    """The newest version left of every plugin the roots reach through those versions."""
    newest = {name: versions[0] for name, versions in domains.items() if versions}
    return {name: newest[name] for name in _reachable(newest, roots)}


def _cyclic(domains: Domains) -> bool:
    requires = {
        name: {dep.name for version in versions for dep in version.deps}
        for name, versions in domains.items()
    }
    return bool(kahn_levels(requires)[1])


def _backtrack(
    usability: Usability, scope: Collection[str], roots: Sequence[str], narrowed: Narrowed
) -> dict[str, Candidate] | None:
    """Search the narrowed versions depth first, newest first, narrowing after each choice.

    For parts whose plugins require each other: there resolvelib can keep re-pinning
    versions that displace each other (A 2 needs B 1, which needs A 1, which needs B 2 ...)
    without ever backtracking, until it gives up on a graph that has a solution. Only
    plugins that must be selected are branched on, so the search is complete; it gives
    up (no solution) after ``_SEARCH_NODES`` choices.
    """
    table = usability.table
    budget = _SEARCH_NODES
    stack: list[tuple[Narrowed, str, Iterator[Candidate]]] = []
    current: Narrowed | None = narrowed
    while True:
        if current is not None:
            picked = _newest(current.domains, roots)
            broken = _broken(picked, table)
            if not broken:
                return picked
            budget -= 1
            name = _branch_on(current, picked, broken)
            if name is not None and budget >= 0:
                stack.append((current, name, iter(current.domains[name])))
        current = None
        while stack and current is None:
            parent, name, versions = stack[-1]
            version = next(versions, None)
            if version is None:
                stack.pop()
            else:
                current = narrow(usability, scope, roots, {**parent.domains, name: (version,)})
        if current is None:
            return None


def _branch_on(
    narrowed: Narrowed, picked: Mapping[str, Candidate], broken: Sequence[str]
) -> str | None:
    """A plugin to choose the version of: one that must be selected and still has a choice,
    preferring those whose requirement is broken. When none has a choice, every plugin
    reached must be selected at its only version, and narrowing has made those fit."""
    options = [*broken, *sorted(picked)]
    for name in options:
        if name in narrowed.must and len(narrowed.domains[name]) > 1:
            return name
    return None


def _first_unadmittable(
    usability: Usability, scope: Collection[str], roots: list[str]
) -> tuple[str, dict[str, Candidate]]:
    """Bisect for the first root that cannot join the roots before it, and their solution."""
    admitted, failing = 0, len(roots)  # roots[:admitted] resolve; roots[:failing] do not
    background: dict[str, Candidate] = {}
    while failing - admitted > 1:
        middle = (admitted + failing) // 2
        mapping = _attempt(usability, scope, roots[:middle])
        if mapping is None:
            failing = middle
        else:
            admitted, background = middle, mapping
    return roots[failing - 1], background


def _by_priority(names: Iterable[str], table: CandidateTable) -> list[str]:
    def key(name: str) -> tuple[bool, int, str]:
        return (name not in table.pinned, -table.dependents_count(name), name)

    return sorted(names, key=key)


def _reachable(chosen: Mapping[str, Candidate], roots: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in chosen:
            continue
        seen[name] = None
        stack.extend(dep.name for dep in chosen[name].deps)
    return list(seen)


def _broken(chosen: Mapping[str, Candidate], table: CandidateTable) -> list[str]:
    """Plugins whose chosen version has a requirement the chosen dependency does not meet.

    Requirements on plugins not in ``chosen`` are not checked: their single usable
    version is known to satisfy them.
    """
    broken = []
    for name, candidate in chosen.items():
        for dep in candidate.deps:
            other = chosen.get(dep.name)
            if other is not None and other.index not in table.match_ids(dep):
                broken.append(name)
                break
    return broken


def _parts(usable: Mapping[str, tuple[Candidate, ...]]) -> dict[str, frozenset[str]]:
    """Each plugin's connected part of the graph of requirements on plugins with a choice."""
    parent = {name: name for name in usable}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for name, versions in usable.items():
        for candidate in versions:
            for dep in candidate.deps:
                if len(usable[dep.name]) > 1:
                    parent[find(name)] = find(dep.name)
    members: dict[str, set[str]] = {}
    for name in usable:
        members.setdefault(find(name), set()).add(name)
    frozen = {root: frozenset(names) for root, names in members.items()}
    return {name: frozen[find(name)] for name in usable}


# -- resolvelib ---------------------------------------------------------------------------------


def _depths(domains: Domains) -> dict[str, int]:
    """Each plugin's Kahn level in the graph of every version's requirements (0: requires
    nothing); plugins on or above a cycle come after all others."""
    requires = {
        name: {dep.name for version in versions for dep in version.deps}
        for name, versions in domains.items()
    }
    levels, left = kahn_levels(requires)
    depth = {name: index for index, level in enumerate(levels) for name in level}
    depth.update(dict.fromkeys(left, len(levels)))
    return depth


def _resolve(
    domains: Domains, table: CandidateTable, roots: Sequence[str]
) -> dict[str, Candidate] | None:
    resolver: Resolver[_Need, Candidate, str] = Resolver(_Provider(domains, table), BaseReporter())
    rounds = 100 + _ROUNDS_PER_CANDIDATE * sum(len(versions) for versions in domains.values())
    try:
        result = resolver.resolve([_Need(root, None) for root in roots], max_rounds=rounds)
    except (ResolutionImpossible, ResolutionTooDeep):
        return None
    return dict(result.mapping)


class _Need:
    """A requirement as resolvelib sees it; ``accepted`` is ``None`` for "any version"."""

    __slots__ = ("accepted", "name")

    def __init__(self, name: str, accepted: frozenset[int] | None) -> None:
        self.name = name
        self.accepted = accepted

    def __repr__(self) -> str:
        return f"<_Need {self.name}>"


class _Provider(AbstractProvider[_Need, "Candidate", str]):
    def __init__(self, domains: Domains, table: CandidateTable) -> None:
        self._domains = domains
        self._table = table
        self._needs: dict[int, list[_Need]] = {}
        self._depth = _depths(domains)

    def identify(self, requirement_or_candidate: _Need | Candidate) -> str:
        return requirement_or_candidate.name

    def get_preference(
        self,
        identifier: str,
        resolutions: Mapping[str, Candidate],
        candidates: Mapping[str, Iterator[Candidate]],
        information: Mapping[str, Iterator[RequirementInformation[_Need, Candidate]]],
        backtrack_causes: Sequence[RequirementInformation[_Need, Candidate]],
    ) -> Preference:
        # What made the resolver backtrack goes first (pip's heuristic), then dependencies
        # before their dependents, which measured far fewer backtracks on plugin graphs
        # than "fewest versions first"; the name makes the order total, so the search is
        # deterministic.
        in_causes = any(
            cause.requirement.name == identifier
            or (cause.parent is not None and cause.parent.name == identifier)
            for cause in backtrack_causes
        )
        return (not in_causes, self._depth[identifier], identifier)

    def find_matches(
        self,
        identifier: str,
        requirements: Mapping[str, Iterator[_Need]],
        incompatibilities: Mapping[str, Iterator[Candidate]],
    ) -> Matches[Candidate]:
        excluded = {candidate.index for candidate in incompatibilities[identifier]}
        accepted = [need.accepted for need in requirements[identifier] if need.accepted is not None]
        return [
            candidate
            for candidate in self._domains[identifier]
            if candidate.index not in excluded and all(candidate.index in a for a in accepted)
        ]

    def is_satisfied_by(self, requirement: _Need, candidate: Candidate) -> bool:
        return requirement.accepted is None or candidate.index in requirement.accepted

    def get_dependencies(self, candidate: Candidate) -> Iterable[_Need]:
        needs = self._needs.get(candidate.index)
        if needs is None:
            # Requirements on plugins outside the scope have a single usable version,
            # which check_usable already proved they accept.
            needs = [
                _Need(dep.name, self._table.match_ids(dep))
                for dep in candidate.deps
                if dep.name in self._domains
            ]
            self._needs[candidate.index] = needs
        return needs
