"""The resolve stage: one version of every enabled plugin, an activation plan, and a reason
for every plugin that could not be resolved.

How it works, in rounds (``resolve_plan`` runs as many as it needs, usually one):

1. **Usable versions** (``_candidates``). A version is dropped, with the reason kept, when
   its manifest cannot be read, its ``min_clawdesk_version`` is above the host, another
   version of its plugin is pinned, or a requirement of it names a plugin that is absent
   or disabled or matches no usable version of it; the last rule runs to a fixpoint. A
   plugin left with no usable version fails with the reason of its pinned version, else
   of its newest; one that needed it fails with ``DependencyFailed``. With a single
   version of everything, this step alone settles every requirement.
2. **Choice** (``_choose``). The newest usable version of everything is tried first; when
   every requirement holds, that is the answer. Where one is broken, the connected part of
   the graph around it is narrowed (``_narrow``: versions that cannot be in any solution
   selecting all its roots are dropped, which alone settles the common case of one plugin
   holding others back on an older major) and, when the newest of what is left still does
   not fit, resolvelib searches it, backtracking (an older A whose requirement fits, when
   the newest A's does not).
3. **Isolation.** When resolvelib finds no solution for a part, its roots are admitted in
   priority order (pinned first: the plugin being installed or reloaded, and the active
   ones the host keeps; then plugins more others depend on; then by name) and the first
   that cannot join those before it is found by bisection. It fails with a
   ``VersionConflict`` explained against the solution for the others (``_blame``), is
   removed, and a new round starts: what needed it now fails with ``DependencyFailed`` or
   falls back to a version that does not need it. Which plugin fails is a documented
   rule, not an accident of search order.
4. **Cycles** (``_plan``). Versions are chosen first and cycles judged among the chosen
   (a plugin that requires itself is a cycle of one). A version on a cycle is set aside
   when its plugin has another usable version, and a new round tries again; a plugin with
   nothing else to try fails with ``DependencyCycle``.

Each round after the first removes a plugin or sets a version aside, so the rounds end.
The result is deterministic: names are sorted wherever order could leak, and resolvelib is
given a total preference order. Nothing is parsed twice: requirements are parsed once per
version (``parse_requirement`` is cached besides) and each requirement's matching versions
are computed once per call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from clawhost.core.versions import parse_version
from clawhost.errors import DependencyCycle, DependencyFailed, PluginNotFound, ResolutionError
from clawhost.resolution.blame import explain_unadmittable
from clawhost.resolution.candidates import CandidateTable, check_usable, group_candidates
from clawhost.resolution.choose import choose_versions
from clawhost.resolution.explain import explain_failures
from clawhost.resolution.plan import ActivationPlan, find_cycles, kahn_levels

if TYPE_CHECKING:
    from packaging.version import Version

    from clawhost.discovery.discover import DiscoveredPlugin
    from clawhost.resolution.candidates import Candidate

__all__ = ["ActivationPlan", "Resolution", "resolve_plan"]

logger = logging.getLogger("clawhost.resolve")


@dataclass(frozen=True)
class Resolution:
    """What the resolve stage decided.

    ``selected`` holds the chosen version of every resolved plugin, in activation order;
    ``plan`` says in which order to activate them; ``failures`` holds, by name, why each
    plugin that could not be resolved could not (a ``ResolutionError`` subclass).
    """

    selected: Mapping[str, DiscoveredPlugin]
    plan: ActivationPlan
    failures: Mapping[str, ResolutionError]


def resolve_plan(
    candidates: Iterable[DiscoveredPlugin] | Mapping[str, Iterable[DiscoveredPlugin]],
    *,
    host_version: str | Version,
    disabled: Iterable[str] = (),
    pinned: Mapping[str, str | Version] | None = None,
    only: Iterable[str] | None = None,
    failed: Mapping[str, tuple[str, str]] | None = None,
) -> Resolution:
    """Choose one version of every wanted plugin so that every requirement holds.

    ``candidates`` are the versions on offer (several per plugin allowed), or a mapping of
    plugin name to them. A version whose ``min_clawdesk_version`` is above ``host_version``
    is not eligible. ``disabled`` plugins are not candidates at all: whatever requires one
    fails with ``MissingDependency(disabled=True)``. ``failed`` names plugins that failed
    before resolution (name -> stage, reason): whatever requires one fails with
    ``DependencyFailed`` saying so, not with "not installed". ``pinned`` forces a version of a
    plugin (``plugins install`` checks a new plugin this way; hot reload re-resolves a new
    version this way). ``only`` resolves just those roots and what they need; by default
    every candidate plugin is a root. Naming a plugin in ``only`` that is not a candidate
    raises ``PluginNotFound``.

    The newest versions that satisfy everyone are chosen, backtracking where the newest do
    not fit together. A plugin that cannot be resolved fails alone with its reason, and
    its dependents with ``DependencyFailed``; every other plugin is still resolved.
    """
    host = parse_version(host_version) if isinstance(host_version, str) else host_version
    off = frozenset(disabled)
    pins = {
        name: parse_version(version) if isinstance(version, str) else version
        for name, version in (pinned or {}).items()
    }
    grouped = group_candidates(candidates)
    roots: list[str] | None = None
    if only is not None:
        roots = list(dict.fromkeys(only))
        known = tuple(name for name in grouped if name not in off)
        for root in roots:
            if root not in known:
                raise PluginNotFound(root, known)
        grouped = _closure(grouped, roots)
    table = CandidateTable(
        grouped, host_version=host, disabled=off, pinned=pins, failed=failed or {}
    )
    removed: dict[str, ResolutionError] = {}
    set_aside: dict[int, tuple[str, ...]] = {}
    while True:
        usability = check_usable(table, removed, set_aside)
        choice = choose_versions(usability, roots=roots)
        if choice.victim is not None:
            error = explain_unadmittable(usability, choice.victim, choice.background)
            logger.debug("%s cannot join the plugins before it: %s", choice.victim, error)
            removed[choice.victim] = error
            continue
        chosen = choice.chosen
        requires = {name: _requirements(candidate) for name, candidate in chosen.items()}
        levels, left = kahn_levels(requires)
        if not left:
            break
        for name, cycle in find_cycles(requires, left).items():
            # A version on a cycle gives way to another version of its plugin if there is
            # one; a plugin with nothing else to try fails with the cycle.
            if len(usability.usable[name]) > 1:
                logger.debug("%s %s is on a cycle; trying another", name, chosen[name].version)
                set_aside[chosen[name].index] = cycle
            else:
                removed[name] = DependencyCycle(name, cycle)
    failures = explain_failures(usability, removed, chosen)
    if roots is not None:
        failures = _needed(failures, roots)
    plan = ActivationPlan(
        levels, MappingProxyType({name: frozenset(deps) for name, deps in requires.items()})
    )
    return Resolution(
        selected=MappingProxyType({name: chosen[name].plugin for name in plan.order}),
        plan=plan,
        failures=MappingProxyType(dict(sorted(failures.items()))),
    )


def _requirements(candidate: Candidate) -> list[str]:
    names = [dep.name for dep in candidate.deps]
    if candidate.self_dep is not None:
        names.append(candidate.name)
    return names


def _closure(
    grouped: Mapping[str, list[DiscoveredPlugin]], roots: Iterable[str]
) -> dict[str, list[DiscoveredPlugin]]:
    """The plugins ``roots`` could need, through the requirements of any of their versions."""
    keep: dict[str, list[DiscoveredPlugin]] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in keep or name not in grouped:
            continue
        keep[name] = grouped[name]
        for plugin in grouped[name]:
            stack.extend(plugin.manifest.requirements)
    return {name: keep[name] for name in sorted(keep)}


def _needed(
    failures: Mapping[str, ResolutionError], roots: Iterable[str]
) -> dict[str, ResolutionError]:
    """The failures a caller of ``only=roots`` needs: the roots', and what they lead to."""
    needed: dict[str, ResolutionError] = {}
    stack = list(roots)
    while stack:
        name = stack.pop()
        error = failures.get(name)
        if error is None or name in needed:
            continue
        needed[name] = error
        if isinstance(error, DependencyFailed):
            stack.append(error.dependency)
        elif isinstance(error, DependencyCycle):
            stack.extend(error.cycle)
    return needed
