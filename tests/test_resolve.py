"""The resolve stage: one version of every plugin, failures alone, explained conflicts."""

from __future__ import annotations

import dataclasses
import pickle
import random

import pytest
from packaging.version import Version

from clawhost import ActivationPlan, DiscoveredPlugin, Resolution, resolve_plan
from clawhost.errors import (
    DependencyCycle,
    DependencyFailed,
    HostTooOld,
    InvalidRequirement,
    MissingDependency,
    PluginNotFound,
    RequirementLink,
    VersionConflict,
)

from ._fake_plugins import make_plugin as plugin

HOST = "1.0.0"


def resolve(*candidates: DiscoveredPlugin, **options: object) -> Resolution:
    options.setdefault("host_version", HOST)
    return resolve_plan(candidates, **options)  # type: ignore[arg-type]


def versions(resolution: Resolution) -> dict[str, str]:
    return {name: str(chosen.version) for name, chosen in resolution.selected.items()}


# -- choosing versions ------------------------------------------------------------------------


def test_a_plugin_without_dependencies_is_selected() -> None:
    resolution = resolve(plugin("weather", "1.2.0"))

    assert versions(resolution) == {"weather": "1.2.0"}
    assert resolution.failures == {}


def test_a_diamond_shares_one_version_of_the_common_dependency() -> None:
    resolution = resolve(
        plugin("app", "1.0.0", {"left": "^1.0", "right": "^1.0"}),
        plugin("left", "1.0.0", {"base": "^1.2"}),
        plugin("right", "1.0.0", {"base": ">=1.1, <1.4"}),
        plugin("base", "1.1.0"),
        plugin("base", "1.3.0"),
        plugin("base", "1.5.0"),
    )

    assert versions(resolution) == {
        "app": "1.0.0",
        "base": "1.3.0",
        "left": "1.0.0",
        "right": "1.0.0",
    }


def test_the_newest_version_wins_when_every_version_fits() -> None:
    resolution = resolve(plugin("weather", "1.2.0"), plugin("weather", "1.3.0"))

    assert versions(resolution) == {"weather": "1.3.0"}


def test_the_newest_version_a_requirement_accepts_is_chosen() -> None:
    resolution = resolve(
        plugin("weather", "1.0.0", {"geocoding": "~1.5"}),
        plugin("geocoding", "1.5.0"),
        plugin("geocoding", "1.5.7"),
        plugin("geocoding", "1.6.0"),
    )

    assert versions(resolution)["geocoding"] == "1.5.7"


def test_an_older_plugin_is_chosen_when_the_newest_needs_what_conflicts_elsewhere() -> None:
    resolution = resolve(
        plugin("app", "2.0.0", {"base": ">=2.0"}),
        plugin("app", "1.0.0", {"base": "^1.0"}),
        plugin("other", "1.0.0", {"base": "^1.0"}),
        plugin("base", "1.4.0"),
        plugin("base", "2.1.0"),
    )

    assert versions(resolution) == {"app": "1.0.0", "base": "1.4.0", "other": "1.0.0"}
    assert resolution.failures == {}


def test_versions_that_require_each_other_in_turn_give_way_to_one_that_needs_nothing() -> None:
    resolution = resolve(
        plugin("alpha", "0.2.5", {"gamma": "^0.0.3"}),
        plugin("alpha", "0.1.0"),
        plugin("alpha", "0.0.3", {"gamma": "^1.0.0"}),
        plugin("gamma", "1.0.0", {"alpha": "^0.2.5"}),
        plugin("gamma", "0.1.0"),
        plugin("gamma", "0.0.3", {"alpha": "^0.0.3"}),
    )

    assert versions(resolution) == {"alpha": "0.1.0", "gamma": "0.1.0"}


def test_a_version_needing_a_plugin_that_is_absent_gives_way_to_an_older_one() -> None:
    resolution = resolve(
        plugin("weather", "1.3.0", {"radar": "^1.0"}),
        plugin("weather", "1.2.0"),
    )

    assert versions(resolution) == {"weather": "1.2.0"}


def test_a_dependency_key_may_name_the_distribution() -> None:
    resolution = resolve(
        plugin("weather", "1.0.0", {"clawdesk-plugin-geocoding": "^1.0"}),
        plugin("geocoding", "1.1.0"),
    )

    assert resolution.plan.requires("weather") == {"geocoding"}


def test_the_host_version_and_pins_may_be_versions_in_any_spelling() -> None:
    resolution = resolve_plan(
        [plugin("weather", "1.2.0", min_host="1.0"), plugin("weather", "1.3.0")],
        host_version=Version("1.0"),
        pinned={"weather": "1.2"},
    )

    assert versions(resolution) == {"weather": "1.2.0"}


def test_candidates_may_be_given_grouped_by_name() -> None:
    grouped = {
        "weather": [plugin("weather", "1.0.0", {"geocoding": "^1"})],
        "geocoding": [plugin("geocoding", "1.0.0"), plugin("geocoding", "1.1.0")],
    }

    resolution = resolve_plan(grouped, host_version=HOST)

    assert versions(resolution) == {"geocoding": "1.1.0", "weather": "1.0.0"}


def test_the_result_does_not_depend_on_the_order_of_the_candidates() -> None:
    candidates = [
        plugin("app", "2.0.0", {"base": ">=2.0", "extra": "*"}),
        plugin("app", "1.0.0", {"base": "^1.0"}),
        plugin("other", "1.0.0", {"base": "^1.0"}),
        plugin("late", "1.0.0", {"base": "^2.0"}),
        plugin("base", "1.4.0"),
        plugin("base", "2.1.0"),
        plugin("extra", "1.0.0", {"missing": "*"}),
    ]
    expected = resolve(*candidates)
    shuffled = candidates[:]
    random.Random(4).shuffle(shuffled)

    again = resolve(*shuffled)

    assert versions(again) == versions(expected)
    assert {name: str(error) for name, error in again.failures.items()} == {
        name: str(error) for name, error in expected.failures.items()
    }


# -- caret, tilde and pre-releases in resolution ---------------------------------------------


@pytest.mark.parametrize(
    ("requirement", "offered", "chosen"),
    [
        ("^0.2.1", ["0.2.0", "0.2.5", "0.3.0"], "0.2.5"),
        ("^0.0.3", ["0.0.3", "0.0.4", "0.1.0"], "0.0.3"),
        ("^0", ["0.0.1", "0.9.0", "1.0.0"], "0.9.0"),
        ("~1.2", ["1.2.0", "1.2.9", "1.3.0"], "1.2.9"),
        ("~0.2.3", ["0.2.3", "0.2.8", "0.3.0"], "0.2.8"),
        ("1.x", ["1.0.0", "1.9.0", "2.0.0"], "1.9.0"),
        ("1.2.0", ["1.2.0", "1.2.1"], "1.2.0"),
        ("^1.2.0", ["1.2.0", "1.3.0a1"], "1.2.0"),
        ("^1.3.0-beta.1", ["1.2.0", "1.3.0b2"], "1.3.0b2"),
        ("^1.3.0-beta.1", ["1.3.0b2", "1.4.0a1"], "1.3.0b2"),
        (">=1.0a1", ["1.0.0", "1.5.0a1"], "1.5.0a1"),
    ],
)
def test_requirement_forms_choose_the_newest_version_they_admit(
    requirement: str, offered: list[str], chosen: str
) -> None:
    resolution = resolve(
        plugin("app", "1.0.0", {"lib": requirement}),
        *(plugin("lib", version) for version in offered),
    )

    assert versions(resolution)["lib"] == chosen


def test_a_caret_on_0_x_does_not_accept_the_next_minor() -> None:
    resolution = resolve(plugin("app", "1.0.0", {"lib": "^0.2.0"}), plugin("lib", "0.3.0"))

    error = resolution.failures["app"]
    assert isinstance(error, VersionConflict)
    assert error.available == ("0.3.0",)


def test_an_unrequired_pre_release_is_chosen_when_it_is_the_newest_root() -> None:
    resolution = resolve(plugin("lib", "1.0.0"), plugin("lib", "1.1.0rc1"))

    assert versions(resolution) == {"lib": "1.1.0rc1"}


# -- failures ---------------------------------------------------------------------------------


def test_a_missing_dependency_fails_only_the_plugin_that_needs_it() -> None:
    resolution = resolve(
        plugin("weather", "1.2.0", {"geocoding": "^1.5.0"}),
        plugin("clock", "1.0.0"),
    )

    error = resolution.failures["weather"]
    assert isinstance(error, MissingDependency)
    assert (error.plugin, error.dependency, error.requirement) == ("weather", "geocoding", "^1.5.0")
    assert not error.disabled
    assert versions(resolution) == {"clock": "1.0.0"}


def test_a_disabled_dependency_is_reported_as_disabled() -> None:
    resolution = resolve(
        plugin("weather", "1.2.0", {"geocoding": "^1.5.0"}),
        plugin("geocoding", "1.6.0"),
        disabled=["geocoding"],
    )

    error = resolution.failures["weather"]
    assert isinstance(error, MissingDependency)
    assert error.disabled
    assert "geocoding" not in resolution.failures
    assert resolution.selected == {}


def test_dependents_of_a_failed_plugin_fail_with_the_dependency_named() -> None:
    resolution = resolve(
        plugin("top", "1.0.0", {"middle": "*"}),
        plugin("middle", "1.0.0", {"bottom": "*"}),
        plugin("bottom", "1.0.0", {"absent": "^1"}),
    )

    middle, top = resolution.failures["middle"], resolution.failures["top"]
    assert isinstance(middle, DependencyFailed)
    assert isinstance(top, DependencyFailed)
    assert (middle.dependency, top.dependency) == ("bottom", "middle")
    assert str(top) == (
        "dependency middle failed: dependency bottom failed: "
        "bottom requires absent ^1, which is not installed"
    )


def test_a_plugin_that_requires_itself_is_a_cycle() -> None:
    resolution = resolve(plugin("loop", "1.0.0", {"loop": "^1.0"}))

    error = resolution.failures["loop"]
    assert isinstance(error, DependencyCycle)
    assert error.cycle == ("loop", "loop")


def test_a_cycle_of_two_fails_both_plugins() -> None:
    resolution = resolve(plugin("a", "1.0.0", {"b": "*"}), plugin("b", "1.0.0", {"a": "*"}))

    cycles = {name: getattr(error, "cycle", None) for name, error in resolution.failures.items()}
    assert cycles == {"a": ("a", "b", "a"), "b": ("b", "a", "b")}


def test_a_cycle_of_three_fails_all_three() -> None:
    resolution = resolve(
        plugin("a", "1.0.0", {"b": "*"}),
        plugin("b", "1.0.0", {"c": "*"}),
        plugin("c", "1.0.0", {"a": "*"}),
        plugin("d", "1.0.0"),
    )

    error = resolution.failures["a"]
    assert isinstance(error, DependencyCycle)
    assert error.cycle == ("a", "b", "c", "a")
    assert sorted(resolution.failures) == ["a", "b", "c"]
    assert versions(resolution) == {"d": "1.0.0"}


def test_a_plugin_depending_on_a_cycle_fails_with_dependency_failed() -> None:
    resolution = resolve(
        plugin("a", "1.0.0", {"b": "*"}),
        plugin("b", "1.0.0", {"a": "*"}),
        plugin("user", "1.0.0", {"a": "*"}),
    )

    error = resolution.failures["user"]
    assert isinstance(error, DependencyFailed)
    assert error.dependency == "a"
    assert error.reason == "dependency cycle: a -> b -> a"


def test_a_plugin_needing_a_newer_host_fails_with_host_too_old() -> None:
    resolution = resolve(plugin("weather", "1.2.0", min_host="2.0.0"))

    error = resolution.failures["weather"]
    assert isinstance(error, HostTooOld)
    assert (error.version, error.required, error.host_version) == ("1.2.0", "2.0.0", HOST)


def test_an_older_version_the_host_can_run_is_picked_instead() -> None:
    resolution = resolve(
        plugin("weather", "1.3.0", min_host="2.0.0"),
        plugin("weather", "1.2.0", min_host="0.5.0"),
    )

    assert versions(resolution) == {"weather": "1.2.0"}
    assert resolution.failures == {}


@pytest.mark.parametrize(
    ("written", "shown"),
    [("^^1.0", "'^^1.0'"), ("^1.0 || ^2.0", "'^1.0 || ^2.0'"), ("", "''"), (5, "'5'")],
)
def test_an_invalid_requirement_names_the_plugin_and_the_field(written: object, shown: str) -> None:
    resolution = resolve(
        plugin("weather", "1.2.0", {"clawdesk-plugin-geocoding": written}, validate=False),
        plugin("geocoding", "1.0.0"),
    )

    error = resolution.failures["weather"]
    assert isinstance(error, InvalidRequirement)
    assert (error.plugin, error.field) == (
        "weather",
        "plugin.dependencies.clawdesk-plugin-geocoding",
    )
    assert str(error).startswith(
        f"plugin 'weather': plugin.dependencies.clawdesk-plugin-geocoding = {shown} is invalid: "
    )
    assert versions(resolution) == {"geocoding": "1.0.0"}


def test_an_invalid_min_host_version_names_the_field() -> None:
    resolution = resolve(
        plugin("weather", "1.2.0", min_host="soon", validate=False),
    )

    error = resolution.failures["weather"]
    assert isinstance(error, InvalidRequirement)
    assert error.field == "plugin.min_clawdesk_version"


def test_the_plugins_that_can_be_resolved_still_are() -> None:
    resolution = resolve(
        plugin("broken", "1.0.0", {"nowhere": "*"}),
        plugin("loop", "1.0.0", {"loop": "*"}),
        plugin("old-host", "1.0.0", min_host="9.0"),
        plugin("fine", "1.0.0", {"base": "^1"}),
        plugin("base", "1.0.0"),
    )

    assert versions(resolution) == {"base": "1.0.0", "fine": "1.0.0"}
    assert sorted(resolution.failures) == ["broken", "loop", "old-host"]


# -- conflicts and their explanation ----------------------------------------------------------

CONFLICT = (
    plugin("geocoding", "1.6.0"),
    plugin("geocoding", "2.1.0"),
    plugin("weather", "1.2.0", {"geocoding": "^1.5.0"}),
    plugin("new-plugin", "1.0.0", {"geocoding": ">=2.0.0"}),
)


def test_a_conflict_between_two_dependents_fails_one_of_them() -> None:
    resolution = resolve(*CONFLICT)

    assert list(resolution.failures) == ["weather"]
    assert versions(resolution) == {"geocoding": "2.1.0", "new-plugin": "1.0.0"}


def test_a_conflict_names_both_requirers_and_the_versions_available() -> None:
    error = resolve(*CONFLICT).failures["weather"]

    assert isinstance(error, VersionConflict)
    assert error.dependency == "geocoding"
    assert error.chain == (
        RequirementLink("new-plugin", "1.0.0", "geocoding", ">=2.0.0"),
        RequirementLink("weather", "1.2.0", "geocoding", "^1.5.0"),
    )
    assert error.available == ("1.6.0", "2.1.0")


def test_a_conflict_with_a_pinned_plugin_renders_as_the_install_check_prints_it() -> None:
    error = resolve(*CONFLICT, pinned={"new-plugin": "1.0.0"}).failures["weather"]

    assert isinstance(error, VersionConflict)
    assert error.render() == (
        "Dependency conflict detected\n"
        "  new-plugin v1.0.0 requires geocoding >=2.0.0\n"
        "  weather v1.2.0 requires geocoding ^1.5.0\n"
        "  available geocoding versions: 1.6.0, 2.1.0\n"
        "These version requirements are incompatible.\n"
        "Suggestions:\n"
        "  1. Update 'weather' to a version compatible with geocoding 2.x\n"
        "  2. Use 'clawhost plugins install new-plugin --force' to override (risky)"
    )


def test_a_requirement_nothing_available_satisfies_suggests_installing_one() -> None:
    resolution = resolve(
        plugin("geocoding", "1.6.0"),
        plugin("weather", "1.2.0", {"geocoding": "^1.5.0"}),
        plugin("new-plugin", "1.0.0", {"geocoding": ">=2.0.0"}),
        pinned={"new-plugin": "1.0.0"},
    )

    error = resolution.failures["new-plugin"]
    assert isinstance(error, VersionConflict)
    assert error.chain[-1] == RequirementLink("weather", "1.2.0", "geocoding", "^1.5.0")
    assert error.available == ("1.6.0",)
    assert "Install geocoding >=2.0.0" in error.suggestions
    assert error.suggestions[-1] == (
        "Use 'clawhost plugins install new-plugin --force' to override (risky)"
    )
    assert versions(resolution) == {"geocoding": "1.6.0", "weather": "1.2.0"}


def test_a_version_that_would_fit_but_cannot_be_used_is_listed_with_its_reason() -> None:
    resolution = resolve(
        plugin("geocoding", "1.6.0"),
        plugin("geocoding", "2.0.0", min_host="3.0.0"),
        plugin("weather", "1.2.0", {"geocoding": "^2.0"}),
    )

    error = resolution.failures["weather"]
    assert isinstance(error, VersionConflict)
    assert error.available == ("1.6.0",)
    assert error.unusable == (("2.0.0", "it needs clawdesk >= 3.0.0, but this host is 1.0.0"),)
    assert "geocoding 2.0.0 cannot be used: it needs clawdesk >= 3.0.0" in error.render()


def test_a_conflict_deeper_than_the_failing_plugin_shows_the_path_to_it() -> None:
    resolution = resolve(
        plugin("clock", "1.0.0", {"tz": "^2.0"}),
        plugin("zapp", "1.0.0", {"geo": "^2.0"}),
        plugin("geo", "1.0.0"),
        plugin("geo", "2.0.0", {"tz": "^3.0"}),
        plugin("tz", "2.0.0"),
        plugin("tz", "3.0.0"),
    )

    error = resolution.failures["zapp"]
    assert isinstance(error, VersionConflict)
    assert error.dependency == "tz"
    assert error.chain == (
        RequirementLink("zapp", "1.0.0", "geo", "^2.0"),
        RequirementLink("clock", "1.0.0", "tz", "^2.0"),
        RequirementLink("geo", "2.0.0", "tz", "^3.0"),
    )
    assert error.suggestions == (
        "Update 'geo' to a version compatible with tz 2.x",
        "Update 'clock' to a version compatible with tz 3.x",
    )


def test_when_each_version_conflicts_through_itself_every_version_gets_its_reason() -> None:
    resolution = resolve(
        plugin("alpha", "0.1.0", {"beta": "^0.0.3"}),
        plugin("alpha", "0.0.3", {"beta": "^0.1.0"}),
        plugin("beta", "0.0.3", {"alpha": "^0.0.3"}),
        plugin("beta", "0.1.0", {"alpha": "!=0.0.3"}),
    )

    error = resolution.failures["alpha"]
    assert isinstance(error, VersionConflict)
    assert (error.dependency, error.available) == ("alpha", ())
    assert error.unusable == (
        ("0.0.3", "alpha v0.0.3 requires beta ^0.1.0; beta v0.1.0 requires alpha !=0.0.3"),
        ("0.1.0", "alpha v0.1.0 requires beta ^0.0.3; beta v0.0.3 requires alpha ^0.0.3"),
    )
    assert isinstance(resolution.failures["beta"], DependencyFailed)


def test_a_plugin_more_others_depend_on_is_kept_over_one_nobody_needs() -> None:
    resolution = resolve(
        plugin("base", "1.0.0"),
        plugin("base", "2.0.0"),
        plugin("popular", "1.0.0", {"base": "^2"}),
        plugin("fan", "1.0.0", {"popular": "*"}),
        plugin("loner", "1.0.0", {"base": "^1"}),
    )

    assert list(resolution.failures) == ["loner"]


def test_a_conflict_error_survives_pickling() -> None:
    error = resolve(*CONFLICT).failures["weather"]
    assert isinstance(error, VersionConflict)

    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, VersionConflict)
    assert (copy.chain, copy.available, copy.suggestions, copy.unusable) == (
        error.chain,
        error.available,
        error.suggestions,
        error.unusable,
    )
    assert str(copy) == str(error)


def test_an_update_suggestion_names_the_exact_version_when_the_range_already_overlaps() -> None:
    error = resolve(
        plugin("app", "1.0.0", {"lib": "^1.1"}),
        plugin("other", "1.0.0", {"lib": "^1.0"}),
        plugin("lib", "1.0.0"),
    ).failures["app"]

    assert isinstance(error, VersionConflict)
    assert error.suggestions == (
        "Update 'app' to a version compatible with lib 1.0.0",
        "Install lib ^1.1",
    )


# -- pinned versions --------------------------------------------------------------------------


def test_a_pinned_version_is_used_even_when_a_newer_one_is_on_offer() -> None:
    resolution = resolve(
        plugin("weather", "1.2.0"), plugin("weather", "1.3.0"), pinned={"weather": "1.2.0"}
    )

    assert versions(resolution) == {"weather": "1.2.0"}


def test_an_install_check_that_fits_resolves_everything() -> None:
    resolution = resolve(
        plugin("geocoding", "1.6.0"),
        plugin("weather", "1.2.0", {"geocoding": "^1.5.0"}),
        plugin("new-plugin", "1.0.0", {"geocoding": "~1.6"}),
        pinned={"new-plugin": "1.0.0"},
    )

    assert resolution.failures == {}
    assert versions(resolution)["new-plugin"] == "1.0.0"


def test_a_pinned_plugin_wins_a_conflict_with_the_plugins_already_there() -> None:
    resolution = resolve(*CONFLICT, pinned={"new-plugin": "1.0.0"})

    assert "new-plugin" in resolution.selected
    assert list(resolution.failures) == ["weather"]


def test_a_requirement_against_a_pinned_version_shows_the_pin_in_the_chain() -> None:
    resolution = resolve(
        plugin("geocoding", "1.6.0"),
        plugin("geocoding", "2.1.0"),
        plugin("weather", "1.2.0", {"geocoding": "^1.5.0"}),
        pinned={"geocoding": "2.1.0"},
    )

    error = resolution.failures["weather"]
    assert isinstance(error, VersionConflict)
    assert error.chain[0] == RequirementLink(None, None, "geocoding", "==2.1.0")
    assert "the host requires geocoding ==2.1.0" in error.render()


def test_pinning_a_version_that_is_not_on_offer_fails_that_plugin() -> None:
    resolution = resolve(plugin("weather", "1.2.0"), pinned={"weather": "1.4.0"})

    error = resolution.failures["weather"]
    assert isinstance(error, VersionConflict)
    assert error.available == ("1.2.0",)
    assert error.suggestions == ("Install weather ==1.4.0",)


# -- only some roots --------------------------------------------------------------------------


def test_only_resolves_the_roots_named_and_what_they_need() -> None:
    resolution = resolve(
        plugin("weather", "1.0.0", {"geocoding": "^1"}),
        plugin("geocoding", "1.0.0"),
        plugin("clock", "1.0.0", {"nowhere": "*"}),
        only=["weather"],
    )

    assert versions(resolution) == {"geocoding": "1.0.0", "weather": "1.0.0"}
    assert resolution.failures == {}


def test_only_reports_the_failures_behind_a_failed_root() -> None:
    resolution = resolve(
        plugin("weather", "1.0.0", {"geocoding": "^1"}),
        plugin("geocoding", "1.0.0", {"nowhere": "*"}),
        only=["weather"],
    )

    assert sorted(resolution.failures) == ["geocoding", "weather"]


ONLY_APP_NEEDS_LIB_1 = (
    plugin("app", "1.0.0", {"lib": "*", "base": "^1"}),
    plugin("lib", "2.0.0", {"extra": "*"}),
    plugin("lib", "1.0.0"),
    plugin("extra", "1.0.0", {"base": "^2"}),
    plugin("base", "1.0.0"),
    plugin("base", "2.0.0"),
)


def test_only_does_not_let_an_unneeded_plugin_decide_a_version() -> None:
    resolution = resolve(*ONLY_APP_NEEDS_LIB_1, only=["app"])

    assert versions(resolution) == {"app": "1.0.0", "base": "1.0.0", "lib": "1.0.0"}
    assert resolution.failures == {}


def test_without_only_every_plugin_is_a_root_and_may_win_a_conflict() -> None:
    resolution = resolve(*ONLY_APP_NEEDS_LIB_1)

    assert list(resolution.failures) == ["app"]


def test_only_naming_an_unknown_plugin_raises() -> None:
    with pytest.raises(PluginNotFound) as raised:
        resolve(plugin("weather", "1.0.0"), only=["radar"])

    assert raised.value.known == ("weather",)


# -- the activation plan ----------------------------------------------------------------------


def test_each_level_depends_only_on_earlier_levels() -> None:
    resolution = resolve(
        plugin("app", "1.0.0", {"weather": "*", "clock": "*"}),
        plugin("weather", "1.0.0", {"geocoding": "*"}),
        plugin("clock", "1.0.0"),
        plugin("geocoding", "1.0.0"),
    )

    assert resolution.plan.levels == (("clock", "geocoding"), ("weather",), ("app",))
    assert resolution.plan.order == ("clock", "geocoding", "weather", "app")
    assert list(resolution.selected) == ["clock", "geocoding", "weather", "app"]


def test_requires_lists_the_direct_dependencies() -> None:
    plan = resolve(
        plugin("app", "1.0.0", {"weather": "*"}),
        plugin("weather", "1.0.0", {"geocoding": "*"}),
        plugin("geocoding", "1.0.0"),
    ).plan

    assert plan.requires("app") == {"weather"}
    assert plan.requires("geocoding") == frozenset()
    assert plan.requires("not-in-plan") == frozenset()


def test_dependents_are_transitive_and_in_activation_order() -> None:
    plan = resolve(
        plugin("app", "1.0.0", {"weather": "*"}),
        plugin("weather", "1.0.0", {"geocoding": "*"}),
        plugin("maps", "1.0.0", {"geocoding": "*"}),
        plugin("geocoding", "1.0.0"),
        plugin("clock", "1.0.0"),
    ).plan

    assert plan.dependents("geocoding") == ("maps", "weather", "app")
    assert plan.dependents("app") == ()
    assert plan.dependents("not-in-plan") == ()


def test_a_plan_can_be_built_from_requirements_alone() -> None:
    plan = ActivationPlan.build({"b": ["a"], "a": [], "c": ["a", "outside"]})

    assert plan.levels == (("a",), ("b", "c"))


def test_building_a_plan_with_a_cycle_raises() -> None:
    with pytest.raises(ValueError, match="a, b"):
        ActivationPlan.build({"a": ["b"], "b": ["a"]})


def test_a_resolution_cannot_be_changed() -> None:
    resolution = resolve(plugin("weather", "1.0.0"))

    with pytest.raises(dataclasses.FrozenInstanceError):
        resolution.plan = ActivationPlan()  # type: ignore[misc]
    with pytest.raises(TypeError):
        resolution.selected["clock"] = plugin("clock", "1.0.0")  # type: ignore[index]
