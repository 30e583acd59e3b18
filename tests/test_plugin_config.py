"""Each plugin's configuration, validated against its manifest: precedence, types, secrets."""

from __future__ import annotations

import logging
import pickle
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from clawhost import (
    ConfigOption,
    PluginConfig,
    load_host_config,
    load_manifest,
    validate_plugin_config,
)
from clawhost.errors import ConfigError, PluginConfigError, Problem

SECRET = "sk-live-4f9a8b7c6d5e"

WEATHER_SCHEMA: dict[str, ConfigOption] = {
    "api_key": ConfigOption(
        type="string", required=True, env="WEATHER_API_KEY", description="API key"
    ),
    "units": ConfigOption(type="string", default="metric", enum=("metric", "imperial")),
    "cache_ttl_secs": ConfigOption(type="integer", default=300),
}


def option(**fields: Any) -> ConfigOption:
    return ConfigOption.model_validate(fields)


def validate(
    schema: Mapping[str, ConfigOption],
    values: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> PluginConfig:
    return validate_plugin_config("weather", schema, values, environ=environ or {})


def problems_of(
    schema: Mapping[str, ConfigOption],
    values: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> dict[str | None, Problem]:
    with pytest.raises(PluginConfigError) as caught:
        validate(schema, values, environ)
    assert caught.value.plugin == "weather"
    return {problem.field: problem for problem in caught.value.problems}


def error_of(
    schema: Mapping[str, ConfigOption],
    values: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> PluginConfigError:
    with pytest.raises(PluginConfigError) as caught:
        validate(schema, values, environ)
    return caught.value


# -- precedence ---------------------------------------------------------------------------------


def test_the_product_guide_config_validates() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": SECRET, "units": "metric", "cache_ttl_secs": 600})

    assert dict(config) == {"api_key": SECRET, "units": "metric", "cache_ttl_secs": 600}
    assert config["api_key"] == SECRET
    assert config.plugin == "weather"


def test_a_value_in_the_config_wins_over_the_environment() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": "from-config"}, {"WEATHER_API_KEY": "from-env"})

    assert config["api_key"] == "from-config"
    assert config.sources["api_key"] == "config"


def test_the_environment_fills_a_value_the_config_leaves_out() -> None:
    config = validate(WEATHER_SCHEMA, {}, {"WEATHER_API_KEY": "from-env"})

    assert config["api_key"] == "from-env"
    assert config.sources["api_key"] == "env"


def test_the_environment_wins_over_the_default() -> None:
    schema = {"ttl": option(type="integer", default=300, env="TTL")}

    assert validate(schema, {}, {"TTL": "60"})["ttl"] == 60


def test_the_default_fills_what_neither_gives() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": "k"})

    assert config["units"] == "metric"
    assert config["cache_ttl_secs"] == 300
    assert config.sources["units"] == "default"


def test_an_optional_option_without_a_value_is_none() -> None:
    config = validate({"region": option(type="string")}, {})

    assert config["region"] is None
    assert config.sources["region"] == "unset"
    assert list(config) == ["region"]


def test_a_none_value_counts_as_not_given() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": "k", "units": None})

    assert config["units"] == "metric"


def test_an_empty_environment_variable_counts_as_unset() -> None:
    found = problems_of(WEATHER_SCHEMA, {}, {"WEATHER_API_KEY": ""})

    assert found["plugins.weather.config.api_key"].message.startswith("required")


def test_the_environment_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEATHER_API_KEY", "from-process")

    config = validate_plugin_config("weather", WEATHER_SCHEMA, {})

    assert config["api_key"] == "from-process"


# -- required, unknown, types, enums ------------------------------------------------------------


def test_a_missing_required_option_names_the_table_and_the_variable() -> None:
    found = problems_of(WEATHER_SCHEMA, {})

    assert found["plugins.weather.config.api_key"] == Problem(
        "plugins.weather.config.api_key",
        "required; set it in [plugins.weather.config] or the environment variable WEATHER_API_KEY",
        "a string",
    )


def test_a_missing_required_option_without_env_names_only_the_table() -> None:
    found = problems_of({"region": option(type="string", required=True)}, {})

    assert found["plugins.weather.config.region"].message == (
        "required; set it in [plugins.weather.config]"
    )


def test_an_unknown_key_is_refused_with_the_keys_allowed() -> None:
    found = problems_of(WEATHER_SCHEMA, {"api_key": "k", "unit": "metric"})

    assert found["plugins.weather.config.unit"] == Problem(
        "plugins.weather.config.unit", "unknown key", "one of: api_key, units, cache_ttl_secs"
    )


def test_a_plugin_without_options_refuses_every_key() -> None:
    found = problems_of({}, {"anything": 1})

    assert found["plugins.weather.config.anything"].expected == (
        "nothing: this plugin has no options"
    )


@pytest.mark.parametrize(
    ("kind", "value", "message", "expected"),
    [
        ("string", 3, "got 3", "a string"),
        ("string", True, "got True", "a string"),
        (
            "integer",
            "3",
            "got '3' (quoted: TOML numbers, true and false are written without quotes)",
            "an integer",
        ),
        ("integer", 3.0, "got 3.0", "an integer"),
        ("integer", True, "got True", "an integer"),
        (
            "float",
            "0.5",
            "got '0.5' (quoted: TOML numbers, true and false are written without quotes)",
            "a number",
        ),
        ("float", False, "got False", "a number"),
        ("boolean", 1, "got 1", "true or false"),
        (
            "boolean",
            "true",
            "got 'true' (quoted: TOML numbers, true and false are written without quotes)",
            "true or false",
        ),
        ("array", "a,b", "got 'a,b'", "an array"),
        ("array", {"a": 1}, "got {'a': 1}", "an array"),
        ("table", [1], "got [1]", "a table"),
        ("table", "x=1", "got 'x=1'", "a table"),
    ],
)
def test_types_are_strict(kind: str, value: Any, message: str, expected: str) -> None:
    found = problems_of({"opt": option(type=kind)}, {"opt": value})

    assert found["plugins.weather.config.opt"] == Problem(
        "plugins.weather.config.opt", message, expected
    )


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("string", "text"),
        ("string", ""),
        ("integer", -7),
        ("float", 0.25),
        ("boolean", False),
        ("array", [1, "two", [3]]),
        ("table", {"nested": {"deep": [1]}}),
    ],
)
def test_a_value_of_the_declared_type_is_accepted(kind: str, value: Any) -> None:
    assert validate({"opt": option(type=kind)}, {"opt": value})["opt"] == value


def test_a_float_option_takes_an_integer_as_a_float() -> None:
    config = validate({"ratio": option(type="float")}, {"ratio": 2})

    assert config["ratio"] == 2.0
    assert type(config["ratio"]) is float


def test_a_value_outside_the_enum_lists_the_allowed_values() -> None:
    found = problems_of(WEATHER_SCHEMA, {"api_key": "k", "units": "kelvin"})

    assert found["plugins.weather.config.units"] == Problem(
        "plugins.weather.config.units",
        "got 'kelvin', which is not allowed",
        "one of: 'metric', 'imperial'",
    )


def test_an_integer_enum_refuses_a_boolean() -> None:
    found = problems_of({"level": option(type="integer", enum=(0, 1))}, {"level": True})

    assert found["plugins.weather.config.level"].expected == "an integer"


def test_a_value_from_the_environment_is_checked_against_the_enum() -> None:
    schema = {"units": option(type="string", enum=("metric", "imperial"), env="UNITS")}

    found = problems_of(schema, {}, {"UNITS": "kelvin"})

    assert found["plugins.weather.config.units"].expected == "one of: 'metric', 'imperial'"


def test_every_problem_of_a_plugin_is_reported_together() -> None:
    error = error_of(WEATHER_SCHEMA, {"units": "kelvin", "cache_ttl_secs": "600", "colour": "blue"})

    assert [problem.field for problem in error.problems] == [
        "plugins.weather.config.colour",
        "plugins.weather.config.api_key",
        "plugins.weather.config.units",
        "plugins.weather.config.cache_ttl_secs",
    ]
    assert str(error).startswith("plugin 'weather': invalid configuration (4 problems)")


def test_the_error_names_the_config_file() -> None:
    with pytest.raises(PluginConfigError) as caught:
        validate_plugin_config(
            "weather", WEATHER_SCHEMA, {}, file=Path("/etc/clawdesk/config.toml"), environ={}
        )

    assert caught.value.file == Path("/etc/clawdesk/config.toml")
    assert "/etc/clawdesk/config.toml" in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_a_long_value_is_not_echoed_in_full() -> None:
    value = "v" * 500

    found = problems_of({"units": option(enum=("a", "b"))}, {"units": value})

    assert value not in str(found["plugins.weather.config.units"])
    assert len(found["plugins.weather.config.units"].message) < 100


# -- environment coercion ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("string", " spaced ", " spaced "),
        ("integer", "300", 300),
        ("integer", " -42 ", -42),
        ("integer", "+7", 7),
        ("float", "0.5", 0.5),
        ("float", "3", 3.0),
        ("float", "1e3", 1000.0),
        ("boolean", "true", True),
        ("boolean", "TRUE", True),
        ("boolean", "1", True),
        ("boolean", "yes", True),
        ("boolean", "Yes", True),
        ("boolean", "false", False),
        ("boolean", "0", False),
        ("boolean", "no", False),
        ("array", '["a", 1]', ["a", 1]),
        ("array", "[]", []),
        ("table", '{"k": [1, 2]}', {"k": [1, 2]}),
    ],
)
def test_an_environment_value_is_coerced_from_text(kind: str, text: str, value: Any) -> None:
    config = validate({"opt": option(type=kind, env="OPT")}, {}, {"OPT": text})

    assert config["opt"] == value
    assert type(config["opt"]) is type(value)


@pytest.mark.parametrize(
    ("kind", "text", "message", "expected"),
    [
        ("integer", "3.5", "environment variable OPT is not an integer", "an integer such as 300"),
        ("integer", "abc", "environment variable OPT is not an integer", "an integer such as 300"),
        (
            "integer",
            "1_000",
            "environment variable OPT is not an integer",
            "an integer such as 300",
        ),
        ("float", "fast", "environment variable OPT is not a number", "a number such as 0.5"),
        (
            "boolean",
            "maybe",
            "environment variable OPT is not true or false",
            "true, false, 1, 0, yes or no",
        ),
        (
            "array",
            "a,b",
            "environment variable OPT is not an array",
            'a JSON array such as ["a", "b"]',
        ),
        (
            "array",
            '{"a": 1}',
            "environment variable OPT does not hold an array",
            'a JSON array such as ["a", "b"]',
        ),
        (
            "table",
            "[1]",
            "environment variable OPT does not hold a table",
            'a JSON object such as {"key": "value"}',
        ),
        (
            "table",
            "{not json",
            "environment variable OPT is not a table",
            'a JSON object such as {"key": "value"}',
        ),
    ],
)
def test_an_environment_value_that_cannot_be_coerced_is_a_problem(
    kind: str, text: str, message: str, expected: str
) -> None:
    found = problems_of({"opt": option(type=kind, env="OPT")}, {}, {"OPT": text})

    assert found["plugins.weather.config.opt"] == Problem(
        "plugins.weather.config.opt", message, expected
    )


def test_a_coercion_failure_never_shows_the_environment_value() -> None:
    error = error_of({"opt": option(type="integer", env="OPT")}, {}, {"OPT": SECRET})

    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert error.__context__ is None  # int()'s own message would quote the text


# -- secrets ----------------------------------------------------------------------------------


def test_secret_keys_are_the_secret_and_env_backed_options() -> None:
    schema = {**WEATHER_SCHEMA, "password": option(secret=True)}

    config = validate(schema, {"api_key": "k", "password": "p"})

    assert config.secret_keys == frozenset({"api_key", "password"})


def test_masked_replaces_secrets_by_stars() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": SECRET})

    assert config.masked() == {"api_key": "***", "units": "metric", "cache_ttl_secs": 300}


def test_an_unset_secret_is_shown_as_unset() -> None:
    config = validate({"token": option(secret=True)}, {})

    assert config.masked() == {"token": None}


def test_repr_and_str_mask_secrets() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": SECRET})

    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in f"{config}"
    assert repr(config) == (
        "PluginConfig('weather', {'api_key': '***', 'units': 'metric', 'cache_ttl_secs': 300})"
    )


@pytest.mark.parametrize(
    ("schema", "values"),
    [
        ({"token": option(type="integer", secret=True)}, {"token": SECRET}),
        ({"token": option(type="string", secret=True)}, {"token": [SECRET]}),
        ({"token": option(type="array", secret=True)}, {"token": {"k": SECRET}}),
        ({"token": option(type="string", secret=True, enum=("a", "b"))}, {"token": SECRET}),
        ({"token": option(type="integer", env="TOKEN")}, {"token": SECRET}),
    ],
)
def test_a_secret_never_appears_in_the_error(
    schema: dict[str, ConfigOption], values: dict[str, Any]
) -> None:
    error = error_of(schema, values)

    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert all(SECRET not in str(problem) for problem in error.problems)
    assert SECRET not in repr(error.problems)
    assert error.problems[0].message.startswith("got a")
    # Nothing chained either: a traceback would print pydantic's error, input and all.
    assert error.__cause__ is None
    assert error.__context__ is None


def test_a_secret_never_appears_in_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    schema = {**WEATHER_SCHEMA, "token": option(type="integer", secret=True)}

    validate(schema, {}, {"WEATHER_API_KEY": SECRET})
    with pytest.raises(PluginConfigError):
        validate(schema, {"token": SECRET}, {"WEATHER_API_KEY": SECRET})
    logging.getLogger("test").info("config: %s", validate(schema, {"api_key": SECRET}))

    assert caplog.records  # something was logged, and none of it holds the secret
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in caplog.text


def test_a_secret_from_the_environment_is_logged_by_variable_name_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="clawhost.config")

    validate(WEATHER_SCHEMA, {}, {"WEATHER_API_KEY": SECRET})

    assert "api_key read from WEATHER_API_KEY" in caplog.text
    assert SECRET not in caplog.text


# -- the PluginConfig mapping -------------------------------------------------------------------


def test_a_plugin_config_is_a_read_only_mapping() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": "k"})

    assert isinstance(config, Mapping)
    assert len(config) == 3
    assert "units" in config
    assert config.get("missing") is None
    with pytest.raises(TypeError):
        config["units"] = "imperial"  # type: ignore[index]
    with pytest.raises(AttributeError):
        config._values = {}  # type: ignore[misc]


def test_values_are_plain_python_values() -> None:
    schema = {
        "name": option(type="string"),
        "count": option(type="integer"),
        "ratio": option(type="float"),
        "flag": option(type="boolean"),
        "items": option(type="array"),
        "table": option(type="table"),
    }
    values = {
        "name": "n",
        "count": 1,
        "ratio": 1.5,
        "flag": True,
        "items": [1],
        "table": {"a": 1},
    }

    config = validate(schema, values)

    assert {key: type(value) for key, value in config.items()} == {
        "name": str,
        "count": int,
        "ratio": float,
        "flag": bool,
        "items": list,
        "table": dict,
    }


def test_changing_a_value_does_not_change_the_host_config_or_the_default() -> None:
    raw = {"items": [1, 2]}
    schema = {"items": option(type="array"), "tags": option(type="array", default=["a"])}

    config = validate(schema, raw)
    config["items"].append(3)
    config["tags"].append("b")

    assert raw == {"items": [1, 2]}
    assert schema["tags"].default == ["a"]
    assert validate(schema, raw)["tags"] == ["a"]


def test_a_plugin_config_pickles_with_its_secret_keys() -> None:
    config = validate(WEATHER_SCHEMA, {"api_key": "k"})

    copy = pickle.loads(pickle.dumps(config))

    assert copy == config
    assert copy.secret_keys == config.secret_keys
    assert copy.sources == config.sources


def test_plugin_configs_compare_by_their_values() -> None:
    assert validate(WEATHER_SCHEMA, {"api_key": "k"}) == {
        "api_key": "k",
        "units": "metric",
        "cache_ttl_secs": 300,
    }


# -- end to end -------------------------------------------------------------------------------


MANIFEST = """
[plugin]
name = "weather"
version = "1.2.0"

[plugin.config.api_key]
type = "string"
required = true
env = "WEATHER_API_KEY"

[plugin.config.units]
type = "string"
default = "metric"
enum = ["metric", "imperial"]

[plugin.config.cache_ttl_secs]
type = "integer"
default = 300
"""


def test_a_config_file_validates_against_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "plugin.toml").write_text(MANIFEST, "utf-8")
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        textwrap.dedent(
            """
            [plugins.weather]
            enabled = true
            [plugins.weather.config]
            api_key = "${WEATHER_API_KEY}"
            units = "${UNITS:-metric}"
            cache_ttl_secs = 600
            """
        ),
        "utf-8",
    )
    environ = {"WEATHER_API_KEY": SECRET}
    manifest = load_manifest(tmp_path / "plugin.toml")
    host = load_host_config(config_file, environ=environ)

    config = validate_plugin_config(
        "weather",
        manifest.config,
        host.settings_for("weather").config,
        file=host.file,
        environ=environ,
    )

    assert dict(config) == {"api_key": SECRET, "units": "metric", "cache_ttl_secs": 600}
    assert SECRET not in repr(config)
