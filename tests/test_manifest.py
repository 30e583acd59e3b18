"""The manifest model: every field of the product guide, and errors that name file and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from clawhost import Manifest, load_manifest, parse_manifest
from clawhost.errors import ManifestError, Problem

GUIDE_EXAMPLE = """
[plugin]
name = "weather"
version = "1.2.0"
description = "Weather information tool for ClawDesk"
author = "Jane Doe <jane@example.com>"
license = "MIT"
homepage = "https://github.com/jane/clawdesk-plugin-weather"
min_clawdesk_version = "0.5.0"

[plugin.capabilities]
# What the plugin provides
tools = ["get_weather", "get_forecast"]
channels = []
pipeline_stages = []
providers = []

[plugin.dependencies]
clawdesk-plugin-geocoding = ">=1.0.0"

[plugin.permissions]
network = ["api.openweathermap.org:443"]
filesystem = []
subprocess = false

[plugin.config]

[plugin.config.api_key]
type = "string"
required = true
env = "WEATHER_API_KEY"
description = "OpenWeatherMap API key"

[plugin.config.units]
type = "string"
default = "metric"
enum = ["metric", "imperial"]
description = "Temperature units"

[plugin.config.cache_ttl_secs]
type = "integer"
default = 300
description = "Cache duration for weather data"
"""


def problems_of(
    text: str, *, required: tuple[str, ...] = ("name", "version")
) -> dict[str | None, Problem]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(textwrap.dedent(text), "plugin.toml", required=required)
    return {problem.field: problem for problem in caught.value.problems}


def test_the_product_guide_manifest_is_valid() -> None:
    manifest = parse_manifest(GUIDE_EXAMPLE, "plugin.toml")

    assert manifest.name == "weather"
    assert manifest.version == "1.2.0"
    assert manifest.min_clawdesk_version == "0.5.0"
    assert manifest.manifest_version == 2  # the default since [plugin.http]
    assert manifest.capabilities.tools == ("get_weather", "get_forecast")
    assert manifest.permissions.network == ("api.openweathermap.org:443",)
    assert manifest.config["api_key"].required
    assert manifest.config["api_key"].is_secret  # read from the environment
    assert manifest.config["units"].enum == ("metric", "imperial")
    assert manifest.config["cache_ttl_secs"].default == 300


def test_a_distribution_style_dependency_key_names_the_plugin() -> None:
    manifest = parse_manifest(GUIDE_EXAMPLE, "plugin.toml")

    assert manifest.requirements == {"geocoding": ">=1.0.0"}


def test_load_manifest_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "plugin.toml"
    path.write_text(GUIDE_EXAMPLE, "utf-8")

    assert load_manifest(path).name == "weather"


def test_a_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(tmp_path / "plugin.toml")

    assert caught.value.file == tmp_path / "plugin.toml"
    assert caught.value.problems[0].message == "file not found"


def test_the_error_message_names_the_plugin_the_file_and_each_field() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest('[plugin]\nname = "named"\nversion = "x.y"\n', "/srv/p/plugin.toml")

    message = str(caught.value)
    assert (
        message.splitlines()[0] == "plugin 'named': invalid manifest /srv/p/plugin.toml (1 problem)"
    )
    assert "plugin.version: 'x.y' is not a valid version" in message
    assert caught.value.plugin == "named"


def test_unknown_keys_are_refused_with_the_keys_that_are_allowed() -> None:
    found = problems_of(
        """
        [plugin]
        name = "x"
        version = "1.0.0"
        colour = "blue"
        [plugin.capabilities]
        widgets = ["w"]
        [plugin.config.k]
        typ = "string"
        [other]
        """
    )

    assert found["plugin.colour"].message == "unknown key"
    assert "min_clawdesk_version" in (found["plugin.colour"].expected or "")
    assert "pipeline_stages" in (found["plugin.capabilities.widgets"].expected or "")
    assert "description" in (found["plugin.config.k.typ"].expected or "")
    assert found["other"].message == "unknown top-level table"


def test_a_file_without_a_plugin_table_says_so() -> None:
    found = problems_of("[tool.something]\nx = 1\n")

    assert found["plugin"].message == "missing"
    assert found["tool"].message == "unknown top-level table"


@pytest.mark.parametrize(
    ("field", "toml", "expected"),
    [
        ("plugin.name", 'name = "Weather"', "lower-case letters"),
        ("plugin.name", "name = 7", "a string"),
        ("plugin.version", 'version = "one"', "not a valid version"),
        ("plugin.min_clawdesk_version", 'min_clawdesk_version = "soon"', "not a valid version"),
        ("plugin.manifest_version", "manifest_version = 3", "upgrade clawhost"),
        ("plugin.manifest_version", 'manifest_version = "1"', "an integer"),
        ("plugin.entry", 'entry = "not valid!"', "'module' or 'module:object'"),
        ("plugin.capabilities", "capabilities = 3", "a table"),
        (
            "plugin.dependencies.geocoding",
            'dependencies = { geocoding = "^^1" }',
            "invalid requirement",
        ),
        (
            "plugin.dependencies.Geo Coding",
            'dependencies = { "Geo Coding" = "1" }',
            "not a plugin name",
        ),
        (
            "plugin.permissions.network[0]",
            'permissions = { network = ["example.com"] }',
            "host:port",
        ),
        (
            "plugin.permissions.network[0]",
            'permissions = { network = ["h:70000"] }',
            "port 1-65535",
        ),
        ("plugin.permissions.subprocess", 'permissions = { subprocess = "no" }', "true or false"),
    ],
)
def test_each_field_error_names_the_field_and_what_was_expected(
    field: str, toml: str, expected: str
) -> None:
    key = toml.split(" =", 1)[0]
    base = {"name": 'name = "x"', "version": 'version = "1.0.0"'}
    base.pop(key, None)
    found = problems_of("[plugin]\n" + "\n".join([*base.values(), toml]) + "\n")

    assert field in found, found
    assert expected in str(found[field])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ('type = "strng"', "one of: string, integer, float, boolean, array, table"),
        ('type = "integer"\ndefault = "3"', "default '3' is not of type integer"),
        ('type = "integer"\ndefault = true', "default True is not of type integer"),
        ('type = "string"\nenum = []', "enum must list at least one value"),
        ('type = "string"\nenum = ["a", 2]', "enum value 2 is not of type string"),
        ('type = "string"\nenum = ["a"]\ndefault = "b"', "default 'b' is not one of enum"),
        (
            'type = "string"\nrequired = true\ndefault = "x"',
            "a required option cannot have a default",
        ),
        ('env = "NOT-A-VAR"', "an environment variable name"),
    ],
)
def test_config_option_schemas_are_checked(option: str, expected: str) -> None:
    found = problems_of(f'[plugin]\nname = "x"\nversion = "1.0.0"\n[plugin.config.opt]\n{option}\n')

    (problem,) = found.values()
    assert problem.field is not None
    assert problem.field.startswith("plugin.config.opt")
    assert expected in str(problem)


def test_a_float_option_accepts_an_integer_default() -> None:
    manifest = parse_manifest(
        '[plugin]\nname = "x"\nversion = "1"\n[plugin.config.ratio]\ntype = "float"\ndefault = 1\n',
        "p",
    )

    assert manifest.config["ratio"].default == 1


def test_duplicate_capabilities_are_refused() -> None:
    found = problems_of(
        '[plugin]\nname = "x"\nversion = "1"\n[plugin.capabilities]\ntools = ["a", "a"]\n'
    )

    assert "'a' is listed twice" in found["plugin.capabilities"].message


def test_tool_names_follow_the_function_calling_rules() -> None:
    long_name = "t" * 65
    found = problems_of(
        f'[plugin]\nname = "x"\nversion = "1"\n[plugin.capabilities]\ntools = ["{long_name}"]\n'
    )

    assert "plugin.capabilities.tools[0]" in found


def test_required_fields_are_reported_with_the_other_problems() -> None:
    found = problems_of("[plugin]\ndescription = 3\n", required=("name", "version", "entry"))

    assert set(found) == {"plugin.name", "plugin.version", "plugin.entry", "plugin.description"}


def test_a_toml_syntax_error_carries_its_line() -> None:
    found = problems_of('[plugin]\nname = "x"\n\nversion = \n')

    problem = found[None]
    assert problem.line == 4
    assert problem.message.startswith("TOML syntax error")


def test_secrets_are_options_marked_secret_or_read_from_the_environment() -> None:
    manifest = Manifest.model_validate(
        {"config": {"a": {"secret": True}, "b": {"env": "B"}, "c": {"type": "integer"}}}
    )

    assert [key for key, option in manifest.config.items() if option.is_secret] == ["a", "b"]


def test_network_targets_accept_names_wildcards_ips_and_ipv6() -> None:
    targets = ["api.example.com:443", "*.example.com:443", "10.0.0.1:*", "[::1]:8080", "*:443"]

    manifest = Manifest.model_validate({"permissions": {"network": targets}})

    assert manifest.permissions.network == tuple(targets)


def test_the_manifest_is_immutable() -> None:
    manifest = parse_manifest(GUIDE_EXAMPLE, "plugin.toml")

    with pytest.raises(ValueError, match="frozen"):
        manifest.name = "other"  # type: ignore[misc]
