"""The host's refusal of a plugin that asks for more than it is granted names its fix: the
table and key it consulted, the config file, and the exact ``clawhost plugins grant``
command, which, run as it is written (at a real terminal, in the config's folder, with
the plugin really installed), lets the plugin load (issue 21).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import anyio
import pytest

from clawhost import PluginHost
from clawhost.config.host import HostConfig, load_host_config
from clawhost.discovery.manifest import Permissions
from clawhost.errors import ConfigError, PermissionsRefused
from clawhost.runtime.records import PluginState
from clawhost.sandbox.consent import GrantSource
from clawhost.sandbox.permissions import grant_permissions

from ._cli import invoke, offline_env
from ._site import SiteDir, manifest
from .test_consent import run_in_pty

ASKS = """\
[plugin.permissions]
network = ["api.forecast.example:443", "tiles.forecast.example:443"]
filesystem = ["{data}"]
subprocess = true
"""
#: forecast's own table grants one endpoint; the rest falls to [plugins.sandbox].
CONFIG = """\
# Comments survive the grant.
[plugins.sandbox]
max_cpu_time_secs = 5

[plugins.forecast.sandbox]
net_allowed = ["api.forecast.example:443"]  # granted before
"""


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(config file, site folder, the data folder forecast asks for: a space in it)."""
    data = tmp_path / "forecast data"
    text = manifest("forecast", "3.0.0") + "\n" + ASKS.format(data=data)
    SiteDir(tmp_path / "site").add_plugin("forecast", "3.0.0", plugin_toml=text)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, "utf-8")
    return config, tmp_path / "site", data


def expected(config: Path, data: Path) -> str:
    return (
        f"plugin 'forecast' asks for permissions {config} does not grant: "
        f"filesystem {data}: outside [plugins.sandbox] fs_allowed; "
        "network tiles.forecast.example:443: not in [plugins.forecast.sandbox] net_allowed; "
        "subprocess: [plugins.sandbox] allow_subprocess is false\n"
        "To grant it: clawhost plugins grant forecast network:tiles.forecast.example:443 "
        f"'filesystem:{data}' subprocess"
    )


async def failure_reason(config: Path, site: Path) -> str | None:
    host = PluginHost(config=load_host_config(config), path=[os.fspath(site)], cache=False)
    async with host:
        record = host.plugins["forecast"]
        if record.failure is None:
            assert record.state is PluginState.ACTIVE
            return None
        assert record.failure.stage == "load"
        assert isinstance(record.failure.error, PermissionsRefused)
        health = await host.health_check("forecast")
        assert health.reason == f"load: {record.failure.reason}"
        return record.failure.reason


def test_the_refusal_names_the_tables_the_file_and_the_command(
    setup: tuple[Path, Path, Path],
) -> None:
    config, site, data = setup

    assert anyio.run(failure_reason, config, site) == expected(config, data)

    listed = invoke("--config", config, "--path", site, "plugins", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["error"] == {"stage": "load", "message": expected(config, data)}

    doctor = invoke("--config", config, "--path", site, "doctor", "--json")
    findings = [f for f in json.loads(doctor.stdout)["findings"] if f["plugin"] == "forecast"]
    assert [(f["problem"], f["remedy"]) for f in findings] == [
        ("Permission denied", expected(config, data).rsplit("To grant it: ", 1)[1])
    ]
    shown = invoke("--config", config, "--path", site, "doctor")
    assert f"-> {expected(config, data).rsplit('To grant it: ', 1)[1]}" in shown.stdout


@pytest.mark.slow
def test_running_the_command_as_written_lets_the_plugin_load(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, site, data = setup
    reason = anyio.run(failure_reason, config, site)
    assert reason is not None
    argv = shlex.split(reason.rsplit("\nTo grant it: ", 1)[1])
    assert argv[:4] == ["clawhost", "plugins", "grant", "forecast"]
    assert argv[4:] == ["network:tiles.forecast.example:443", f"filesystem:{data}", "subprocess"]
    monkeypatch.chdir(config.parent)  # ./config.toml is the file the command edits
    path = os.pathsep.join([os.fspath(site), os.environ.get("PYTHONPATH", "")])

    status, output = run_in_pty(
        [sys.executable, "-m", *argv],
        env=offline_env(PYTHONPATH=path),
        answers=[("[y/N]: ", "y\n")],
    )

    assert status == 0, output
    assert "Granted forecast: " in output
    assert "# granted before" in config.read_text("utf-8")
    assert anyio.run(failure_reason, config, site) is None  # it loads, and is active


def test_without_an_own_table_the_defaults_are_named(tmp_path: Path) -> None:
    config = HostConfig.from_mapping(
        {"plugins": {"sandbox": {"net_allowed": ["api.x.example:443"]}}},
        file=tmp_path / "c.toml",
    )
    with pytest.raises(PermissionsRefused) as caught:
        grant_permissions(
            "p",
            Permissions(network=("api.y.example:443",)),
            fs_allowed=[],
            net_allowed=["api.x.example:443"],
            allow_subprocess=False,
            package_dir=None,
            source=GrantSource.of("p", config),
        )
    assert caught.value.refused == (
        "network api.y.example:443: not in [plugins.sandbox] net_allowed",
    )
    assert caught.value.command == "clawhost plugins grant p network:api.y.example:443"
    assert str(caught.value).endswith("\nTo grant it: " + caught.value.command)
    assert caught.value.file == str(tmp_path / "c.toml")


def test_a_malformed_host_pattern_names_the_file_and_the_key(tmp_path: Path) -> None:
    config = HostConfig.from_mapping(
        {"plugins": {"weather": {"sandbox": {"net_allowed": ["api.x.example:443"]}}}},
        file=tmp_path / "c.toml",
    )
    with pytest.raises(ConfigError) as caught:
        grant_permissions(
            "weather",
            Permissions(),
            fs_allowed=[],
            net_allowed=["api.x.example:443", "api.x.example"],  # e.g. built in code
            allow_subprocess=False,
            package_dir=None,
            source=GrantSource.of("weather", config),
        )
    assert caught.value.file == tmp_path / "c.toml"
    assert str(caught.value).startswith(
        f"invalid {tmp_path / 'c.toml'} (1 problem)\n"
        "  - plugins.weather.sandbox.net_allowed[1]: got 'api.x.example': "
    )
