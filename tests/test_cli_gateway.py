"""``clawhost gateway``: runs a host until Ctrl-C, logging the lifecycle, and stops cleanly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ._cli import offline_env
from .conftest import example_wheel, pip

CONFIG = """\
[plugins.sandbox]
net_allowed = ["api.openweathermap.org:443", "127.0.0.1:*", "localhost:*"]

[plugins.weather.config]
api_key = "test"
"""


class _Gateway:
    """A gateway subprocess whose log lines are collected as they come."""

    def __init__(self, *args: str | os.PathLike[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "clawhost", *map(os.fspath, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
            env=offline_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return
        raise AssertionError(f"{text!r} never logged; got {self.seen}")

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


@pytest.fixture(scope="module")
def examples(wheelhouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weather and geocoding installed into one folder, for ``--path``."""
    target = tmp_path_factory.mktemp("site")
    pip(
        "install",
        "--no-deps",
        "--target",
        target,
        example_wheel(wheelhouse, "clawdesk-plugin-weather"),
        example_wheel(wheelhouse, "clawdesk-plugin-geocoding"),
    )
    return target


@pytest.fixture
def gateway(examples: Path, tmp_path: Path) -> _Gateway:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, "utf-8")
    started = _Gateway("--path", examples, "gateway", "--config", config, cwd=tmp_path)
    started.wait_for("Gateway running")
    return started


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_the_gateway_logs_activations_and_stops_cleanly(gateway: _Gateway, signum: int) -> None:
    code = gateway.stop(signum)

    assert code == 0, gateway.seen
    log = gateway.seen
    expected = [
        "[INFO] Activating 'geocoding' v1.5.2",
        "[INFO] Activating 'weather' v1.2.0",
        "[INFO] Host started: 2 active",
        "[INFO] Gateway running with 2 active plugin(s); press Ctrl-C to stop",
        f"[INFO] Received {signal.Signals(signum).name}, stopping",
        "[INFO] Deactivating 'weather' v1.2.0",
        "[INFO] Deactivating 'geocoding' v1.5.2",
        "[INFO] Gateway stopped",
    ]
    positions = [next(i for i, line in enumerate(log) if line.startswith(e)) for e in expected]
    assert positions == sorted(positions), log
    assert not any("Traceback" in line for line in log)


def test_the_gateway_logs_debug_lines_when_asked(examples: Path, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG, "utf-8")
    gateway = _Gateway(
        "--path",
        examples,
        "gateway",
        "--config",
        config,
        "--log-level",
        "debug",
        cwd=tmp_path,
    )
    gateway.wait_for("Gateway running")

    assert gateway.stop(signal.SIGINT) == 0
    assert any(line.startswith("[DEBUG] ") for line in gateway.seen), gateway.seen


def test_the_gateway_refuses_an_invalid_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[plugins]\nwatch_interval_secs = -1\n", "utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "clawhost", "gateway", "--config", config],
        capture_output=True,
        text=True,
        env=offline_env(),
        check=False,
    )

    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: invalid {config} (1 problem)")
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_the_gateway_hot_reloads_a_changed_directory_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "hello"
    plugin.mkdir(parents=True)
    manifest = plugin / "plugin.toml"
    manifest.write_text('[plugin]\nname = "hello"\nversion = "0.1.0"\nentry = "hello_gw"\n')
    (plugin / "hello_gw.py").write_text(
        "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    pass\n"
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[plugins]\ndirs = ["./plugins"]\nhot_reload = true\nwatch_interval_secs = 0.2\n'
    )
    empty = tmp_path / "site"
    empty.mkdir()
    gateway = _Gateway("--path", empty, "gateway", "--config", config, cwd=tmp_path)
    gateway.wait_for("Watching")

    manifest.write_text(manifest.read_text().replace("0.1.0", "0.1.1"))
    gateway.wait_for("reloaded successfully")

    assert gateway.stop(signal.SIGINT) == 0
    assert "[INFO] Activating 'hello' v0.1.1" in gateway.seen
    assert gateway.seen[-2:] == ["[INFO] Deactivating 'hello' v0.1.1", "[INFO] Gateway stopped"]


def test_with_a_gateway_table_messages_flow_until_the_channel_ends(
    wheelhouse: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    pip(
        "install",
        "--no-deps",
        "--target",
        site,
        example_wheel(wheelhouse, "clawdesk-plugin-rulebot"),
    )
    config = tmp_path / "config.toml"
    config.write_text(
        '[gateway]\nchannel = "console"\nprovider = "rulebot"\n\n'
        '[gateway.channel_config]\nprompt = "you> "\nscript = ["hello"]\n',
        "utf-8",
    )

    done = subprocess.run(
        [sys.executable, "-m", "clawhost", "--path", site, "gateway", "--config", config],
        capture_output=True,
        text=True,
        env=offline_env(),
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [
        "you> hello",
        "bot> Hello! Ask me about the weather, a forecast, or where a place is.",
    ]
    assert "[INFO] Channel rulebot/console ended" in done.stderr  # the supervisor's line
    assert done.stderr.rstrip().endswith("[INFO] Gateway stopped")


def test_an_invalid_gateway_table_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[gateway]\nchannel = "console"\n', "utf-8")

    done = subprocess.run(
        [sys.executable, "-m", "clawhost", "gateway", "--config", config],
        capture_output=True,
        text=True,
        env=offline_env(),
        check=False,
    )

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: {config}: invalid [gateway] table: gateway.provider: required (a string)"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.slow
def test_the_gateway_serves_its_status_page_and_health_over_http(
    examples: Path, tmp_path: Path
) -> None:
    import json
    import urllib.request

    config = tmp_path / "config.toml"
    config.write_text(CONFIG, "utf-8")
    port = _free_port()
    gateway = _Gateway(
        "--path", examples, "gateway", "--config", config, "--http", str(port), cwd=tmp_path
    )
    gateway.wait_for(f"Serving HTTP on http://127.0.0.1:{port}/")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5) as r:
                status = json.load(r)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        page = response.read().decode()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/plugins/geocoding/health") as r:
        health = json.load(r)

    assert gateway.stop(signal.SIGINT) == 0
    states = {row["name"]: row["state"] for row in status["plugins"]}
    assert states == {"geocoding": "active", "weather": "active"}
    assert 'data-plugin="weather"' in page
    assert health["healthy"] is True
    assert gateway.seen[-1] == "[INFO] Gateway stopped"


def test_the_gateway_says_in_one_line_when_it_cannot_serve_http(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "clawhost", "--path", tmp_path, "gateway", "--http", str(port)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=offline_env(),
            timeout=120,
            check=False,
        )
    assert out.returncode == 1
    assert f"Error: cannot serve HTTP on 127.0.0.1:{port}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
