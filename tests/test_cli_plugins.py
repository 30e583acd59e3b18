"""The ``clawhost`` command: list, inspect, enable, disable, help, errors, the extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ._cli import PLAIN, invoke
from .conftest import example_wheel, pip

#: The examples these tests read: weather depends on geocoding.
TWO_EXAMPLES = ("weather", "geocoding")

COMMANDS = [
    (),
    ("plugins",),
    ("plugins", "list"),
    ("plugins", "inspect"),
    ("plugins", "enable"),
    ("plugins", "disable"),
    ("plugins", "install"),
    ("plugins", "update"),
    ("plugins", "uninstall"),
    ("plugins", "create"),
    ("plugins", "test"),
    ("doctor",),
    ("gateway",),
]

CONFIG = """\
# The gateway's configuration. Comments matter to people.
[plugins]
hot_reload = false   # not in production

[plugins.sandbox]
net_allowed = ["api.openweathermap.org:443", "127.0.0.1:*", "localhost:*"]

# Weather needs a key.
[plugins.weather.config]
api_key = "s3cret-key"
units = "imperial"
"""


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./config.toml or $CLAWHOST_CONFIG from outside leaks into a test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAWHOST_CONFIG", raising=False)
    monkeypatch.delenv("WEATHER_API_KEY", raising=False)


@pytest.fixture(scope="module")
def site(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weather and geocoding installed into one folder (``--path``), shared by the module:
    these tests only read it."""
    target = tmp_path_factory.mktemp("site")
    wheels = [example_wheel(wheelhouse, f"clawdesk-plugin-{name}") for name in TWO_EXAMPLES]
    pip("install", "--no-deps", "--target", target, *wheels)
    return target


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG, "utf-8")
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "clawhost")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--help")

    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_list_shows_name_version_status_and_capabilities(site: Path) -> None:
    result = invoke("--path", site, "plugins", "list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(
        all(c in line for c in ("Name", "Version", "Status", "Capabilities")) for line in lines
    )
    geocoding = next(line for line in lines if "geocoding" in line)
    assert "1.5.2" in geocoding
    assert "Ready" in geocoding
    assert "tools: geocode; providers: geocoder" in geocoding
    weather = next(line for line in lines if line.startswith("│ weather"))
    assert "Failed (load: plugin 'weather' asks for permissions" in weather


def test_list_json_gives_state_capabilities_source_and_error(site: Path) -> None:
    result = invoke("--path", site, "plugins", "list", "--json")

    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["geocoding"]["state"] == "resolved"
    assert rows["geocoding"]["status"] == "ready"
    assert rows["geocoding"]["capabilities"]["providers"] == ["geocoder"]
    assert rows["geocoding"]["error"] is None
    assert "clawdesk-plugin-geocoding" in rows["geocoding"]["source"]
    assert rows["weather"]["state"] == "failed"
    assert rows["weather"]["error"]["stage"] == "load"
    assert "net_allowed" in rows["weather"]["error"]["message"]


def test_list_reports_a_config_problem_as_the_reason_a_plugin_cannot_run(
    site: Path, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[plugins.sandbox]\nnet_allowed = ["*:*"]\n', "utf-8")

    result = invoke("--path", site, "plugins", "list", "--json")

    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["weather"]["error"]["stage"] == "config"
    assert "api_key: required" in rows["weather"]["error"]["message"]


def test_list_with_a_config_shows_every_plugin_ready(site: Path, config: Path) -> None:
    result = invoke("--config", config, "--path", site, "plugins", "list", "--json")

    assert [(row["name"], row["status"]) for row in json.loads(result.stdout)] == [
        ("geocoding", "ready"),
        ("weather", "ready"),
    ]


def test_list_never_imports_plugin_code(site: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from click.testing import CliRunner
        from clawhost.cli.app import cli
        result = CliRunner().invoke(cli, ["--path", {str(site)!r}, "plugins", "list"])
        assert result.exit_code == 0, result.output
        print(sorted(name for name in sys.modules if name.startswith("clawdesk_plugin")))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path
    )

    assert done.stdout.strip() == "[]"


def test_list_activate_brings_each_plugin_up_in_a_subprocess(site: Path, config: Path) -> None:
    result = invoke("--config", config, "--path", site, "plugins", "list", "--activate", "--json")

    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["geocoding"]["state"] == "active"
    assert rows["geocoding"]["error"] is None
    # Weather comes up, but its health check cannot reach the API from here.
    assert rows["weather"]["state"] == "active"
    assert rows["weather"]["error"]["stage"] == "health check"


def test_inspect_shows_everything_about_a_plugin(site: Path, config: Path) -> None:
    result = invoke("--config", config, "--path", site, "plugins", "inspect", "weather")

    assert result.exit_code == 0, result.output
    out = result.output
    for expected in (
        "weather 1.2.0",
        "Weather information tool for ClawDesk",
        "tools: get_weather, get_forecast",
        "geocoding ^1.5.0: ok (installed: 1.5.2)",
        "Kind       Requested                     Granted",
        "network    api.openweathermap.org:443    yes, by plugins.sandbox.net_allowed",
        "api_key",
        '"***"',
        '"imperial"',
    ):
        assert expected in out
    assert "s3cret-key" not in out


def test_inspect_lists_dependents(site: Path, config: Path) -> None:
    result = invoke("--config", config, "--path", site, "plugins", "inspect", "geocoding")

    assert "weather 1.2.0 requires ^1.5.0" in result.output


def test_inspect_json_masks_secrets_and_says_where_each_value_came_from(
    site: Path, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke("--config", config, "--path", site, "plugins", "inspect", "weather", "--json")

    data = json.loads(result.stdout)
    options = data["config"]["options"]
    assert options["api_key"] == {**options["api_key"], "value": "***", "source": "config"}
    assert options["units"]["value"] == "imperial"
    assert options["units"]["source"] == "config"
    assert options["cache_ttl_secs"] == {
        **options["cache_ttl_secs"],
        "value": 300,
        "source": "default",
    }
    assert data["dependencies"] == [
        {
            "name": "geocoding",
            "requirement": "^1.5.0",
            "available": ["1.5.2"],
            "selected": "1.5.2",
            "satisfied": True,
        }
    ]
    assert data["permissions"]["granted"]["network"][0] == "api.openweathermap.org:443"
    assert data["manifest"]["author"] == "Jane Doe <jane@example.com>"
    assert "s3cret-key" not in result.stdout


def test_inspect_reads_a_secret_from_the_environment_without_showing_it(
    site: Path, tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[plugins.sandbox]\nnet_allowed = ["*:*"]\n', "utf-8")

    result = invoke(
        "--path",
        site,
        "plugins",
        "inspect",
        "weather",
        "--json",
        env={"WEATHER_API_KEY": "from-the-env"},
    )

    option = json.loads(result.stdout)["config"]["options"]["api_key"]
    assert (option["value"], option["source"]) == ("***", "env")
    assert "from-the-env" not in result.stdout


def test_inspect_an_unknown_plugin_is_a_one_line_error(site: Path) -> None:
    result = invoke("--path", site, "plugins", "inspect", "nope")

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: plugin not found: 'nope'; known plugins: geocoding, weather"
    )
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_of_an_error(site: Path) -> None:
    result = invoke("--debug", "--path", site, "plugins", "inspect", "nope")

    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert "PluginNotFound" in result.stderr


def test_an_invalid_config_is_reported_field_by_field(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[plugins]\nhot_reload = 'yes'\n", "utf-8")

    result = invoke("plugins", "list")

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: invalid {path} (1 problem)")
    assert "plugins.hot_reload" in result.stderr
    assert "Traceback" not in result.output


def test_config_comes_from_the_environment_variable(site: Path, config: Path) -> None:
    result = invoke(
        "--path",
        site,
        "plugins",
        "list",
        "--json",
        env={"CLAWHOST_CONFIG": str(config)},
    )

    assert {row["status"] for row in json.loads(result.stdout)} == {"ready"}


def test_disable_then_enable_round_trips_the_config_keeping_comments(
    site: Path, config: Path
) -> None:
    disabled = invoke("--config", config, "--path", site, "plugins", "disable", "weather")
    after_disable = config.read_text("utf-8")
    enabled = invoke("--config", config, "--path", site, "plugins", "enable", "weather")
    after_enable = config.read_text("utf-8")

    assert disabled.exit_code == 0, disabled.output
    assert enabled.exit_code == 0, enabled.output
    assert f"Disabled weather in {config}" in disabled.output
    assert "[plugins.weather]\nenabled = false\n" in after_disable
    assert after_enable == after_disable.replace("enabled = false", "enabled = true")
    for line in CONFIG.splitlines():
        assert line in after_enable  # every comment and setting kept as written


def test_a_disabled_plugin_is_listed_as_disabled(site: Path, config: Path) -> None:
    invoke("--config", config, "--path", site, "plugins", "disable", "weather")

    result = invoke("--config", config, "--path", site, "plugins", "list", "--json")

    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert (rows["weather"]["state"], rows["weather"]["enabled"]) == ("disabled", False)


def test_disabling_a_dependency_warns_about_its_dependents(site: Path, config: Path) -> None:
    result = invoke("--config", config, "--path", site, "plugins", "disable", "geocoding")

    assert result.exit_code == 0
    assert "weather requires geocoding ^1.5.0 and will not run" in result.stderr


def test_enabling_an_unknown_plugin_warns_and_saves_it(tmp_path: Path) -> None:
    result = invoke("--path", tmp_path, "plugins", "enable", "later")

    assert result.exit_code == 0
    assert "no installed plugin is named 'later'" in result.stderr
    assert (tmp_path / "config.toml").read_text("utf-8") == "[plugins.later]\nenabled = true\n"


def test_python_dash_m_clawhost_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clawhost", "--version"], capture_output=True, text=True, check=False
    )

    assert done.returncode == 0
    assert done.stdout.startswith("clawhost, version ")


def test_without_the_cli_extra_the_command_names_it_and_exits_2() -> None:
    script = "import sys; sys.modules['click'] = None; from clawhost.__main__ import main; main()"

    done = subprocess.run(
        [sys.executable, "-c", script, "plugins", "list"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **PLAIN},
    )

    assert done.returncode == 2
    assert done.stderr.strip() == (
        "clawhost: the command line needs click, from the 'cli' extra: pip install 'clawhost[cli]'"
    )


def test_importing_clawhost_imports_no_cli_dependency() -> None:
    script = (
        "import sys, clawhost, clawhost.testing, clawhost.pytest_plugin; "
        "print(sorted(m for m in ('click', 'rich', 'tomlkit') if m in sys.modules))"
    )

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert done.stdout.strip() == "[]"
