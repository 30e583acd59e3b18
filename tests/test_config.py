"""The host configuration (config.toml): defaults, every error, interpolation, paths, write-back."""

from __future__ import annotations

import stat
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clawhost import (
    HostConfig,
    PluginsConfig,
    PluginSettings,
    SandboxConfig,
    load_host_config,
)
from clawhost.config.host import RESERVED_PLUGINS_KEYS, set_plugin_enabled
from clawhost.errors import ConfigError, Problem

GUIDE_CONFIG = """
[plugins]
dirs = ["./plugins"]
hot_reload = true
watch_interval_secs = 2
lazy_activation = true
entry_point_group = "clawdesk.plugins"
discovery_cache = false
call_timeout_secs = 45

[plugins.sandbox]
max_memory_mb = 256
max_cpu_time_secs = 30
fs_allowed = ["${CLAWDESK_DATA_DIR}/plugins/"]
net_allowed = ["api.example.com:443"]
allow_subprocess = false
max_concurrency = 4

[plugins.weather]
enabled = true

[plugins.weather.config]
api_key = "${WEATHER_API_KEY}"
units = "metric"
cache_ttl_secs = 600

[plugins.weather.sandbox]
max_concurrency = 8
"""

GUIDE_ENV = {"CLAWDESK_DATA_DIR": "/var/lib/clawdesk", "WEATHER_API_KEY": "k-123"}


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), "utf-8")
    return path


def problems_of(
    tmp_path: Path, text: str, environ: Mapping[str, str] | None = None
) -> dict[str | None, Problem]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_host_config(path, environ=environ or {})
    assert caught.value.file == path
    return {problem.field: problem for problem in caught.value.problems}


def plugin_value(text: str, environ: Mapping[str, str]) -> object:
    """The value of ``text`` as a plugin config value, after interpolation."""
    config = HostConfig.from_mapping({"plugins": {"p": {"config": {"v": text}}}}, environ=environ)
    return config.settings_for("p").config["v"]


# -- loading and defaults -------------------------------------------------------------------


def test_the_product_guide_config_loads(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, GUIDE_CONFIG), environ=GUIDE_ENV)

    plugins = config.plugins
    assert plugins.dirs == (tmp_path / "plugins",)
    assert plugins.hot_reload is True
    assert plugins.watch_interval_secs == 2.0
    assert plugins.lazy_activation is True
    assert plugins.entry_point_group == "clawdesk.plugins"
    assert plugins.discovery_cache is False
    assert plugins.call_timeout_secs == 45.0
    assert plugins.sandbox == SandboxConfig(
        max_memory_mb=256,
        max_cpu_time_secs=30,
        fs_allowed=(Path("/var/lib/clawdesk/plugins"),),
        net_allowed=("api.example.com:443",),
        allow_subprocess=False,
        max_concurrency=4,
    )
    weather = config.settings_for("weather")
    assert weather.enabled is True
    assert weather.config == {"api_key": "k-123", "units": "metric", "cache_ttl_secs": 600}


def test_the_file_and_its_folder_are_recorded(tmp_path: Path) -> None:
    path = write(tmp_path, "")

    config = load_host_config(path)

    assert config.file == path
    assert config.base_dir == tmp_path


def test_a_file_without_a_plugins_table_gives_every_default(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, "# nothing configured yet\n"))

    assert config.plugins == PluginsConfig()
    assert config.plugins.dirs == ()
    assert config.plugins.hot_reload is False
    assert config.plugins.watch_interval_secs == 2.0
    assert config.plugins.lazy_activation is False
    assert config.plugins.entry_point_group == "clawdesk.plugins"
    assert config.plugins.discovery_cache is True
    assert config.plugins.call_timeout_secs is None
    assert config.plugins.plugin_settings == {}


def test_the_sandbox_defaults() -> None:
    sandbox = SandboxConfig()

    assert sandbox.max_memory_mb is None
    assert sandbox.max_cpu_time_secs == 30.0
    assert sandbox.fs_allowed == ()
    assert sandbox.net_allowed == ()
    assert sandbox.allow_subprocess is False
    assert sandbox.max_concurrency == 4


def test_a_host_config_built_without_a_file_is_all_defaults() -> None:
    config = HostConfig()

    assert config.file is None
    assert config.plugins == PluginsConfig()
    assert config.sandbox_for("anything") == SandboxConfig()
    assert config.settings_for("anything") == PluginSettings()


def test_a_plugin_absent_from_the_file_gets_default_settings(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, GUIDE_CONFIG), environ=GUIDE_ENV)

    settings = config.settings_for("geocoding")

    assert settings.enabled is True
    assert settings.config == {}


def test_a_plugin_can_be_disabled(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, "[plugins.weather]\nenabled = false\n"))

    assert config.settings_for("weather").enabled is False


def test_a_plugin_with_only_a_config_table_is_enabled(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, '[plugins.weather.config]\nunits = "metric"\n'))

    assert config.settings_for("weather").enabled is True
    assert config.settings_for("weather").config == {"units": "metric"}


def test_a_float_setting_takes_an_integer(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, "[plugins.sandbox]\nmax_cpu_time_secs = 5\n"))

    assert config.plugins.sandbox.max_cpu_time_secs == 5.0
    assert isinstance(config.plugins.sandbox.max_cpu_time_secs, float)


def test_the_models_are_frozen() -> None:
    config = HostConfig()

    with pytest.raises(ValueError, match="frozen"):
        config.plugins.sandbox.max_concurrency = 10  # type: ignore[misc]


# -- errors -------------------------------------------------------------------------------------


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_host_config(tmp_path / "config.toml")

    assert caught.value.file == tmp_path / "config.toml"
    assert caught.value.problems == (Problem(None, "file not found"),)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[plugins]\ndirs = ['\xff']\n")

    with pytest.raises(ConfigError) as caught:
        load_host_config(path)

    assert caught.value.problems[0].message.startswith("not UTF-8 text")


def test_a_toml_syntax_error_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[plugins]\nhot_reload = true\ndirs = [\n")

    with pytest.raises(ConfigError) as caught:
        load_host_config(path)

    (problem,) = caught.value.problems
    assert problem.field is None
    assert problem.message.startswith("TOML syntax error")
    assert problem.line is not None
    assert problem.line >= 3
    assert str(path) in str(caught.value)
    assert f"(line {problem.line})" in str(caught.value)


def test_from_toml_reports_a_syntax_error_without_a_file() -> None:
    with pytest.raises(ConfigError) as caught:
        HostConfig.from_toml("[plugins\n")

    assert caught.value.file is None
    assert caught.value.problems[0].line == 1


def test_a_near_miss_of_the_plugins_table_is_refused(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[plugin]\nhot_reload = true\n")

    assert found["plugin"].message == "unknown top-level table; did you mean [plugins]?"
    assert found["plugin"].expected == "[plugins]"


def test_the_applications_own_tables_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[gateway]\nport = 8080\n[llm]\nmodel = 'x'\n[plugins]\nhot_reload = true\n")

    assert load_host_config(path).plugins.hot_reload is True


def test_plugins_must_be_a_table(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "plugins = 3\n")

    assert found["plugins"].message == "got an integer"
    assert found["plugins"].expected == "a [plugins] table"


def test_an_unknown_key_of_plugins_is_refused_with_the_keys_allowed(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[plugins]\nhot_reloading = true\n")

    problem = found["plugins.hot_reloading"]
    assert problem.message == "unknown key"
    assert "hot_reload" in (problem.expected or "")
    assert "[plugins.<name>] table" in (problem.expected or "")


def test_an_unknown_key_of_the_sandbox_is_refused(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[plugins.sandbox]\nmax_memory = 3\n")

    problem = found["plugins.sandbox.max_memory"]
    assert problem.message == "unknown key"
    assert "max_memory_mb" in (problem.expected or "")


def test_an_unknown_key_of_a_plugin_section_is_refused(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[plugins.weather]\nenable = true\n")

    problem = found["plugins.weather.enable"]
    assert problem.message == "unknown key"
    assert problem.expected == "one of: enabled, config, sandbox, isolation, channels"


def test_an_unknown_key_of_a_plugin_sandbox_is_refused(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[plugins.weather.sandbox]\nmax_threads = 3\n")

    assert found["plugins.weather.sandbox.max_threads"].message == "unknown key"
    assert "max_concurrency" in (found["plugins.weather.sandbox.max_threads"].expected or "")


def test_a_host_setting_cannot_name_a_plugin_section(tmp_path: Path) -> None:
    found = problems_of(tmp_path, "[plugins.dirs]\nenabled = true\n")

    assert "host setting" in found["plugins.dirs"].message
    assert found["plugins.dirs"].expected == "an array of paths"


def test_the_reserved_names_are_the_host_settings() -> None:
    assert "sandbox" in RESERVED_PLUGINS_KEYS
    assert "dirs" in RESERVED_PLUGINS_KEYS
    assert "plugin_settings" not in RESERVED_PLUGINS_KEYS


def test_a_plugin_section_must_have_a_plugin_name(tmp_path: Path) -> None:
    found = problems_of(tmp_path, '[plugins."Weather Plugin"]\nenabled = true\n')

    problem = found['plugins."Weather Plugin"']
    assert problem.message == "not a plugin name"
    assert "lower-case" in (problem.expected or "")


@pytest.mark.parametrize(
    ("text", "field", "message", "expected"),
    [
        (
            '[plugins.sandbox]\nmax_concurrency = "8"\n',
            "plugins.sandbox.max_concurrency",
            "got '8' (quoted: TOML numbers, true and false are written without quotes)",
            "an integer >= 1",
        ),
        (
            "[plugins.sandbox]\nmax_concurrency = 0\n",
            "plugins.sandbox.max_concurrency",
            "got 0",
            "an integer >= 1",
        ),
        (
            "[plugins.sandbox]\nmax_concurrency = 2.5\n",
            "plugins.sandbox.max_concurrency",
            "got 2.5",
            "an integer >= 1",
        ),
        (
            "[plugins.sandbox]\nmax_cpu_time_secs = true\n",
            "plugins.sandbox.max_cpu_time_secs",
            "got True",
            "a number of seconds > 0",
        ),
        (
            "[plugins.sandbox]\nmax_cpu_time_secs = -1\n",
            "plugins.sandbox.max_cpu_time_secs",
            "got -1",
            "a number of seconds > 0",
        ),
        (
            "[plugins.sandbox]\nmax_memory_mb = 0\n",
            "plugins.sandbox.max_memory_mb",
            "got 0",
            "an integer >= 1",
        ),
        (
            '[plugins.sandbox]\nnet_allowed = ["api.example.com"]\n',
            "plugins.sandbox.net_allowed[0]",
            "got 'api.example.com', which is not 'host:port' (port a number or *)",
            "'host:port': a name, *.name, an IP or [IPv6]; a port 1-65535 or *",
        ),
        (
            '[plugins.weather.sandbox]\nnet_allowed = ["api.example.com:99999"]\n',
            "plugins.weather.sandbox.net_allowed[0]",
            "got 'api.example.com:99999': port 99999 is not in 1-65535",
            "'host:port': a name, *.name, an IP or [IPv6]; a port 1-65535 or *",
        ),
        (
            '[plugins.sandbox]\nfs_allowed = [""]\n',
            "plugins.sandbox.fs_allowed[0]",
            "an empty path",
            "an array of paths",
        ),
        (
            "[plugins.sandbox]\nfs_allowed = [3]\n",
            "plugins.sandbox.fs_allowed[0]",
            "got 3",
            "an array of paths",
        ),
        (
            '[plugins.sandbox]\nallow_subprocess = "no"\n',
            "plugins.sandbox.allow_subprocess",
            "got 'no' (quoted: TOML numbers, true and false are written without quotes)",
            "true or false",
        ),
        (
            '[plugins]\ndirs = "./plugins"\n',
            "plugins.dirs",
            "got './plugins'",
            "an array of paths",
        ),
        (
            "[plugins]\nsandbox = 3\n",
            "plugins.sandbox",
            "got 3",
            "a table",
        ),
        (
            "[plugins]\nwatch_interval_secs = 0\n",
            "plugins.watch_interval_secs",
            "got 0",
            "a number of seconds > 0",
        ),
        (
            '[plugins]\nentry_point_group = "no spaces"\n',
            "plugins.entry_point_group",
            "got 'no spaces', which is not allowed here",
            "an entry-point group name (letters, digits, '.', '_' or '-')",
        ),
        (
            '[plugins.weather]\nenabled = "yes"\n',
            "plugins.weather.enabled",
            "got 'yes' (quoted: TOML numbers, true and false are written without quotes)",
            "true or false",
        ),
        (
            "[plugins.weather]\nconfig = 3\n",
            "plugins.weather.config",
            "got 3",
            "a table",
        ),
        (
            "[plugins.weather]\nsandbox = []\n",
            "plugins.weather.sandbox",
            "got []",
            "a table",
        ),
        (
            "[plugins.weather.sandbox]\nmax_concurrency = 0\n",
            "plugins.weather.sandbox.max_concurrency",
            "got 0",
            "an integer >= 1",
        ),
    ],
)
def test_a_wrong_value_names_the_field_and_what_was_expected(
    tmp_path: Path, text: str, field: str, message: str, expected: str
) -> None:
    found = problems_of(tmp_path, text)

    assert found[field] == Problem(field, message, expected)


def test_every_problem_of_the_file_is_reported_together(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plugins]
        hot_reload = "yes"
        colour = "blue"
        [plugins.sandbox]
        max_concurrency = 0
        fs_allowed = ["${MISSING}"]
        [plugins.weather]
        enable = true
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_host_config(path, environ={})

    fields = {problem.field for problem in caught.value.problems}
    assert fields == {
        "plugins.hot_reload",
        "plugins.colour",
        "plugins.sandbox.max_concurrency",
        "plugins.sandbox.fs_allowed[0]",
        "plugins.weather.enable",
    }
    assert str(caught.value).startswith(f"invalid {path} (5 problems)")


def test_a_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        HostConfig.from_mapping({"plugins": {"bogus": 1}})


# -- interpolation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "environ", "value"),
    [
        ("${A}", {"A": "alpha"}, "alpha"),
        ("${A}/plugins/", {"A": "/data"}, "/data/plugins/"),
        ("x-${A}-y-${B}-z", {"A": "1", "B": "2"}, "x-1-y-2-z"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("$", {}, "$"),
        ("costs $5", {}, "costs $5"),
        ("ends with $", {}, "ends with $"),
        ("$$", {}, "$"),
        ("$${A}", {"A": "no"}, "${A}"),
        ("$$$${A}", {}, "$${A}"),
        ("$$${A}", {"A": "v"}, "$v"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-a:-b}", {}, "a:-b"),
        ("${A:-cost $$5}", {}, "cost $5"),
        ("${A}", {"A": ""}, ""),
        ("${A}", {"A": "${B}"}, "${B}"),
        ("${A}", {"A": "$$"}, "$$"),
        ("${A}", {"A": "température ☀"}, "température ☀"),
        ("prefix ✓ ${A}", {"A": "日本"}, "prefix ✓ 日本"),
        ("${_A1}", {"_A1": "underscore"}, "underscore"),
        ("no variables at all", {}, "no variables at all"),
        ("{A}", {"A": "x"}, "{A}"),
    ],
)
def test_interpolation(text: str, environ: dict[str, str], value: str) -> None:
    assert plugin_value(text, environ) == value


@given(st.text())
def test_escaping_every_dollar_gives_any_text_back(text: str) -> None:
    assert plugin_value(text.replace("$", "$$"), {}) == text


@given(st.text(alphabet=st.characters(blacklist_characters="$")))
def test_text_without_a_dollar_is_left_alone(text: str) -> None:
    assert plugin_value(text, {}) == text


@given(st.text())
def test_a_variables_value_is_inserted_verbatim(value: str) -> None:
    assert plugin_value("<${A}>", {"A": value}) == f"<{value}>"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${}", "empty reference '${}'"),
        ("${", "'${' at character 1 is never closed"),
        ("abc ${A", "'${' at character 5 is never closed"),
        ("${1A}", "'1A' is not a variable name"),
        ("${A B}", "'A B' is not a variable name"),
        ("${:-x}", "a reference names no variable"),
        ("${A:-${B}}", "a fallback cannot contain '${' (interpolation is not recursive)"),
        ("${A-x}", "'A-x' is not a variable name"),
    ],
)
def test_a_malformed_reference_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plugin_value(text, {"A": "set"})

    (problem,) = caught.value.problems
    assert problem.field == "plugins.p.config.v"
    assert problem.message == message


def test_an_unset_variable_names_the_file_the_key_and_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, '[plugins.weather.config]\napi_key = "${WEATHER_API_KEY}"\n')

    with pytest.raises(ConfigError) as caught:
        load_host_config(path, environ={})

    (problem,) = caught.value.problems
    assert problem.field == "plugins.weather.config.api_key"
    assert problem.message == "environment variable WEATHER_API_KEY is not set"
    assert "${WEATHER_API_KEY:-fallback}" in (problem.expected or "")
    assert str(path) in str(caught.value)


def test_an_unset_variable_is_never_left_as_literal_text() -> None:
    with pytest.raises(ConfigError):
        plugin_value("a ${NOPE} b", {})


def test_an_empty_variable_without_a_fallback_is_an_empty_string() -> None:
    assert plugin_value("[${A}]", {"A": ""}) == "[]"


def test_variables_in_lists_and_nested_tables_are_substituted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plugins]
        dirs = ["${HOME_DIR}/plugins", "./local"]
        [plugins.sandbox]
        net_allowed = ["${HOST}:443", "other.example.com:${PORT}"]
        [plugins.weather.config]
        hosts = ["${HOST}", ["${PORT}"]]
        nested = { url = "https://${HOST}/v1", count = 3 }
        """,
    )

    config = load_host_config(
        path, environ={"HOME_DIR": "/srv", "HOST": "api.example.com", "PORT": "8443"}
    )

    assert config.plugins.dirs == (Path("/srv/plugins"), tmp_path / "local")
    assert config.plugins.sandbox.net_allowed == ("api.example.com:443", "other.example.com:8443")
    assert config.settings_for("weather").config == {
        "hosts": ["api.example.com", ["8443"]],
        "nested": {"url": "https://api.example.com/v1", "count": 3},
    }


def test_keys_and_non_string_values_are_not_interpolated() -> None:
    config = HostConfig.from_mapping(
        {"plugins": {"p": {"config": {"${A}": 3, "flag": True}}}}, environ={"A": "x"}
    )

    assert config.settings_for("p").config == {"${A}": 3, "flag": True}


def test_every_unset_variable_is_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plugins.sandbox]
        fs_allowed = ["${ONE}", "${TWO}"]
        [plugins.weather.config]
        key = "${THREE}"
        """,
    )

    with pytest.raises(ConfigError) as caught:
        load_host_config(path, environ={})

    assert [problem.field for problem in caught.value.problems] == [
        "plugins.sandbox.fs_allowed[0]",
        "plugins.sandbox.fs_allowed[1]",
        "plugins.weather.config.key",
    ]


def test_the_environment_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAWHOST_TEST_DIR", "/from/env")
    path = write(tmp_path, '[plugins]\ndirs = ["${CLAWHOST_TEST_DIR}"]\n')

    assert load_host_config(path).plugins.dirs == (Path("/from/env"),)


def test_an_interpolated_value_is_not_echoed_in_a_type_error(tmp_path: Path) -> None:
    found = problems_of(
        tmp_path,
        '[plugins.sandbox]\nmax_concurrency = "${LIMIT}"\n',
        environ={"LIMIT": "s3cr3t-value"},
    )

    problem = found["plugins.sandbox.max_concurrency"]
    assert "s3cr3t-value" not in str(problem)
    assert problem.message.startswith("got a string")


def test_a_long_value_is_not_echoed_in_full(tmp_path: Path) -> None:
    value = "x" * 200
    found = problems_of(tmp_path, f'[plugins.sandbox]\nmax_concurrency = "{value}"\n')

    assert value not in str(found["plugins.sandbox.max_concurrency"])
    assert "..." in found["plugins.sandbox.max_concurrency"].message


def test_plugin_config_values_stay_out_of_repr() -> None:
    config = HostConfig.from_mapping(
        {"plugins": {"weather": {"config": {"api_key": "${KEY}"}}}}, environ={"KEY": "s3cr3t"}
    )

    assert "s3cr3t" not in repr(config)
    assert "s3cr3t" not in str(config)
    assert "s3cr3t" not in repr(config.settings_for("weather"))


# -- paths ------------------------------------------------------------------------------------


def test_relative_paths_are_resolved_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "clawdesk"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    path = write(
        folder,
        """
        [plugins]
        dirs = ["./plugins", "more", "../shared/plugins", "/opt/plugins"]
        [plugins.sandbox]
        fs_allowed = ["data/", "${REL}/cache"]
        """,
    )

    config = load_host_config(path, environ={"REL": "relative"})

    assert config.plugins.dirs == (
        folder / "plugins",
        folder / "more",
        tmp_path / "etc" / "shared" / "plugins",
        Path("/opt/plugins"),
    )
    assert config.plugins.sandbox.fs_allowed == (folder / "data", folder / "relative" / "cache")


def test_a_relative_config_path_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, '[plugins]\ndirs = ["plugins"]\n')
    monkeypatch.chdir(tmp_path)

    config = load_host_config("config.toml")

    assert config.file == tmp_path / "config.toml"
    assert config.plugins.dirs == (tmp_path / "plugins",)


def test_a_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(
        tmp_path, '[plugins]\ndirs = ["~/plugins"]\n[plugins.sandbox]\nfs_allowed = ["~"]\n'
    )

    config = load_host_config(path)

    assert config.plugins.dirs == (tmp_path / "home" / "plugins",)
    assert config.plugins.sandbox.fs_allowed == (tmp_path / "home",)


def test_a_tilde_from_a_variable_is_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write(tmp_path, '[plugins.sandbox]\nfs_allowed = ["${DATA}/plugins/"]\n')

    config = load_host_config(path, environ={"DATA": "~/.local/share/clawdesk"})

    assert config.plugins.sandbox.fs_allowed == (
        tmp_path / "home" / ".local" / "share" / "clawdesk" / "plugins",
    )


def test_from_mapping_resolves_against_the_given_folder(tmp_path: Path) -> None:
    config = HostConfig.from_mapping({"plugins": {"dirs": ["p"]}}, base_dir=tmp_path)

    assert config.base_dir == tmp_path
    assert config.file is None
    assert config.plugins.dirs == (tmp_path / "p",)


def test_from_toml_without_a_file_resolves_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    config = HostConfig.from_toml('[plugins]\ndirs = ["p"]\n')

    assert config.plugins.dirs == (tmp_path / "p",)


def test_from_toml_with_a_file_resolves_against_its_folder(tmp_path: Path) -> None:
    config = HostConfig.from_toml('[plugins]\ndirs = ["p"]\n', file=tmp_path / "c.toml")

    assert config.plugins.dirs == (tmp_path / "p",)


# -- per-plugin sandbox -----------------------------------------------------------------------


def test_a_plugin_sandbox_overrides_only_the_keys_it_gives(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, GUIDE_CONFIG), environ=GUIDE_ENV)

    weather = config.sandbox_for("weather")

    assert weather.max_concurrency == 8
    assert weather.max_memory_mb == 256
    assert weather.max_cpu_time_secs == 30.0
    assert weather.net_allowed == ("api.example.com:443",)
    assert config.plugins.sandbox.max_concurrency == 4  # the defaults are untouched


def test_a_plugin_without_overrides_gets_the_sandbox_defaults(tmp_path: Path) -> None:
    config = load_host_config(write(tmp_path, GUIDE_CONFIG), environ=GUIDE_ENV)

    assert config.sandbox_for("geocoding") == config.plugins.sandbox


def test_a_list_override_replaces_the_default_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plugins.sandbox]
        net_allowed = ["a.example.com:443"]
        fs_allowed = ["/data"]
        [plugins.weather.sandbox]
        net_allowed = ["b.example.com:443"]
        fs_allowed = ["cache"]
        allow_subprocess = true
        max_memory_mb = 64
        max_cpu_time_secs = 2.5
        """,
    )

    sandbox = load_host_config(path).sandbox_for("weather")

    assert sandbox == SandboxConfig(
        max_memory_mb=64,
        max_cpu_time_secs=2.5,
        fs_allowed=(tmp_path / "cache",),
        net_allowed=("b.example.com:443",),
        allow_subprocess=True,
        max_concurrency=4,
    )


def test_an_empty_list_override_grants_nothing(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [plugins.sandbox]
        net_allowed = ["a.example.com:443"]
        [plugins.weather.sandbox]
        net_allowed = []
        """,
    )

    assert load_host_config(path).sandbox_for("weather").net_allowed == ()


# -- set_plugin_enabled -----------------------------------------------------------------------

COMMENTED = """\
# ClawDesk gateway configuration
# (kept by hand; comments matter)

[plugins]
dirs = ["./plugins"]   # directory plugins
hot_reload = false

# Sandbox defaults for every plugin
[plugins.sandbox]
max_concurrency = 4    # per plugin

[plugins.weather]      # the weather tool
enabled = true         # flip me
# api key comes from the environment
[plugins.weather.config]
api_key = "${WEATHER_API_KEY}"
units   = "metric"

[plugins.geocoding]
# disabled while it is rewritten
enabled = false

# trailing comment
"""


def test_set_plugin_enabled_changes_only_that_value(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)

    set_plugin_enabled(path, "weather", False)

    expected = COMMENTED.replace(
        "enabled = true         # flip me", "enabled = false         # flip me"
    )
    assert path.read_text("utf-8") == expected


def test_set_plugin_enabled_round_trips(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)

    set_plugin_enabled(path, "weather", False)
    set_plugin_enabled(path, "weather", True)
    set_plugin_enabled(path, "geocoding", False)

    # "true" is one letter shorter than "false": the value's padding was kept as written.
    assert path.read_text("utf-8") == COMMENTED


def test_set_plugin_enabled_adds_the_key_to_an_existing_section(tmp_path: Path) -> None:
    text = '[plugins.weather]\n# about weather\nunits = "metric"\n\n[plugins.other]\nx = 1\n'
    path = write(tmp_path, text)

    set_plugin_enabled(path, "weather", False)

    assert path.read_text("utf-8") == (
        '[plugins.weather]\n# about weather\nunits = "metric"\nenabled = false\n\n'
        "[plugins.other]\nx = 1\n"
    )


def test_set_plugin_enabled_creates_a_missing_table(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)

    set_plugin_enabled(path, "rag", False)

    assert path.read_text("utf-8") == COMMENTED + "\n[plugins.rag]\nenabled = false\n"
    config = load_host_config(path, environ={"WEATHER_API_KEY": "k"})
    assert config.settings_for("rag").enabled is False
    assert config.settings_for("weather").enabled is True


def test_set_plugin_enabled_creates_the_plugins_table(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here yet\n")

    set_plugin_enabled(path, "weather", True)

    assert path.read_text("utf-8") == "# nothing here yet\n\n[plugins.weather]\nenabled = true\n"


def test_set_plugin_enabled_gives_a_section_that_only_had_sub_tables_its_header(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '# c\n[plugins.weather.config]\nunits = "metric"  # k\n')

    set_plugin_enabled(path, "weather", False)

    assert path.read_text("utf-8") == (
        "# c\n[plugins.weather]\nenabled = false\n\n"
        '[plugins.weather.config]\nunits = "metric"  # k\n'
    )
    assert load_host_config(path).settings_for("weather").config == {"units": "metric"}


def test_set_plugin_enabled_edits_an_inline_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[plugins]\nweather = { enabled = true, config = { units = "si" } }\n')

    set_plugin_enabled(path, "weather", False)

    assert path.read_text("utf-8") == (
        '[plugins]\nweather = { enabled = false, config = { units = "si" } }\n'
    )


def test_set_plugin_enabled_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"

    set_plugin_enabled(path, "weather", False)

    assert path.read_text("utf-8") == "[plugins.weather]\nenabled = false\n"


def test_set_plugin_enabled_keeps_windows_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"# c\r\n[plugins.weather]\r\nenabled = true\r\n")

    set_plugin_enabled(path, "weather", False)

    assert path.read_bytes() == b"# c\r\n[plugins.weather]\r\nenabled = false\r\n"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_set_plugin_enabled_keeps_the_files_permissions(tmp_path: Path) -> None:
    path = write(tmp_path, "[plugins.weather]\nenabled = true\n")
    path.chmod(0o600)

    set_plugin_enabled(path, "weather", False)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [entry.name for entry in tmp_path.iterdir()] == ["config.toml"]  # no temporary left


def test_set_plugin_enabled_refuses_a_name_that_is_not_a_plugin_name(tmp_path: Path) -> None:
    path = write(tmp_path, "")

    with pytest.raises(ConfigError) as caught:
        set_plugin_enabled(path, "Not A Name", True)

    assert caught.value.problems[0].field == 'plugins."Not A Name"'
    assert path.read_text("utf-8") == ""


def test_set_plugin_enabled_refuses_a_reserved_name(tmp_path: Path) -> None:
    path = write(tmp_path, "")

    with pytest.raises(ConfigError, match="host setting"):
        set_plugin_enabled(path, "sandbox", True)


def test_set_plugin_enabled_refuses_a_plugins_key_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "plugins = 3\n")

    with pytest.raises(ConfigError) as caught:
        set_plugin_enabled(path, "weather", True)

    assert caught.value.problems[0].field == "plugins"
    assert path.read_text("utf-8") == "plugins = 3\n"


def test_set_plugin_enabled_refuses_a_plugin_entry_that_is_not_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, "[plugins]\nweather = true\n")

    with pytest.raises(ConfigError) as caught:
        set_plugin_enabled(path, "weather", False)

    assert caught.value.problems[0] == Problem("plugins.weather", "got a boolean", "a table")


def test_set_plugin_enabled_reports_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[plugins]\nhot_reload = true\ndirs = [\n")

    with pytest.raises(ConfigError) as caught:
        set_plugin_enabled(path, "weather", False)

    assert caught.value.problems[0].line is not None
    assert path.read_text("utf-8") == "[plugins]\nhot_reload = true\ndirs = [\n"


def test_set_plugin_enabled_names_the_cli_extra_when_tomlkit_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes the import fail, as if tomlkit were not installed.
    monkeypatch.setitem(sys.modules, "tomlkit", None)

    with pytest.raises(ImportError, match=r"clawhost\[cli\]"):
        set_plugin_enabled(tmp_path / "config.toml", "weather", False)

    assert not (tmp_path / "config.toml").exists()


def test_the_configuration_api_is_exported_from_clawhost() -> None:
    import clawhost

    names = [
        "HostConfig",
        "PluginsConfig",
        "SandboxConfig",
        "PluginSettings",
        "load_host_config",
        "PluginConfig",
        "validate_plugin_config",
    ]
    for name in names:
        assert name in clawhost.__all__
        assert getattr(clawhost, name).__module__ == "clawhost"
