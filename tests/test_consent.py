"""Permission consent: install and update show what a plugin asks for and ask once; an
update that asks for more needs consent again; ``plugins grant`` / ``revoke`` edit
config.toml keeping its comments; bad PERMISSIONs and host patterns are named with the
file and the key. Real wheels, real environments, a real terminal (a pty) for the prompt.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import termios
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from clawhost.config.host import load_host_config

from ._cli import EXAMPLES, build_wheel, invoke, offline_env, plugin_free_venv, plugin_project
from ._cli import run_cli as run
from ._site import SiteDir, manifest

ASKS_V1 = '[plugin.permissions]\nnetwork = ["api.forecast.example:443"]\n'
ASKS_V2 = (
    '[plugin.permissions]\nnetwork = ["api.forecast.example:443", "tiles.forecast.example:443"]\n'
)
CONFIG = """\
# The gateway's settings. Comments like this one must survive every edit.
[plugins]
hot_reload = false  # keep it calm

[plugins.sandbox]
max_cpu_time_secs = 5   # seconds
"""


def run_in_pty(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str],
    answers: Sequence[tuple[str, str]],
    timeout: float = 180,
) -> tuple[int, str]:
    """Run ``argv`` with a real terminal as its standard input, output and error; when
    each expected prompt appears, type its answer. Returns the status and what it wrote."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    process = subprocess.Popen(
        [os.fspath(arg) for arg in argv],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=dict(env),
        start_new_session=True,
    )
    os.close(slave)
    output = b""
    seen = 0
    pending = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                process.kill()
                raise AssertionError(f"timed out; it wrote:\n{output.decode(errors='replace')}")
            ready, _, _ = select.select([master], [], [], min(remaining, 0.5))
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal's other side is closed
                chunk = b""
            if not chunk:
                break
            output += chunk
            if pending and pending[0][0].encode() in output[seen:]:
                os.write(master, pending.pop(0)[1].encode())
                seen = len(output)
        status = process.wait(timeout=60)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not pending, f"never asked {pending}; it wrote:\n{output.decode(errors='replace')}"
    return status, output.decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """forecast 1.0.0 (asks for one endpoint) and 2.0.0 (asks for one more), as wheels;
    2.0.0 alone in a folder that serves as the registry for updates."""
    root = tmp_path_factory.mktemp("forecast")
    v1 = plugin_project(root / "v1", "forecast", "1.0.0", manifest_extra=ASKS_V1)
    v2 = plugin_project(root / "v2", "forecast", "2.0.0", manifest_extra=ASKS_V2)
    return {
        "1.0.0": build_wheel(v1, root / "dist-1"),
        "2.0.0": build_wheel(v2, root / "registry"),
        "registry": root / "registry",
    }


@pytest.fixture
def python(tmp_path: Path) -> Path:
    return plugin_free_venv(tmp_path / "venv")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, "utf-8")
    return path


def clawhost(
    python: Path, config: Path, *args: str | os.PathLike[str], registry: Path, input: str = ""
) -> subprocess.CompletedProcess[str]:
    return run(python, "--config", config, *args, env=offline_env(registry), input=input)


def rows(python: Path, config: Path, registry: Path) -> dict[str, dict[str, object]]:
    done = clawhost(python, config, "plugins", "list", "--json", registry=registry)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)}


def granted_hosts(config: Path, name: str = "forecast") -> tuple[str, ...]:
    return load_host_config(config).sandbox_for(name).net_allowed


# -- install and update ---------------------------------------------------------------------


@pytest.mark.slow
def test_an_update_asking_for_more_is_not_granted_without_consent(
    python: Path, config: Path, wheels: dict[str, Path]
) -> None:
    registry = wheels["registry"]
    installed = clawhost(
        python, config, "plugins", "install", "--yes", wheels["1.0.0"], registry=registry
    )
    assert installed.returncode == 0, installed.stderr
    assert "forecast 1.0.0 asks for these permissions:" in installed.stdout
    assert "Granted forecast: network api.forecast.example:443" in installed.stdout
    assert granted_hosts(config) == ("api.forecast.example:443",)
    assert rows(python, config, registry)["forecast"]["status"] == "ready"
    before = config.read_text("utf-8")

    updated = clawhost(python, config, "plugins", "update", "forecast", registry=registry)

    assert updated.returncode == 0, updated.stderr
    assert "forecast: 1.0.0 -> 2.0.0" in updated.stdout
    assert "forecast 2.0.0 asks for more than it was granted:\n" in updated.stdout
    shown = updated.stdout.split("asks for more than it was granted:\n", 1)[1]
    assert shown.startswith("  network     tiles.forecast.example:443\n")
    assert "api.forecast.example" not in shown  # only what is new is asked about
    assert "[y/N]" not in updated.stderr
    for line in (
        "Not granted (standard input is not a terminal, so no one was asked; --yes grants): "
        "forecast 2.0.0 will not load until it is granted what it asks for.",
        f"  plugin 'forecast' asks for permissions {config} does not grant: "
        "network tiles.forecast.example:443: not in [plugins.forecast.sandbox] net_allowed",
        "  clawhost plugins grant forecast network:tiles.forecast.example:443",
    ):
        assert line in updated.stderr
    assert config.read_text("utf-8") == before  # the old grant is kept as it was
    row = rows(python, config, registry)["forecast"]
    assert (row["version"], row["status"]) == ("2.0.0", "failed")
    error = row["error"]
    assert isinstance(error, dict)
    assert error["stage"] == "load"
    assert error["message"].endswith(
        "\nTo grant it: clawhost plugins grant forecast network:tiles.forecast.example:443"
    )

    command = ["plugins", "grant", "forecast", "network:tiles.forecast.example:443"]
    unattended = clawhost(python, config, *command, registry=registry)
    granted = clawhost(python, config, *command, "--yes", registry=registry)

    assert unattended.returncode == 1
    assert unattended.stderr.strip() == (
        "Error: nothing granted: standard input is not a terminal, so no one was asked; "
        "--yes grants"
    )
    assert granted.returncode == 0, granted.stderr
    assert granted_hosts(config) == ("api.forecast.example:443", "tiles.forecast.example:443")
    assert rows(python, config, registry)["forecast"]["status"] == "ready"


@pytest.mark.slow
def test_an_update_asking_for_more_is_granted_with_yes(
    python: Path, config: Path, wheels: dict[str, Path]
) -> None:
    registry = wheels["registry"]
    first = clawhost(python, config, "plugins", "install", "-y", wheels["1.0.0"], registry=registry)
    assert first.returncode == 0, first.stderr

    updated = clawhost(python, config, "plugins", "update", "--yes", "forecast", registry=registry)

    assert updated.returncode == 0, updated.stderr
    assert "Granted forecast: network tiles.forecast.example:443" in updated.stdout
    assert "Not granted" not in updated.stderr
    assert granted_hosts(config) == ("api.forecast.example:443", "tiles.forecast.example:443")
    assert config.read_text("utf-8").startswith(CONFIG)
    row = rows(python, config, registry)["forecast"]
    assert (row["version"], row["status"]) == ("2.0.0", "ready")


@pytest.mark.slow
@pytest.mark.parametrize("answer", ["y", "n"])
def test_an_interactive_install_asks_once_at_a_real_terminal(
    python: Path, config: Path, wheels: dict[str, Path], answer: str
) -> None:
    registry = wheels["registry"]
    prompt = f"Grant them to forecast (recorded in {config})? [y/N]: "

    status, output = run_in_pty(
        [python, "-m", "clawhost", "--config", config, "plugins", "install", wheels["1.0.0"]],
        env=offline_env(registry),
        answers=[(prompt, f"{answer}\n")],
    )

    assert status == 0, output
    assert output.count("[y/N]") == 1
    asked = output.index("forecast 1.0.0 asks for these permissions:\n")
    assert output.index("  network     api.forecast.example:443\n") > asked
    assert output.index(prompt) < output.index("Installed forecast 1.0.0")
    row = rows(python, config, registry)["forecast"]
    if answer == "y":
        assert "Granted forecast: network api.forecast.example:443" in output
        assert granted_hosts(config) == ("api.forecast.example:443",)
        assert row["status"] == "ready"
    else:
        assert "Not granted (declined): forecast 1.0.0 will not load" in output
        assert "  clawhost plugins grant forecast network:api.forecast.example:443" in output
        assert config.read_text("utf-8") == CONFIG
        assert row["status"] == "failed"


@pytest.mark.slow
def test_a_piped_yes_grants_nothing(python: Path, config: Path, wheels: dict[str, Path]) -> None:
    registry = wheels["registry"]

    done = clawhost(
        python, config, "plugins", "install", wheels["1.0.0"], registry=registry, input="y\n"
    )

    assert done.returncode == 0, done.stderr
    assert "Installed forecast 1.0.0" in done.stdout
    assert "[y/N]" not in done.stderr
    assert "Not granted (standard input is not a terminal" in done.stderr
    assert "clawhost plugins grant forecast network:api.forecast.example:443" in done.stderr
    assert config.read_text("utf-8") == CONFIG


@pytest.mark.slow
def test_a_dry_run_shows_the_permissions_and_grants_nothing(
    python: Path, config: Path, wheels: dict[str, Path]
) -> None:
    done = clawhost(
        python,
        config,
        "plugins",
        "install",
        "--dry-run",
        "--yes",
        wheels["1.0.0"],
        registry=wheels["registry"],
    )

    assert done.returncode == 0, done.stderr
    assert "  network     api.forecast.example:443" in done.stdout
    assert "Would install forecast 1.0.0" in done.stdout
    assert config.read_text("utf-8") == CONFIG


# -- grant and revoke -----------------------------------------------------------------------

ASKS_ALL = """\
[plugin.permissions]
network = ["api.forecast.example:443", "tiles.forecast.example:443"]
filesystem = ["{data}"]
subprocess = true
"""

COMMENTED = """\
# The gateway's settings. Comments like this one must survive every edit.
[plugins]
hot_reload = false  # keep it calm

[plugins.sandbox]
max_cpu_time_secs = 5   # seconds

# forecast's own settings
[plugins.forecast.config]
units = "metric"  # or imperial

[gateway]  # the application's own table
channel = "console"
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """forecast 3.0.0, asking for two endpoints, a folder and subprocesses."""
    data = tmp_path / "data"
    text = manifest("forecast", "3.0.0") + "\n" + ASKS_ALL.format(data=data)
    text += '\n[plugin.config.units]\ntype = "string"\ndefault = "metric"\n'
    SiteDir(tmp_path / "site").add_plugin("forecast", "3.0.0", plugin_toml=text)
    return tmp_path / "site"


def inspect(config: Path, site: Path) -> dict[str, bool]:
    done = invoke("--config", config, "--path", site, "plugins", "inspect", "forecast", "--json")
    assert done.exit_code == 0, done.output
    items = json.loads(done.stdout)["permissions"]["items"]
    return {item["permission"]: item["granted"] for item in items}


def test_grant_and_revoke_round_trip_keeping_every_comment(tmp_path: Path, site: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(COMMENTED, "utf-8")
    data = tmp_path / "data"

    granted = invoke("--config", config, "--path", site, "plugins", "grant", "forecast", "-y")

    assert granted.exit_code == 0, granted.output
    assert granted.stdout.startswith("Grant forecast 3.0.0:\n")
    assert (
        f"Granted forecast: network api.forecast.example:443, network tiles.forecast.example:443, "
        f"filesystem {data}, subprocess (in {config}, [plugins.forecast.sandbox])"
    ) in granted.stdout
    text = config.read_text("utf-8")
    assert text == COMMENTED.replace(
        "\n[gateway]",
        textwrap.dedent(
            f"""
            [plugins.forecast.sandbox]
            # What `clawhost plugins grant` / `revoke` granted forecast (they edit these keys).
            net_allowed = ["api.forecast.example:443", "tiles.forecast.example:443"]
            fs_allowed = ["{data}"]
            allow_subprocess = true

            [gateway]"""
        ),
    )
    assert set(inspect(config, site).values()) == {True}

    one = invoke(
        "--config",
        config,
        "--path",
        site,
        "plugins",
        "revoke",
        "forecast",
        "network:tiles.forecast.example:443",
    )

    assert one.exit_code == 0, one.output
    assert "Revoked forecast: network tiles.forecast.example:443" in one.stdout
    assert "to grant it again: clawhost plugins grant forecast network:tiles" in one.stderr
    assert 'net_allowed = ["api.forecast.example:443"]\n' in config.read_text("utf-8")
    assert inspect(config, site) == {
        "network:api.forecast.example:443": True,
        "network:tiles.forecast.example:443": False,
        f"filesystem:{data}": True,
        "subprocess": True,
    }

    everything = invoke("--config", config, "--path", site, "plugins", "revoke", "forecast")

    assert everything.exit_code == 0, everything.output
    assert config.read_text("utf-8") == COMMENTED  # back to the letter
    assert set(inspect(config, site).values()) == {False}


def test_revoking_what_the_defaults_grant_overrides_them_for_that_plugin(
    tmp_path: Path, site: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[plugins.sandbox]\nnet_allowed = ["*.forecast.example:443"]  # both endpoints\n',
        "utf-8",
    )

    done = invoke(
        "--config",
        config,
        "--path",
        site,
        "plugins",
        "revoke",
        "forecast",
        "network:api.forecast.example:443",
    )

    assert done.exit_code == 0, done.output
    assert "# both endpoints" in config.read_text("utf-8")
    assert load_host_config(config).plugins.sandbox.net_allowed == ("*.forecast.example:443",)
    assert granted_hosts(config) == ("tiles.forecast.example:443",)
    granted = inspect(config, site)
    assert granted["network:api.forecast.example:443"] is False
    assert granted["network:tiles.forecast.example:443"] is True


def test_a_wider_pattern_is_recorded_as_given(tmp_path: Path, site: Path) -> None:
    config = tmp_path / "config.toml"

    done = invoke(
        "--config",
        config,
        "--path",
        site,
        "plugins",
        "grant",
        "forecast",
        "--yes",
        "network:*.forecast.example:443",
    )

    assert done.exit_code == 0, done.output
    assert "(as *.forecast.example:443)" in done.stdout
    assert granted_hosts(config) == ("*.forecast.example:443",)
    assert "Warning: forecast will still not load:" in done.stderr
    assert f"To grant the rest: clawhost plugins grant forecast filesystem:{tmp_path}" in (
        done.stderr
    )


def test_a_folder_holding_a_path_is_recorded_expanded(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORECAST_ROOT", str(tmp_path))
    config = tmp_path / "config.toml"

    done = invoke(
        "--config",
        config,
        "--path",
        site,
        "plugins",
        "grant",
        "forecast",
        "-y",
        "filesystem:$FORECAST_ROOT",
    )

    assert done.exit_code == 0, done.output
    assert f'fs_allowed = ["{tmp_path}"]' in config.read_text("utf-8")
    assert inspect(config, site)[f"filesystem:{tmp_path / 'data'}"] is True


@pytest.mark.parametrize(
    ("argument", "reason", "keys"),
    [
        (
            "netwrk:api.forecast.example:443",
            "unknown permission 'netwrk'; a PERMISSION is network[:HOST:PORT], "
            "filesystem[:PATH] or subprocess",
            "plugins.forecast.sandbox.net_allowed, plugins.forecast.sandbox.fs_allowed, "
            "plugins.forecast.sandbox.allow_subprocess",
        ),
        (
            "network:api.forecast.example:99999",
            "port 99999 is not in 1-65535; a network permission is network:HOST:PORT, with "
            "HOST a name, *.name, an IP address or [IPv6] and PORT 1-65535 or *",
            "plugins.forecast.sandbox.net_allowed",
        ),
        (
            "network:api.forecast.example",
            "is not 'host:port' (port a number or *); a network permission is",
            "plugins.forecast.sandbox.net_allowed",
        ),
        (
            "network:evil.example:443",
            "forecast does not ask for anything it covers (it asks for: "
            "network:api.forecast.example:443, network:tiles.forecast.example:443)",
            "plugins.forecast.sandbox.net_allowed",
        ),
        (
            "filesystem:data",
            "'data' is not an absolute path",
            "plugins.forecast.sandbox.fs_allowed",
        ),
        (
            "subprocess:yes",
            "subprocess takes no value; write 'subprocess'",
            "plugins.forecast.sandbox.allow_subprocess",
        ),
    ],
)
def test_a_bad_permission_names_itself_the_file_and_the_key(
    tmp_path: Path, site: Path, argument: str, reason: str, keys: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, "utf-8")

    done = invoke("--config", config, "--path", site, "plugins", "grant", "forecast", argument)

    assert done.exit_code == 1
    message = done.stderr.strip()
    assert message.startswith(f"Error: cannot grant {argument!r} to forecast: {reason}")
    assert message.endswith(f"(recorded in {config} as {keys})")
    assert config.read_text("utf-8") == CONFIG


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (
            'net_allowed = ["api.forecast.example:99999"]',
            "plugins.forecast.sandbox.net_allowed[0]: got 'api.forecast.example:99999': "
            "port 99999 is not in 1-65535; expected 'host:port': a name, *.name, an IP or "
            "[IPv6]; a port 1-65535 or *",
        ),
        (
            'net_allowed = ["*.:443"]',
            "plugins.forecast.sandbox.net_allowed[0]: got '*.:443': a wildcard needs a domain "
            "after '*.'",
        ),
        (
            'network = ["api.forecast.example:443"]',
            "plugins.forecast.sandbox.network: unknown key; the network permission is granted "
            "by net_allowed",
        ),
    ],
)
def test_a_bad_grant_in_the_config_names_the_file_and_the_key(
    tmp_path: Path, site: Path, table: str, problem: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f"[plugins.forecast.sandbox]\n{table}\n", "utf-8")

    for command in (["list"], ["grant", "forecast", "--yes"], ["inspect", "forecast"]):
        done = invoke("--config", config, "--path", site, "plugins", *command)

        assert done.exit_code == 1, command
        assert done.stderr.startswith(f"Error: invalid {config} (1 problem)\n  - {problem}")


def test_grant_names_what_is_installed_when_the_plugin_is_not(tmp_path: Path, site: Path) -> None:
    done = invoke("--config", tmp_path / "c.toml", "--path", site, "plugins", "grant", "nope")

    assert done.exit_code == 1
    assert "nope" in done.stderr
    assert "forecast" in done.stderr
    assert not (tmp_path / "c.toml").exists()


# -- the demo ships its grant in the consent format -----------------------------------------


def test_the_demo_config_grants_weather_what_it_asks_for_in_its_own_table(
    installed_examples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEATHER_BASE_URL", "http://127.0.0.1:1")
    demo = EXAMPLES / "gateway" / "config.toml"

    done = invoke("--config", demo, "--path", installed_examples, "plugins", "inspect", "weather")
    data = invoke(
        "--config", demo, "--path", installed_examples, "plugins", "inspect", "weather", "--json"
    )

    assert done.exit_code == 0, done.output
    items = json.loads(data.stdout)["permissions"]["items"]
    assert [(item["value"], item["granted_by"]) for item in items] == [
        ("api.openweathermap.org:443", "plugins.weather.sandbox.net_allowed"),
        ("127.0.0.1:*", "plugins.weather.sandbox.net_allowed"),
        ("localhost:*", "plugins.weather.sandbox.net_allowed"),
    ]
    assert load_host_config(demo).plugins.sandbox.net_allowed == ()  # nothing host-wide
    assert "To grant" not in done.stdout
