"""Why a plugin could not be resolved, as the structured errors of ``clawhost.errors``.

A plugin none of whose versions can be used (``check_usable`` recorded a ``Fact`` for
each) fails with the reason of its pinned version, else of its newest. A requirement that
nothing satisfies becomes a ``VersionConflict`` that also lists the resolved plugins that
require the same dependency, since they are what stands in the way of changing it. The
conflict builder and its suggestions are shared with ``_blame``, which explains the roots
that could not join the others.

Every ``VersionConflict`` built here keeps the promise the property tests check: no
version listed in ``available`` satisfies every link of the chain on ``dependency``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

from clawhost.core.versions import VersionRequirement, parse_requirement
from clawhost.errors import (
    DependencyCycle,
    DependencyFailed,
    HostTooOld,
    InvalidRequirement,
    MissingDependency,
    RequirementLink,
    ResolutionError,
    VersionConflict,
)
from clawhost.resolution.candidates import (
    BadManifest,
    Fact,
    Missing,
    NeedsNewerHost,
    NoMatch,
    NotPinned,
    OnCycle,
    Stranded,
)

if TYPE_CHECKING:
    from clawhost.resolution.candidates import Candidate, Usability

__all__ = [
    "Link",
    "build_conflict",
    "explain_failures",
    "link_order",
    "pin_link",
    "summary",
    "why_unusable",
]


@dataclass(frozen=True, slots=True)
class Link:
    """``requirer`` needs ``dependency`` in ``text``; a ``None`` requirer is a pin."""

    requirer: Candidate | None
    dependency: str
    text: str
    requirement: VersionRequirement

    def accepts(self, candidate: Candidate) -> bool:
        """Whether ``candidate`` (a version of ``dependency``) satisfies this requirement."""
        return self.requirement.contains(candidate.version)

    def public(self) -> RequirementLink:
        """This link as the errors carry it."""
        if self.requirer is None:
            return RequirementLink(None, None, self.dependency, self.text)
        requirer = self.requirer
        return RequirementLink(requirer.name, str(requirer.version), self.dependency, self.text)


def pin_link(name: str, version: Version) -> Link:
    """The requirement a pin puts on ``name``: ``==version``, by no plugin."""
    text = f"=={version}"
    return Link(None, name, text, parse_requirement(text))


def _requirement_link(requirer: Candidate, dependency: str) -> Link | None:
    for dep in requirer.deps:
        if dep.name == dependency:
            return Link(requirer, dep.name, dep.text, dep.requirement)
    return None


def summary(error: ResolutionError) -> str:
    """One line saying why ``error``'s plugin failed, for the errors of its dependents."""
    if isinstance(error, VersionConflict):
        wanted = dict.fromkeys(
            link.requirement for link in error.chain if link.dependency == error.dependency
        )
        if wanted:
            return f"no version of {error.dependency} satisfies {', '.join(wanted)}"
        return f"no version of {error.dependency} can be used with the other plugins"
    return str(error)


def explain_failures(
    usability: Usability,
    removed: Mapping[str, ResolutionError],
    chosen: Mapping[str, Candidate],
) -> dict[str, ResolutionError]:
    """The error of every plugin that failed: those ``removed`` in earlier rounds, and those
    with no usable version in the last round (explained against the ``chosen`` versions)."""
    errors = dict(removed)
    for name in usability.failed:
        # Iterative, not recursive: a chain of stranded dependents can be long.
        stack, visiting = [name], {name}
        while stack:
            top = stack[-1]
            candidate, fact = usability.fact_of(top)
            if isinstance(fact, Stranded):
                dependency = fact.dep.name
                if dependency not in errors and dependency not in visiting:
                    stack.append(dependency)
                    visiting.add(dependency)
                    continue
            if top not in errors:
                errors[top] = _from_fact(
                    usability,
                    name=top,
                    candidate=candidate,
                    fact=fact,
                    chosen=chosen,
                    errors=errors,
                )
            stack.pop()
    return errors


def _from_fact(
    usability: Usability,
    *,
    name: str,
    candidate: Candidate | None,
    fact: Fact,
    chosen: Mapping[str, Candidate],
    errors: Mapping[str, ResolutionError],
) -> ResolutionError:
    table = usability.table
    if candidate is None:
        # The pinned version is not on offer at all.
        pin = pin_link(name, table.pinned[name])
        available = tuple(str(c.version) for c in reversed(table.by_name[name]))
        return VersionConflict(
            name, name, (pin.public(),), available, (f"Install {name} {pin.text}",)
        )
    version = str(candidate.version)
    if isinstance(fact, BadManifest):
        return InvalidRequirement(name, fact.field, fact.value, fact.reason)
    if isinstance(fact, NeedsNewerHost):
        return HostTooOld(name, version, fact.required, str(table.host_version))
    if isinstance(fact, OnCycle):
        return DependencyCycle(name, fact.cycle)
    if isinstance(fact, Missing):
        if fact.failed is not None:
            stage, reason = fact.failed
            return DependencyFailed(name, fact.dep.name, reason, stage=stage)
        return MissingDependency(name, fact.dep.name, fact.dep.text, disabled=fact.disabled)
    if isinstance(fact, Stranded):
        cause = errors.get(fact.dep.name)
        return DependencyFailed(name, fact.dep.name, summary(cause) if cause else None)
    if isinstance(fact, NoMatch):
        dep = fact.dep
        links = [Link(candidate, dep.name, dep.text, dep.requirement)]
        if dep.name in table.pinned:
            links.append(pin_link(dep.name, table.pinned[dep.name]))
        for requirer in table.requirers.get(dep.name, ()):
            if requirer.name != name and chosen.get(requirer.name) is requirer:
                link = _requirement_link(requirer, dep.name)
                if link is not None:
                    links.append(link)
        return build_conflict(
            usability,
            plugin=name,
            dependency=dep.name,
            path=[],
            links=links,
            own={name},
            selected=chosen.get(dep.name),
        )
    return ResolutionError(name, f"{name} cannot be used")  # pragma: no cover - no other facts


def link_order(pinned: Collection[str], link: Link) -> tuple[int, str]:
    """Sort key for the links of a chain."""
    # Pins first, then pinned requirers (the plugin being installed or reloaded), then
    # everyone else by name: the order the product guide prints a conflict in.
    if link.requirer is None:
        return (0, "")
    return (1 if link.requirer.name in pinned else 2, link.requirer.name)


def build_conflict(
    usability: Usability,
    *,
    plugin: str,
    dependency: str,
    path: list[Link],
    links: list[Link],
    own: Collection[str],
    selected: Candidate | None,
) -> VersionConflict:
    """The conflict over ``dependency`` that ``links`` make, reached from ``plugin`` through
    ``path``; ``own`` names the plugins on the failing side, ``selected`` the version of
    ``dependency`` the others settled on (for the suggestions)."""
    table = usability.table
    ascending = tuple(reversed(table.by_name.get(dependency, ())))
    ordered = sorted(links, key=lambda link: link_order(table.pinned, link))
    chain = tuple(link.public() for link in dict.fromkeys([*path, *ordered]))
    available = tuple(str(c.version) for c in ascending if usability.works_alone(c))
    unusable = tuple(
        (str(c.version), why_unusable(usability, c))
        for c in ascending
        if not usability.works_alone(c) and all(link.accepts(c) for link in links)
    )
    suggestions = _suggest(
        usability, plugin=plugin, dependency=dependency, links=ordered, own=own, selected=selected
    )
    return VersionConflict(plugin, dependency, chain, available, suggestions, unusable)


def _suggest(
    usability: Usability,
    *,
    plugin: str,
    dependency: str,
    links: list[Link],
    own: Collection[str],
    selected: Candidate | None,
) -> tuple[str, ...]:
    table = usability.table
    versions = table.by_name.get(dependency, ())
    mine = [link for link in links if link.requirer is not None and link.requirer.name in own]
    others = [link for link in links if link not in mine]
    found: list[str] = []
    if selected is not None:
        for link in mine:
            if link.requirer is not None and not link.accepts(selected):
                found.append(
                    f"Update '{link.requirer.name}' to a version compatible with "
                    f"{dependency} {_compatible(selected.version, link)}"
                )
    for link in mine:
        if not any(link.accepts(c) for c in versions):
            found.append(f"Install {dependency} {link.text}")
    fits = [
        candidate
        for candidate in versions
        if usability.works_alone(candidate) and all(link.accepts(candidate) for link in mine)
    ]
    if fits:
        for link in others:
            if link.requirer is None or link.requirer.name in table.pinned:
                continue
            if not link.accepts(fits[0]):
                found.append(
                    f"Update '{link.requirer.name}' to a version compatible with "
                    f"{dependency} {_compatible(fits[0].version, link)}"
                )
    involved = [plugin, *(link.requirer.name for link in links if link.requirer), dependency]
    found.extend(force_suggestion(table.pinned, involved))
    return tuple(dict.fromkeys(found))


def force_suggestion(pinned: Collection[str], involved: Iterable[str]) -> list[str]:
    """The way around a conflict that a pinned plugin (one being installed) is part of."""
    for name in involved:
        if name in pinned:
            return [f"Use 'clawhost plugins install {name} --force' to override (risky)"]
    return []


def _compatible(version: Version, link: Link) -> str:
    """What ``link``'s requirer must accept: the caret range of ``version`` as people write
    it (``2.x``, ``0.3.x``) when the requirement accepts nothing in that range, else just
    ``version`` (``^1.1`` against 1.0.0 already accepts "1.x" releases, only not this one).
    """
    major, minor = (*version.release, 0, 0)[:2]
    if major:
        low, high, written = Version(str(major)), Version(str(major + 1)), f"{major}.x"
    elif minor:
        low, high, written = Version(f"0.{minor}"), Version(f"0.{minor + 1}"), f"0.{minor}.x"
    else:
        return str(version)
    # The bounds a requirement names are where it can start accepting versions, so probing
    # them (and the range's own floor) tells whether it overlaps the range.
    probes = {low}
    for clause in link.requirement.specifier:
        with contextlib.suppress(InvalidVersion):
            probes.add(Version(clause.version.removesuffix(".*")))
    if any(low <= probe < high and link.requirement.contains(probe) for probe in probes):
        return str(version)
    return written


def why_unusable(usability: Usability, candidate: Candidate) -> str:
    """Why ``candidate`` cannot be used, in a few words (it is never the reason of a pin)."""
    fact = usability.facts[candidate.index]
    if isinstance(fact, BadManifest):
        return f"{fact.field} = {fact.value!r} is invalid: {fact.reason}"
    if isinstance(fact, NeedsNewerHost):
        host = usability.table.host_version
        return f"it needs clawdesk >= {fact.required}, but this host is {host}"
    if isinstance(fact, OnCycle):
        return f"it is on a dependency cycle: {' -> '.join(fact.cycle)}"
    if isinstance(fact, Missing) and fact.failed is not None:
        return f"it requires {fact.dep.name}, which failed at stage {fact.failed[0]}"
    if isinstance(fact, Missing):
        why = "is disabled" if fact.disabled else "is not installed"
        return f"it requires {fact.dep.name} {fact.dep.text}, which {why}"
    if isinstance(fact, NoMatch):
        return f"it requires {fact.dep.name} {fact.dep.text}, which no usable version satisfies"
    if isinstance(fact, Stranded):
        return f"it requires {fact.dep.name}, which failed"
    if isinstance(fact, NotPinned):
        return "another version is pinned"
    return "the plugin failed"
