"""Narrowing: the versions of each plugin that can still be part of a solution in which
every root is selected.

Two rules run to a fixpoint over the plugins in scope:

* **support**: a version one of whose requirements matches no version left of the
  dependency is dropped (``check_usable`` applies the same rule without roots);
* **must**: a plugin that has to be selected (a root, or a plugin every version left of a
  must-plugin requires) narrows each plugin that all its versions require to the versions
  at least one of them accepts.

A must-plugin left with no version means no solution exists for these roots. Otherwise
the versions left are what resolvelib gets to choose from, and often the newest of each
already fits: a plugin whose every version requires ``geocoding ^1`` drags geocoding down
to 1.x, then drops its other requirers' versions that need 2.x, and so on, without a
single backtrack. Requirements on plugins outside the scope are ignored, because their
single usable version is already known to satisfy them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clawhost.resolution.candidates import Candidate, Usability

__all__ = ["Narrowed", "narrow"]


@dataclass(frozen=True, slots=True)
class Narrowed:
    """The versions left of each plugin in scope, and the plugins that must be selected."""

    domains: dict[str, tuple[Candidate, ...]]
    must: frozenset[str]


def narrow(
    usability: Usability,
    scope: Collection[str],
    roots: Iterable[str],
    start: Mapping[str, tuple[Candidate, ...]] | None = None,
) -> Narrowed | None:
    """Narrow the usable versions (or ``start``) of the plugins in ``scope`` for ``roots``;
    ``None`` when some root cannot be had."""
    table = usability.table
    domains = {name: (start or usability.usable)[name] for name in scope}
    left = {name: {c.index for c in versions} for name, versions in domains.items()}
    must: set[str] = set()
    musts = deque(roots)
    supports = deque(sorted(domains))
    queued = set(domains)

    def shrink(name: str, kept: tuple[Candidate, ...]) -> bool:
        domains[name] = kept
        left[name] = {c.index for c in kept}
        for requirer in table.requirers.get(name, ()):
            if requirer.name in domains and requirer.name not in queued:
                supports.append(requirer.name)
                queued.add(requirer.name)
        if name in must:
            musts.append(name)
            return bool(kept)
        return True

    while supports or musts:
        if supports:
            name = supports.popleft()
            queued.discard(name)
            kept = tuple(
                version
                for version in domains[name]
                if all(
                    dep.name not in left or not left[dep.name].isdisjoint(table.match_ids(dep))
                    for dep in version.deps
                )
            )
            if len(kept) < len(domains[name]) and not shrink(name, kept):
                return None
            continue
        name = musts.popleft()
        must.add(name)
        versions = domains[name]
        if not versions:
            return None
        common = set.intersection(*({d.name for d in v.deps if d.name in left} for v in versions))
        for dependency in sorted(common):
            accepted: set[int] = set()
            for version in versions:
                for dep in version.deps:
                    if dep.name == dependency:
                        accepted.update(table.match_ids(dep))
            if dependency not in must:
                musts.append(dependency)
            kept = tuple(c for c in domains[dependency] if c.index in accepted)
            if len(kept) < len(domains[dependency]) and not shrink(dependency, kept):
                return None
    return Narrowed(domains, frozenset(must))
