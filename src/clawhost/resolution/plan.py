"""The activation plan: plugins in levels, each level depending only on earlier ones."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

__all__ = ["ActivationPlan", "find_cycles", "kahn_levels"]


def kahn_levels(
    requires: Mapping[str, Iterable[str]],
) -> tuple[tuple[tuple[str, ...], ...], list[str]]:
    """Kahn's layers of ``requires`` (plugin -> what it requires), names sorted in each.

    Returns the levels and the plugins left over, which are in a cycle or depend on one.
    A requirement on a plugin that is not a key of ``requires`` is ignored.
    """
    waiting: dict[str, int] = {}
    dependents: dict[str, list[str]] = {name: [] for name in requires}
    for name, deps in requires.items():
        inside = {dep for dep in deps if dep in dependents}
        waiting[name] = len(inside)
        for dep in inside:
            dependents[dep].append(name)
    levels: list[tuple[str, ...]] = []
    level = sorted(name for name, count in waiting.items() if count == 0)
    while level:
        levels.append(tuple(level))
        ready: list[str] = []
        for name in level:
            for dependent in dependents[name]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    ready.append(dependent)
        level = sorted(ready)
    placed = {name for level in levels for name in level}
    return tuple(levels), sorted(name for name in requires if name not in placed)


def find_cycles(
    requires: Mapping[str, Iterable[str]], candidates: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """For each of ``candidates`` that lies on a cycle, the shortest cycle through it.

    A cycle starts and ends with the plugin (``("a", "b", "a")``; ``("a", "a")`` for a
    plugin that requires itself). Plugins that only depend on a cycle are not on one.
    """
    graph = {name: sorted(set(deps)) for name, deps in requires.items()}
    cycles: dict[str, tuple[str, ...]] = {}
    for start in sorted(candidates):
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue and start not in came_from:
            name = queue.popleft()
            for dep in graph.get(name, ()):
                if dep not in came_from:
                    came_from[dep] = name
                    queue.append(dep)
        if start in came_from:
            path = [start]
            step = came_from[start]
            while step != start:
                path.append(step)
                step = came_from[step]
            cycles[start] = (start, *reversed(path))
    return cycles


@dataclass(frozen=True)
class ActivationPlan:
    """The order to activate resolved plugins in.

    ``levels`` are Kahn layers: every plugin of a level depends only on plugins of earlier
    levels, so one level's plugins may be activated concurrently. Names are sorted within
    a level, so the plan is deterministic. ``requirements`` maps each plugin to the plugins
    it directly requires.
    """

    levels: tuple[tuple[str, ...], ...] = ()
    requirements: Mapping[str, frozenset[str]] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @classmethod
    def build(cls, requires: Mapping[str, Iterable[str]]) -> ActivationPlan:
        """The plan for plugins and what each requires (requirements outside it ignored).

        Raises ``ValueError`` naming the plugins left over when ``requires`` has a cycle.
        """
        levels, left = kahn_levels(requires)
        if left:
            raise ValueError(f"the requirements form a cycle among: {', '.join(left)}")
        inside = {
            name: frozenset(dep for dep in deps if dep in requires and dep != name)
            for name, deps in requires.items()
        }
        return cls(levels, MappingProxyType(inside))

    @cached_property
    def order(self) -> tuple[str, ...]:
        """Every plugin in activation order: the levels, flattened."""
        return tuple(name for level in self.levels for name in level)

    def requires(self, name: str) -> frozenset[str]:
        """The plugins ``name`` directly requires (empty for a plugin not in the plan)."""
        return self.requirements.get(name, frozenset())

    def dependents(self, name: str) -> tuple[str, ...]:
        """Every plugin that depends on ``name``, directly or not, in activation order.

        Deactivate them in reverse before ``name`` (hot reload does); empty for a plugin
        not in the plan.
        """
        found: set[str] = set()
        stack = list(self._required_by.get(name, ()))
        while stack:
            dependent = stack.pop()
            if dependent not in found:
                found.add(dependent)
                stack.extend(self._required_by.get(dependent, ()))
        return tuple(sorted(found, key=self._position.__getitem__))

    @cached_property
    def _required_by(self) -> dict[str, list[str]]:
        required_by: dict[str, list[str]] = {}
        for name, deps in self.requirements.items():
            for dep in deps:
                required_by.setdefault(dep, []).append(name)
        return required_by

    @cached_property
    def _position(self) -> dict[str, int]:
        return {name: index for index, name in enumerate(self.order)}
