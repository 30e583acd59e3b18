"""Why a root cannot join the roots admitted before it: a search for the conflict.

Against the solution for the roots before it, the search adds one version of the root and
follows its requirements. Each plugin reached gets the newest usable version that every
requirement on it so far accepts, switching one already chosen when it must (so an
explanation can go through a dependency whose other version the others did not need),
until a plugin has no version that satisfies every requirement on it. The requirements on
that plugin, and the path of requirements from the root to each of its requirers, are the
conflict.

The root's newest usable version is explained first, and that is the answer when the
conflict lies on another plugin. When it lies on the root itself (its versions need
dependencies that need other versions of it), or no conflict turns up, every version of
the root is accounted for instead: each gets its own reason, and none is available.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clawhost.errors import VersionConflict
from clawhost.resolution.explain import (
    Link,
    build_conflict,
    force_suggestion,
    link_order,
    pin_link,
    why_unusable,
)

if TYPE_CHECKING:
    from clawhost.resolution.candidates import Candidate, Usability

__all__ = ["explain_unadmittable"]


def explain_unadmittable(
    usability: Usability, victim: str, background: Mapping[str, Candidate]
) -> VersionConflict:
    """Why root ``victim`` cannot join the roots whose solution is ``background``."""
    newest = usability.usable[victim][0]
    found = _Search(usability, background, newest).run()
    if found is not None and found.dependency != victim:
        return found.error(usability)
    return _every_version(usability, victim, background, (newest, found))


@dataclass(slots=True)
class _Found:
    """A plugin (``dependency``) no version of which satisfies ``links``, reached from
    ``plugin`` through ``path``; ``own`` are the plugins on the failing side."""

    plugin: str
    dependency: str
    links: list[Link]
    path: list[Link]
    own: set[str]
    selected: Candidate | None

    def error(self, usability: Usability) -> VersionConflict:
        return build_conflict(
            usability,
            plugin=self.plugin,
            dependency=self.dependency,
            path=self.path,
            links=self.links,
            own=self.own,
            selected=self.selected,
        )

    def chain(self, usability: Usability) -> list[Link]:
        ordered = sorted(self.links, key=lambda link: link_order(usability.table.pinned, link))
        return list(dict.fromkeys([*self.path, *ordered]))


def _every_version(
    usability: Usability,
    victim: str,
    background: Mapping[str, Candidate],
    first: tuple[Candidate, _Found | None],
) -> VersionConflict:
    table = usability.table
    chain: list[Link] = []
    reasons: list[tuple[str, str]] = []
    for candidate in reversed(table.by_name[victim]):
        if not usability.is_usable(candidate):
            reasons.append((str(candidate.version), why_unusable(usability, candidate)))
            continue
        found = (
            first[1] if candidate is first[0] else _Search(usability, background, candidate).run()
        )
        if found is None:
            reason = "it cannot be combined with the versions chosen for the other plugins"
        else:
            links = found.chain(usability)
            chain.extend(links)
            reason = "; ".join(str(link.public()) for link in links)
        reasons.append((str(candidate.version), reason))
    involved = [victim, *(link.requirer.name for link in chain if link.requirer is not None)]
    return VersionConflict(
        victim,
        victim,
        tuple(link.public() for link in dict.fromkeys(chain)),
        (),
        tuple(force_suggestion(table.pinned, involved)),
        tuple(reasons),
    )


class _Search:
    def __init__(
        self, usability: Usability, background: Mapping[str, Candidate], start: Candidate
    ) -> None:
        self.usability = usability
        self.table = usability.table
        self.start = start
        self.chosen = {**background, start.name: start}
        # dependency -> requirer name (None for the pin) -> requirement in force
        self.links: dict[str, dict[str | None, Link]] = {}
        # plugin -> the requirement that made the search choose its version
        self.brought: dict[str, Link] = {}
        for name, version in self.table.pinned.items():
            self.links.setdefault(name, {})[None] = pin_link(name, version)
        for candidate in self.chosen.values():
            self._add_links(candidate)

    def run(self) -> _Found | None:
        queue = deque([self.start])
        # Each step settles a requirement or switches a version; the budget only guards
        # against a graph that would keep switching back and forth.
        budget = 100 + 20 * len(self.table.all)
        while queue and budget > 0:
            candidate = queue.popleft()
            if self.chosen.get(candidate.name) is not candidate:
                continue
            self._add_links(candidate)
            for dep in candidate.deps:
                budget -= 1
                if not self._settle(dep.name, self.links[dep.name][candidate.name], queue):
                    return self._found(dep.name)
        return None

    def _add_links(self, candidate: Candidate) -> None:
        for dep in candidate.deps:
            link = Link(candidate, dep.name, dep.text, dep.requirement)
            self.links.setdefault(dep.name, {})[candidate.name] = link

    def _drop_links(self, candidate: Candidate) -> None:
        for dep in candidate.deps:
            self.links.get(dep.name, {}).pop(candidate.name, None)

    def _settle(self, name: str, via: Link, queue: deque[Candidate]) -> bool:
        """Make ``name``'s version satisfy every requirement on it; False if none can."""
        links = self.links.get(name, {}).values()
        current = self.chosen.get(name)
        if current is not None and all(link.accepts(current) for link in links):
            return True
        # The root keeps the version being explained; everything else may switch.
        versions = (self.start,) if name == self.start.name else self.usability.usable[name]
        options = [c for c in versions if all(link.accepts(c) for link in links)]
        if not options:
            return False
        if current is not None:
            self._drop_links(current)
        self.chosen[name] = options[0]
        self.brought[name] = via
        queue.append(options[0])
        return True

    def _found(self, name: str) -> _Found:
        links = list(self.links[name].values())
        path: list[Link] = []
        pinned = self.table.pinned
        for link in sorted(links, key=lambda link: link_order(pinned, link)):
            trail: list[Link] = []
            step = link.requirer.name if link.requirer is not None else None
            while step is not None and step in self.brought and step != self.start.name:
                via = self.brought[step]
                if via in trail:
                    break
                trail.append(via)
                step = via.requirer.name if via.requirer is not None else None
            path.extend(reversed(trail))
        own = {self.start.name, *self.brought}
        return _Found(self.start.name, name, links, path, own, self.chosen.get(name))
