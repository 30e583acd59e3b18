"""``clawhost plugins create`` and the ``clawhost plugins test`` harness."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ._cli import GEOCODING, invoke, offline_env, plugin_project
from ._site import directory_plugin
from .conftest import EXAMPLE_PROJECTS

BROKEN = """
from clawhost import hookimpl, tool

@tool
def broken_a() -> str:
    \"\"\"The one tool it does register.\"\"\"
    return "a"

@hookimpl
def activate(ctx):
    ctx.register_tool(broken_a)

@hookimpl
def health_check(ctx):
    return "the database is down"

@hookimpl
def deactivate(ctx):
    raise RuntimeError("cannot close the connection")
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in offline_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("CLAWHOST_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _created(tmp_path: Path, name: str = "my-plugin") -> Path:
    result = invoke("plugins", "create", name, "--directory", tmp_path / name)
    assert result.exit_code == 0, result.output
    return tmp_path / name


def test_create_writes_the_project_layout(tmp_path: Path) -> None:
    project = _created(tmp_path)

    assert sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()) == [
        "README.md",
        "pyproject.toml",
        "src/clawdesk_plugin_my_plugin/__init__.py",
        "src/clawdesk_plugin_my_plugin/plugin.toml",
        "tests/test_plugin.py",
    ]
    pyproject = (project / "pyproject.toml").read_text()
    assert '[project.entry-points."clawdesk.plugins"]' in pyproject
    assert 'my-plugin = "clawdesk_plugin_my_plugin:MyPlugin"' in pyproject
    assert (
        'tools = ["my_plugin_hello"]'
        in (project / "src/clawdesk_plugin_my_plugin/plugin.toml").read_text()
    )


def test_the_generated_tests_pass_as_generated(tmp_path: Path) -> None:
    project = _created(tmp_path)

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


@pytest.mark.parametrize("name", ["My-Plugin", "9lives", "a b", "-rf"])
def test_create_refuses_a_name_that_is_not_a_plugin_name(name: str, tmp_path: Path) -> None:
    result = invoke("plugins", "create", "--", name)

    assert result.exit_code == 1
    assert "a plugin name is lower-case letters" in result.stderr
    assert not any(tmp_path.iterdir())


def test_create_never_overwrites_a_folder(tmp_path: Path) -> None:
    (tmp_path / "my-plugin").mkdir()
    (tmp_path / "my-plugin" / "notes.txt").write_text("mine")

    result = invoke("plugins", "create", "my-plugin")

    assert result.exit_code == 1
    assert "already exists and is not empty" in result.stderr


def test_the_harness_stops_at_an_invalid_manifest(tmp_path: Path) -> None:
    project = plugin_project(
        tmp_path, "bad", manifest_extra="[plugin.permissions]\nnetwork = [1]\n"
    )

    result = invoke("plugins", "test", project, "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [step["name"] for step in report["steps"]] == ["manifest"]
    assert "plugin.permissions.network[0]" in report["findings"][0]["message"]


def test_the_harness_checks_a_directory_plugin_without_building_it(tmp_path: Path) -> None:
    folder = directory_plugin(
        tmp_path / "plugins",
        "folder-plugin",
        "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    pass\n",
    )

    result = invoke("plugins", "test", folder, "--no-tests", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [step["name"] for step in report["steps"]] == [
        "manifest",
        "resolve",
        "activate",
        "registrations",
        "health check",
        "deactivate",
        "leftovers",
    ]


class _WeatherAPI(BaseHTTPRequestHandler):
    """Answers every request the way OpenWeatherMap answers a valid key."""

    def do_GET(self) -> None:
        body = json.dumps({"main": {"temp": 12.5}, "weather": [{"description": "clear"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def weather_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WeatherAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


#: What an example needs to pass: options before and after ``plugins test``.
NEEDS = {
    # Weather needs a key, an API to talk to (for its health check) and geocoding.
    "clawdesk-plugin-weather": ("--with", str(GEOCODING)),
}


@pytest.mark.slow
@pytest.mark.parametrize("project", EXAMPLE_PROJECTS, ids=lambda path: path.name)
def test_the_harness_passes_on_every_example_plugin(
    project: Path, tmp_path: Path, weather_api: str
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[plugins.weather.config]\napi_key = "test"\nbase_url = "{weather_api}"\n')

    result = invoke(
        "--config",
        config,
        "plugins",
        "test",
        "--no-build-isolation",
        "--json",
        *NEEDS.get(project.name, ()),
        project,
    )

    report = json.loads(result.stdout)
    assert result.exit_code == 0, report["findings"]
    assert [step["name"] for step in report["steps"]] == [
        "manifest",
        "install",
        "resolve",
        "activate",
        "registrations",
        "health check",
        "deactivate",
        "leftovers",
        "tests",
    ]
    assert all(step["ok"] for step in report["steps"])
    # The copy checked is the one built into the throw-away environment.
    assert "site-packages" in report["conformance"]["source"]


@pytest.mark.slow
def test_the_harness_passes_on_a_scaffold(tmp_path: Path) -> None:
    project = _created(tmp_path, "fresh")

    result = invoke("plugins", "test", "--no-build-isolation", "--json", project)

    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["findings"] == []
    assert report["steps"][-1]["name"] == "tests"
    assert "4 passed" in report["steps"][-1]["detail"]


@pytest.mark.slow
def test_the_harness_reports_every_finding_of_a_broken_plugin(tmp_path: Path) -> None:
    project = plugin_project(
        tmp_path,
        "broken",
        code=BROKEN,
        tools=("broken_a", "broken_b"),
        tests="def test_it_works():\n    assert 1 + 1 == 3\n",
    )

    result = invoke("plugins", "test", "--no-build-isolation", "--json", project)

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    errors = {f["step"]: f["message"] for f in report["findings"] if f["severity"] == "error"}
    assert errors["registrations"] == "declared tools not registered: broken_b"
    assert errors["health check"] == "unhealthy: the database is down"
    assert "RuntimeError: cannot close the connection" in errors["deactivate"]
    assert errors["tests"].startswith("pytest exited with status 1")
    assert "1 failed" in errors["tests"]


@pytest.mark.slow
def test_the_harness_shows_its_findings_in_a_table(tmp_path: Path) -> None:
    project = plugin_project(tmp_path, "broken", code=BROKEN, tools=("broken_a",))

    result = invoke("plugins", "test", "--no-build-isolation", "--no-tests", project)

    assert result.exit_code == 1
    assert "FAILED: 2 problem(s) found in broken 1.0.0" in result.output
    assert "[error] health check: unhealthy: the database is down" in result.output


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_the_harness_installs_with_the_installer_asked_for(tmp_path: Path, installer: str) -> None:
    project = _created(tmp_path, f"by-{installer}")

    result = invoke(
        "plugins",
        "test",
        "--installer",
        installer,
        "--no-build-isolation",
        "--no-tests",
        "--json",
        project,
    )

    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    install = next(step for step in report["steps"] if step["name"] == "install")
    assert (
        install["detail"] == f"built and installed into a throw-away environment with {installer}"
    )
