"""Properties of the resolver on random plugin graphs.

Whatever the graph: what is selected is consistent (every requirement of every selected
plugin holds against the selected version of its dependency, and the activation order
puts dependencies first), and every failure names a real reason (an absent or disabled
dependency, a chain no available version satisfies, a real cycle, a dependency that
really failed, a host that is really too old).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from clawhost import DiscoveredPlugin, Resolution, parse_requirement, resolve_plan
from clawhost.errors import (
    DependencyCycle,
    DependencyFailed,
    HostTooOld,
    MissingDependency,
    VersionConflict,
)

from ._fake_plugins import make_plugin

HOST = "1.0.0"
NAMES = ["alpha", "beta", "gamma", "delta", "eps-ilon", "zeta", "eta_theta"]
ABSENT = "ghost"
VERSIONS = ["0.0.3", "0.1.0", "0.2.5", "1.0.0", "1.2.0", "1.3.0rc1", "1.4.2", "2.0.0", "2.1.0"]
PROPERTY_SETTINGS = settings(
    max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def requirement_texts(draw: st.DrawFn, near: list[str]) -> str:
    """A requirement in one of the supported forms, mostly around the versions ``near``."""
    version = draw(
        st.sampled_from(near) if near and draw(rarely(4)) is False else st.sampled_from(VERSIONS)
    )
    major, minor = Version(version).release[:2]
    other = draw(st.sampled_from(VERSIONS))
    low, high = sorted([version, other], key=Version)
    form = draw(st.sampled_from(["caret", "tilde", "wild", "any", "exact", "range", "not", "pre"]))
    return {
        "caret": f"^{version}",
        "tilde": f"~{version}",
        "wild": f"{major}.x" if draw(st.booleans()) else f"{major}.{minor}.*",
        "any": "*",
        "exact": version,
        "range": f">={low}, <{high}" if low != high else f">={low}",
        "not": f"!={version}",
        "pre": f"^{major}.{minor}.0-beta.1",
    }[form]


def rarely(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in ``one_in`` draws (False is what examples shrink towards)."""
    return st.sampled_from([False] * (one_in - 1) + [True])


@dataclass
class World:
    """A random plugin graph and the options to resolve it with."""

    plugins: list[DiscoveredPlugin]
    disabled: list[str]
    pinned: dict[str, str]
    only: list[str] | None

    def versions_of(self, name: str) -> list[DiscoveredPlugin]:
        return [p for p in self.plugins if p.name == name]

    def on_offer(self, name: str) -> list[DiscoveredPlugin]:
        return [] if name in self.disabled else self.versions_of(name)

    def __repr__(self) -> str:
        # What a failing example needs to be reproduced: every manifest, and the options.
        lines = [
            f"{p.name} {p.version} requires {p.manifest.requirements}"
            f" min_host={p.manifest.min_clawdesk_version}"
            for p in sorted(self.plugins, key=lambda p: (p.name, p.version))
        ]
        options = f"disabled={self.disabled} pinned={self.pinned} only={self.only}"
        return "\n".join(["World:", *lines, options])


@st.composite
def worlds(draw: st.DrawFn) -> World:
    """Plugins with 1-4 versions, each requiring up to two plugins: mostly ones listed
    earlier (so most graphs are acyclic), now and then a later one, itself, or one that is
    not installed; now and then a version needs a newer host."""
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    offered = {
        name: draw(st.lists(st.sampled_from(VERSIONS), min_size=1, max_size=4, unique=True))
        for name in names
    }
    plugins = []
    for index, name in enumerate(names):
        for version in offered[name]:
            pool = names[:index] if names[:index] and not draw(rarely(8)) else [*names, ABSENT]
            targets = draw(st.lists(st.sampled_from(pool), max_size=2, unique=True))
            requires = {
                target: draw(requirement_texts(offered.get(target, []))) for target in targets
            }
            min_host = "2.0.0" if draw(rarely(10)) else draw(st.sampled_from([None, "0.5.0"]))
            plugins.append(make_plugin(name, version, requires, min_host=min_host))
    disabled = draw(st.lists(st.sampled_from(names), max_size=1)) if draw(rarely(4)) else []
    pinned = {}
    if draw(rarely(4)):
        name = draw(st.sampled_from(names))
        pinned[name] = draw(
            st.sampled_from(offered[name] if draw(rarely(5)) is False else VERSIONS)
        )
    only = None
    if draw(rarely(4)):
        only = [
            name
            for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
            if name not in disabled
        ] or None
    draw(st.randoms(use_true_random=False)).shuffle(plugins)
    return World(plugins, disabled, pinned, only)


def resolve(world: World) -> Resolution:
    return resolve_plan(
        world.plugins,
        host_version=HOST,
        disabled=world.disabled,
        pinned=world.pinned,
        only=world.only,
    )


def requirement_of(plugin: DiscoveredPlugin, dependency: str) -> str | None:
    return plugin.manifest.requirements.get(dependency)


def satisfies(version: Version | str, requirement: str) -> bool:
    return parse_requirement(requirement).contains(version)


@given(worlds())
@PROPERTY_SETTINGS
def test_every_requirement_of_every_selected_plugin_holds(world: World) -> None:
    selected = resolve(world).selected

    for name, chosen in selected.items():
        assert name not in world.disabled
        assert chosen.manifest.min_clawdesk_version is None or Version(
            chosen.manifest.min_clawdesk_version
        ) <= Version(HOST)
        if name in world.pinned:
            assert chosen.version == Version(world.pinned[name])
        for dependency, requirement in chosen.manifest.requirements.items():
            assert dependency != name, "a plugin that requires itself is never selected"
            assert dependency in selected, (name, dependency)
            assert satisfies(selected[dependency].version, requirement), (name, dependency)


@given(worlds())
@PROPERTY_SETTINGS
def test_the_activation_order_puts_every_dependency_first(world: World) -> None:
    resolution = resolve(world)
    plan = resolution.plan
    level_of = {name: index for index, level in enumerate(plan.levels) for name in level}

    assert list(plan.order) == list(resolution.selected)
    for name, chosen in resolution.selected.items():
        assert plan.requires(name) == set(chosen.manifest.requirements)
        for dependency in chosen.manifest.requirements:
            assert level_of[dependency] < level_of[name]
    for level in plan.levels:
        assert list(level) == sorted(level)


@given(worlds())
@PROPERTY_SETTINGS
def test_every_plugin_is_either_selected_or_failed(world: World) -> None:
    resolution = resolve(world)
    offered = {p.name for p in world.plugins if p.name not in world.disabled}

    assert not set(resolution.selected) & set(resolution.failures)
    if world.only is None:
        assert set(resolution.selected) | set(resolution.failures) == offered
    else:
        assert set(world.only) <= set(resolution.selected) | set(resolution.failures)


@given(worlds())
@PROPERTY_SETTINGS
def test_a_plugin_that_needs_nothing_and_fits_the_host_is_selected(world: World) -> None:
    resolution = resolve(world)

    for plugin in world.plugins:
        fits = plugin.manifest.min_clawdesk_version in (None, "0.5.0")
        free = not plugin.manifest.requirements and plugin.name not in world.pinned
        wanted = world.only is None or plugin.name in world.only
        if fits and free and wanted and plugin.name not in world.disabled:
            assert plugin.name in resolution.selected


@given(worlds())
@PROPERTY_SETTINGS
def test_every_failure_names_a_real_reason(world: World) -> None:
    resolution = resolve(world)

    for name, error in resolution.failures.items():
        assert error.plugin == name
        assert world.on_offer(name), "only plugins on offer fail"
        if isinstance(error, MissingDependency):
            check_missing(world, error)
        elif isinstance(error, VersionConflict):
            check_conflict(world, error)
        elif isinstance(error, DependencyCycle):
            check_cycle(world, error)
        elif isinstance(error, DependencyFailed):
            assert error.dependency in resolution.failures
            assert any(requirement_of(p, error.dependency) for p in world.versions_of(name))
        elif isinstance(error, HostTooOld):
            (version,) = [p for p in world.versions_of(name) if str(p.version) == error.version]
            assert version.manifest.min_clawdesk_version == error.required
            assert Version(error.required) > Version(HOST)
        else:
            raise AssertionError(f"unexpected failure for {name}: {error!r}")


def check_missing(world: World, error: MissingDependency) -> None:
    assert not world.on_offer(error.dependency)
    assert error.disabled == (error.dependency in world.disabled)
    assert any(
        requirement_of(p, error.dependency) == error.requirement
        for p in world.versions_of(error.plugin)
    )


def check_conflict(world: World, error: VersionConflict) -> None:
    offered = {str(p.version) for p in world.on_offer(error.dependency)}
    unusable = {version for version, _ in error.unusable}
    assert set(error.available) <= offered
    assert unusable <= offered
    assert not unusable & set(error.available)
    for link in error.chain:
        if link.requirer is None:
            assert world.pinned.get(link.dependency) is not None
            assert link.requirement == f"=={Version(world.pinned[link.dependency])}"
        else:
            (requirer,) = [
                p
                for p in world.versions_of(link.requirer)
                if str(p.version) == link.requirer_version
            ]
            assert requirement_of(requirer, link.dependency) == link.requirement
    on_dependency = [
        link.requirement for link in error.chain if link.dependency == error.dependency
    ]
    if error.available:
        assert on_dependency, "the chain names requirements on the dependency"
    for version in error.available:
        assert not all(satisfies(version, requirement) for requirement in on_dependency), version
    if error.dependency == error.plugin and not error.available:
        assert unusable == offered, "every version of the plugin is given its own reason"


def check_cycle(world: World, error: DependencyCycle) -> None:
    cycle = error.cycle
    assert cycle[0] == cycle[-1] == error.plugin
    for requirer, dependency in itertools.pairwise(cycle):
        assert any(requirement_of(p, dependency) for p in world.versions_of(requirer))


@given(worlds(), st.randoms(use_true_random=False))
@settings(max_examples=40, deadline=None)
def test_the_result_does_not_depend_on_the_order_of_the_candidates(
    world: World, shuffler: random.Random
) -> None:
    first = resolve(world)
    shuffler.shuffle(world.plugins)

    second = resolve(world)

    assert summary(second.selected) == summary(first.selected)
    assert {n: repr(e.args) for n, e in second.failures.items()} == {
        n: repr(e.args) for n, e in first.failures.items()
    }


def summary(selected: Mapping[str, DiscoveredPlugin]) -> dict[str, str]:
    return {name: str(plugin.version) for name, plugin in selected.items()}
