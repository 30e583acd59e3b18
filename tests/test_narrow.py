"""Narrowing: the versions that can still be part of a solution selecting every root.

These pin down the resolver's internal step that spares resolvelib most of its search.
"""

from __future__ import annotations

from packaging.version import Version

from clawhost import DiscoveredPlugin
from clawhost.resolution.candidates import CandidateTable, check_usable, group_candidates
from clawhost.resolution.narrow import narrow

from ._fake_plugins import make_plugin as plugin


def narrowed(*plugins: DiscoveredPlugin, roots: list[str]) -> dict[str, list[str]] | None:
    table = CandidateTable(
        group_candidates(plugins), host_version=Version("1.0"), disabled=frozenset(), pinned={}
    )
    usability = check_usable(table, removed=())
    narrowed = narrow(usability, set(usability.usable), roots)
    if narrowed is None:
        return None
    return {name: [str(c.version) for c in versions] for name, versions in narrowed.domains.items()}


LAGGARD = (
    plugin("old", "1.0.0", {"lib": "^1.0"}),
    plugin("old", "1.1.0", {"lib": "^1.1"}),
    plugin("lib", "1.1.0"),
    plugin("lib", "2.0.0"),
    plugin("modern", "1.0.0", {"lib": "^1.0"}),
    plugin("modern", "2.0.0", {"lib": "^2.0"}),
)


def test_a_root_whose_every_version_needs_an_older_major_narrows_the_dependency() -> None:
    assert narrowed(*LAGGARD, roots=["old", "lib", "modern"]) == {
        "lib": ["1.1.0"],
        "modern": ["1.0.0"],
        "old": ["1.1.0", "1.0.0"],
    }


def test_a_plugin_that_need_not_be_selected_narrows_nothing() -> None:
    assert narrowed(*LAGGARD, roots=["modern"]) == {
        "lib": ["2.0.0", "1.1.0"],
        "modern": ["2.0.0", "1.0.0"],
        "old": ["1.1.0", "1.0.0"],
    }


def test_roots_that_cannot_all_be_selected_have_no_narrowing() -> None:
    assert (
        narrowed(
            plugin("a", "1.0.0", {"lib": "^1.0"}),
            plugin("b", "1.0.0", {"lib": "^2.0"}),
            plugin("lib", "1.0.0"),
            plugin("lib", "2.0.0"),
            roots=["a", "b"],
        )
        is None
    )
