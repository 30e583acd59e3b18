"""Version requirements: PEP 440, and the caret/tilde ranges of npm and cargo."""

from __future__ import annotations

import pytest

from clawhost import parse_requirement
from clawhost.core.versions import InvalidRequirementText


@pytest.mark.parametrize(
    ("requirement", "inside", "outside"),
    [
        ("^1.5.0", ["1.5.0", "1.9.9", "1.5.1"], ["1.4.9", "2.0.0", "2.0.0a1"]),
        ("^1.5", ["1.5.0", "1.99"], ["1.4", "2.0"]),
        ("^1", ["1.0", "1.9.9"], ["0.9", "2.0"]),
        ("^0.2.3", ["0.2.3", "0.2.99"], ["0.2.2", "0.3.0"]),
        ("^0.2", ["0.2.0", "0.2.9"], ["0.3.0", "0.1.9"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2", "0.1.0"]),
        ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
        ("^0", ["0.0.1", "0.9.9"], ["1.0.0"]),
        ("~1.5.2", ["1.5.2", "1.5.9"], ["1.5.1", "1.6.0"]),
        ("~1.5", ["1.5.0", "1.5.9"], ["1.6.0", "1.4.9"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
        ("~0.2.3", ["0.2.3", "0.2.9"], ["0.3.0"]),
        ("1.2.3", ["1.2.3", "1.2.3.0"], ["1.2.4", "1.2.2"]),
        ("=1.2.3", ["1.2.3"], ["1.2.4"]),
        ("1.2.*", ["1.2.0", "1.2.99"], ["1.3.0"]),
        ("1.2.x", ["1.2.7"], ["1.3.0"]),
        ("1.x", ["1.0", "1.9"], ["2.0"]),
        ("*", ["0.0.1", "99.0"], ["1.0a1"]),
        (">=1.0.0", ["1.0.0", "5.0"], ["0.9"]),
        (">=1.0, <2.0", ["1.5"], ["2.0", "0.9"]),
        (">=1.0.0 <2.0.0", ["1.5.0"], ["2.0.0"]),
        ("~=1.5", ["1.5", "1.9"], ["2.0", "1.4"]),
        ("!=1.3.0", ["1.2.0", "1.4.0"], ["1.3.0"]),
        ("^1.2, !=1.3.0", ["1.2.0", "1.4.0"], ["1.3.0", "2.0.0"]),
    ],
)
def test_requirement_forms(requirement: str, inside: list[str], outside: list[str]) -> None:
    parsed = parse_requirement(requirement)

    assert [v for v in inside if not parsed.contains(v)] == []
    assert [v for v in outside if parsed.contains(v)] == []


@pytest.mark.parametrize(
    ("requirement", "inside", "outside"),
    [
        # npm: a pre-release lower bound admits pre-releases of that release only
        (
            "^1.2.3-beta.2",
            ["1.2.3b2", "1.2.3rc1", "1.2.3", "1.9.0"],
            ["1.2.3b1", "1.4.0a1", "2.0.0a1"],
        ),
        ("~1.2.3-rc.1", ["1.2.3rc1", "1.2.3", "1.2.9"], ["1.2.4a1", "1.3.0"]),
        # PEP 440: a specifier naming a pre-release admits pre-releases
        (">=1.0a1", ["1.0a1", "1.5a1", "2.0"], ["0.9"]),
        # ... and one that does not name one does not
        (">=1.0", ["1.0", "2.0"], ["1.5a1", "2.0rc1"]),
        ("^1.0.0", ["1.0.0"], ["1.1.0b1"]),
    ],
)
def test_pre_releases(requirement: str, inside: list[str], outside: list[str]) -> None:
    parsed = parse_requirement(requirement)

    assert [v for v in inside if not parsed.contains(v)] == []
    assert [v for v in outside if parsed.contains(v)] == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty requirement"),
        ("   ", "empty requirement"),
        ("abc", "not a valid version"),
        ("^", "unexpected"),
        ("^^1", "unexpected"),
        (">==1.0", "unexpected"),
        (">=1.0 || <3", "alternatives"),
        ("1.0 - 2.0", "hyphen ranges"),
        ("^1.x.3", "nothing may follow a wildcard"),
        ("1.*.2", "nothing may follow a wildcard"),
        ("^1.2-beta", "needs a full x.y.z version"),
        ("=>1.0", "unexpected"),
    ],
)
def test_invalid_requirements_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidRequirementText) as caught:
        parse_requirement(text)

    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_describe_shows_the_pep440_meaning_of_a_range() -> None:
    assert parse_requirement("^1.5.0").describe() == "^1.5.0 (meaning >=1.5.0, <2.0.0)"
    assert parse_requirement(">=1.0, <2.0").describe() == ">=1.0, <2.0"
    assert parse_requirement("*").describe() == "*"


def test_parsed_requirements_are_cached() -> None:
    assert parse_requirement("^3.1.4") is parse_requirement("^3.1.4")
