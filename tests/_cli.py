"""Helpers for driving the ``clawhost`` command: in-process runs, throw-away environments,
and purpose-built plugin projects."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import venv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
WEATHER = EXAMPLES / "clawdesk-plugin-weather"
GEOCODING = EXAMPLES / "clawdesk-plugin-geocoding"

#: Rich output wide and plain, so tests read whole lines.
PLAIN = {"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}


def invoke(
    *args: str | os.PathLike[str], env: Mapping[str, str] | None = None, **kw: Any
) -> Result:
    """Run the command in this process (click's CliRunner)."""
    from clawhost.cli.app import cli

    return CliRunner().invoke(
        cli, [os.fspath(arg) for arg in args], env={**PLAIN, **(env or {})}, **kw
    )


def offline_env(*find_links: Path, **extra: str) -> dict[str, str]:
    """This process's environment with pip kept off the network."""
    environ = {
        **os.environ,
        **PLAIN,
        "PIP_NO_INDEX": "1",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }
    environ.pop("CLAWHOST_CONFIG", None)
    if find_links:
        environ["PIP_FIND_LINKS"] = " ".join(os.fspath(path) for path in find_links)
    return environ


def plugin_free_venv(root: Path) -> Path:
    """A virtual environment that sees this one's packages except installed plugins.

    The test environment may have the example plugins installed; a plain inheriting
    environment would see them, and pip would call them already installed. So the
    inherited site folders are mirrored by symlinks, minus every ``clawdesk_plugin_*``
    entry. The environment has no pip of its own: it uses the mirrored one, which
    installs into the environment. Returns its python.
    """
    venv.EnvBuilder(with_pip=False, symlinks=True).create(root)
    view = root / "inherited"
    view.mkdir()
    for folder in [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]:
        for entry in os.scandir(folder):
            link = view / entry.name
            if entry.name.lower().startswith("clawdesk_plugin") or link.exists():
                continue
            link.symlink_to(entry.path)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    purelib = root / "lib" / version / "site-packages"
    line = f"import site; site.addsitedir({os.fspath(view)!r})\n"
    (purelib / "_inherited.pth").write_text(line, "utf-8")
    return root / "bin" / "python"


def run_cli(
    python: Path | str,
    *args: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m clawhost ARGS`` in a subprocess."""
    return subprocess.run(
        [os.fspath(python), "-m", "clawhost", *map(os.fspath, args)],
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else offline_env(),
        cwd=cwd,
        input=input if input is not None else "",
        timeout=timeout,
        check=False,
    )


def pip_install(python: Path, *items: Path | str, env: Mapping[str, str]) -> None:
    """Install with the environment's pip, offline, without dependencies."""
    subprocess.run(
        [os.fspath(python), "-m", "pip", "install", "-q", "--no-deps", *map(os.fspath, items)],
        check=True,
        env=dict(env),
    )


def build_wheel(project: Path, out: Path) -> Path:
    """A wheel of ``project`` in ``out`` (offline, no build isolation)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            os.fspath(out),
            os.fspath(project),
        ],
        check=True,
        env=offline_env(),
    )
    return max(out.glob("*.whl"), key=lambda path: path.stat().st_mtime)


def plugin_project(
    root: Path,
    name: str,
    version: str = "1.0.0",
    *,
    code: str | None = None,
    tools: Sequence[str] = (),
    requires: Mapping[str, str] | None = None,
    manifest_extra: str = "",
    tests: str | None = None,
) -> Path:
    """A minimal buildable plugin project (hatchling) in ``root / name``."""
    package = "clawdesk_plugin_" + name.replace("-", "_")
    project = root / name
    source = project / "src" / package
    source.mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["hatchling>=1.25"]
            build-backend = "hatchling.build"

            [project]
            name = "clawdesk-plugin-{name}"
            version = "{version}"
            requires-python = ">=3.11"
            dependencies = ["clawhost>=0.5"]

            [project.entry-points."clawdesk.plugins"]
            {name} = "{package}"

            [tool.hatch.build.targets.wheel]
            packages = ["src/{package}"]
            """
        ),
        "utf-8",
    )
    listed = ", ".join(f'"{tool}"' for tool in tools)
    deps = "".join(f'{key} = "{value}"\n' for key, value in (requires or {}).items())
    (source / "plugin.toml").write_text(
        f'[plugin]\nname = "{name}"\nversion = "{version}"\n\n'
        f"[plugin.capabilities]\ntools = [{listed}]\n\n"
        f"[plugin.dependencies]\n{deps}\n{textwrap.dedent(manifest_extra)}",
        "utf-8",
    )
    default = "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    pass\n"
    (source / "__init__.py").write_text(textwrap.dedent(code or default), "utf-8")
    if tests is not None:
        (project / "tests").mkdir()
        (project / "tests" / "test_it.py").write_text(textwrap.dedent(tests), "utf-8")
    return project
