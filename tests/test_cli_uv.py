"""``clawhost plugins install / update / uninstall`` in a real uv environment: made by
``uv venv`` (so it has no pip), clawhost installed into it by ``uv pip install``, and
the environment's own ``clawhost`` run; uv does every install, offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ._cli import GEOCODING, WEATHER, build_wheel, plugin_project
from ._uv import UvWorld, find_uv

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> UvWorld:
    """uv, with an offline wheelhouse of what clawhost[cli] and hatchling need."""
    uv = find_uv()
    if uv is None:
        pytest.fail("these tests need uv: install the test extra (pip install 'clawhost[test]')")
    return UvWorld(uv, tmp_path_factory.mktemp("uv"))


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A folder of wheels uv may install from, as from an index (empty to begin with)."""
    folder = tmp_path / "registry"
    folder.mkdir()
    return folder


@pytest.fixture
def venv(world: UvWorld, tmp_path: Path) -> Iterator[Path]:
    """A uv environment with clawhost installed by uv; it has no pip. Afterwards, pip
    must never have been called."""
    python = world.venv(tmp_path / "venv")
    yield python
    assert not world.pip_calls.exists(), world.pip_calls.read_text()


def clawhost(
    world: UvWorld, python: Path, *args: str | os.PathLike[str], registry: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the environment's own ``clawhost`` script."""
    return subprocess.run(
        [os.fspath(python.parent / "clawhost"), *map(os.fspath, args)],
        capture_output=True,
        text=True,
        env=world.env(registry, **env),
        cwd=python.parent.parent,
        stdin=subprocess.DEVNULL,
        timeout=300,
        check=False,
    )


def listed(world: UvWorld, python: Path, registry: Path) -> dict[str, str]:
    done = clawhost(world, python, "plugins", "list", "--json", registry=registry)
    assert done.returncode == 0, done.stderr
    return {row["name"]: row["version"] for row in json.loads(done.stdout)}


def copy_project(source: Path, destination: Path, *, version: str | None = None) -> Path:
    """A copy of an example project, at another version if asked."""
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns("tests"))
    if version is not None:
        package = next((destination / "src").iterdir())
        for file in (destination / "pyproject.toml", package / "plugin.toml"):
            text = file.read_text("utf-8")
            old = text.split('version = "', 1)[1].split('"', 1)[0]
            file.write_text(text.replace(f'version = "{old}"', f'version = "{version}"'), "utf-8")
    return destination


def test_the_environment_is_made_by_uv_and_has_no_pip(venv: Path) -> None:
    config = (venv.parent.parent / "pyvenv.cfg").read_text("utf-8")
    no_pip = subprocess.run([venv, "-c", "import pip"], capture_output=True, check=False)

    assert "uv = " in config
    assert no_pip.returncode != 0
    assert not list(venv.parent.glob("pip*"))


def test_install_a_local_project_fetching_its_plugin_dependency_with_uv(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path
) -> None:
    build_wheel(GEOCODING, registry)

    done = clawhost(world, venv, "plugins", "install", WEATHER, registry=registry)

    assert done.returncode == 0, done.stderr
    assert "With its dependency geocoding 1.5.2 (clawdesk-plugin-geocoding)" in done.stdout
    assert "Installed weather 1.2.0 (clawdesk-plugin-weather)" in done.stdout
    assert listed(world, venv, registry) == {"geocoding": "1.5.2", "weather": "1.2.0"}


def test_install_a_source_archive_with_uv(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path
) -> None:
    project = copy_project(GEOCODING, tmp_path / "geocoding")
    world.run("build", "--sdist", "--out-dir", tmp_path / "dist", project, env=world.env())
    (sdist,) = (tmp_path / "dist").glob("*.tar.gz")

    done = clawhost(world, venv, "plugins", "install", sdist, registry=registry)

    assert done.returncode == 0, done.stderr
    assert listed(world, venv, registry) == {"geocoding": "1.5.2"}


def test_install_a_git_branch_then_update_and_uninstall_with_uv(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path
) -> None:
    repository = copy_project(GEOCODING, tmp_path / "repository")

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=repository,
            check=True,
            capture_output=True,
        )

    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-qm", "1.5.2")
    git("checkout", "-qb", "v1.7")
    copy_project(GEOCODING, tmp_path / "scratch", version="1.7.0")
    for file in ("pyproject.toml", "src/clawdesk_plugin_geocoding/plugin.toml"):
        shutil.copyfile(tmp_path / "scratch" / file, repository / file)
    git("commit", "-qam", "1.7.0")
    git("checkout", "-q", "main")

    installed = clawhost(
        world,
        venv,
        "plugins",
        "install",
        repository.as_uri(),
        "--branch",
        "v1.7",
        registry=registry,
    )

    assert installed.returncode == 0, installed.stderr
    assert f"Fetching {repository.as_uri()} (branch v1.7)" in installed.stdout
    assert listed(world, venv, registry) == {"geocoding": "1.7.0"}

    build_wheel(copy_project(GEOCODING, tmp_path / "newer", version="1.8.0"), registry)
    updated = clawhost(world, venv, "plugins", "update", "geocoding", registry=registry)

    assert updated.returncode == 0, updated.stderr
    assert "geocoding: 1.7.0 -> 1.8.0" in updated.stdout
    assert "Updated geocoding 1.8.0 (clawdesk-plugin-geocoding)" in updated.stdout
    assert listed(world, venv, registry) == {"geocoding": "1.8.0"}

    removed = clawhost(world, venv, "plugins", "uninstall", "--yes", "geocoding", registry=registry)

    assert removed.returncode == 0, removed.stderr
    assert "Uninstalled geocoding (clawdesk-plugin-geocoding)" in removed.stdout
    assert listed(world, venv, registry) == {}


def test_a_conflict_is_refused_with_uv_as_with_pip_unless_forced(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path
) -> None:
    build_wheel(GEOCODING, registry)
    first = clawhost(world, venv, "plugins", "install", WEATHER, registry=registry)
    assert first.returncode == 0, first.stderr
    new_plugin = plugin_project(tmp_path, "new-plugin", requires={"geocoding": ">=2.0.0"})

    refused = clawhost(world, venv, "plugins", "install", new_plugin, registry=registry)
    forced = clawhost(world, venv, "plugins", "install", "--force", new_plugin, registry=registry)

    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: Dependency conflict detected\n")
    assert "  weather v1.2.0 requires geocoding ^1.5.0" in refused.stderr
    assert f"Use 'clawhost plugins install {new_plugin} --force' to override" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert "Going ahead despite the conflict (--force)." in forced.stderr
    assert listed(world, venv, registry)["new-plugin"] == "1.0.0"


def test_installer_uv_can_be_asked_for_by_option_or_variable(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path
) -> None:
    project = plugin_project(tmp_path, "chosen")
    other = plugin_project(tmp_path, "variable")

    by_option = clawhost(
        world, venv, "plugins", "install", "--installer", "uv", project, registry=registry
    )
    by_variable = clawhost(
        world, venv, "plugins", "install", other, registry=registry, CLAWHOST_INSTALLER="uv"
    )

    assert by_option.returncode == 0, by_option.stderr
    assert by_variable.returncode == 0, by_variable.stderr
    assert listed(world, venv, registry) == {"chosen": "1.0.0", "variable": "1.0.0"}


@pytest.mark.parametrize("command", ["install", "update", "uninstall"])
def test_installer_pip_in_a_uv_environment_is_a_clear_error(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path, command: str
) -> None:
    project = plugin_project(tmp_path, "unwanted")
    arguments = {"install": [project], "update": [], "uninstall": ["--yes", "unwanted"]}
    if command != "install":  # something to update or uninstall
        first = clawhost(world, venv, "plugins", "install", project, registry=registry)
        assert first.returncode == 0, first.stderr

    asked = ["plugins", command, "--installer", "pip", *arguments[command]]

    done = clawhost(world, venv, *asked, registry=registry)

    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: --installer pip: {venv} has no pip (an environment made by uv has none); "
        f"use --installer uv, or add pip to it: uv pip install --python {venv} pip"
    )
    expected = {} if command == "install" else {"unwanted": "1.0.0"}
    assert listed(world, venv, registry) == expected


def test_without_uv_anywhere_a_pipless_environment_says_what_to_do(
    world: UvWorld, venv: Path, registry: Path, tmp_path: Path
) -> None:
    project = plugin_project(tmp_path, "stranded")
    env = world.env(registry)
    env["PATH"] = os.pathsep.join(
        folder for folder in env["PATH"].split(os.pathsep) if not (Path(folder) / "uv").exists()
    )
    env.pop("UV", None)

    done = subprocess.run(
        [venv.parent / "clawhost", "plugins", "install", project],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )

    assert done.returncode == 1
    assert f"Error: {venv} is an environment made by uv, which has no pip" in done.stderr
    assert "uv cannot be found: put uv on PATH or set UV to its path" in done.stderr


def test_doctor_names_the_installer_plugins_install_would_use(
    world: UvWorld, venv: Path, registry: Path
) -> None:
    env = world.env(registry)
    found = clawhost(world, venv, "doctor", "--json", "--no-activate", registry=registry)
    env["PATH"] = os.pathsep.join(
        folder for folder in env["PATH"].split(os.pathsep) if not (Path(folder) / "uv").exists()
    )
    env.pop("UV", None)
    stranded = subprocess.run(
        [venv.parent / "clawhost", "doctor", "--json", "--no-activate"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )

    def installer(done: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
        findings = json.loads(done.stdout)["findings"]
        return [
            (f["severity"], f["problem"], f["message"])
            for f in findings
            if f["problem"] in ("Installer", "No installer")
        ]

    assert installer(found) == [
        ("info", "Installer", f"plugins are installed with uv ({world.uv})")
    ], found.stderr
    ((severity, problem, message),) = installer(stranded)
    assert (severity, problem) == ("warning", "No installer")
    assert f"{venv} is an environment made by uv, which has no pip" in message
