"""Running pip (or uv) and git: argument lists only, never a shell, SPECs after ``--``.

pip is used through the running interpreter (``python -m pip``), so plugins go into the
environment clawhost runs in. In an environment uv manages that has no pip, uv is used
instead (``uv pip install --python <this interpreter>``). pip and git read their usual
configuration (``PIP_INDEX_URL``, ``pip.conf``, credentials helpers): the command adds
none of its own.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from clawhost.errors import InstallerFailed, InstallError

from .spec import GIT_PROTOCOLS

__all__ = ["Installer", "detect_installer", "git_clone", "run_tool"]

Tool = Literal["pip", "uv"]


def run_tool(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    echo: bool = False,
) -> str:
    """Run ``command``; returns its output, or raises ``InstallerFailed`` with its end."""
    try:
        finished = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            errors="replace",
            env={**os.environ, **(env or {})},
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise InstallError(f"{command[0]} is not installed (or not on PATH)") from None
    output = finished.stdout + finished.stderr
    if echo and output.strip():
        print(output.rstrip(), file=sys.stderr)
    if finished.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise InstallerFailed(tuple(command), finished.returncode, tail)
    return output


@dataclass(frozen=True)
class Installer:
    """pip or uv, acting on the environment of ``python``."""

    tool: Tool
    python: str = sys.executable
    echo: bool = False

    def _pip(self, *arguments: str) -> list[str]:
        if self.tool == "pip":
            return [self.python, "-m", "pip", *arguments, "--disable-pip-version-check"]
        uv = shutil.which("uv") or "uv"
        return [uv, "pip", *arguments, "--python", self.python]

    def build_wheel(self, source: str, destination: Path, *, no_build_isolation: bool) -> Path:
        """Build (or, for a requirement, fetch) one wheel of ``source`` without its
        dependencies; returns it."""
        destination.mkdir(parents=True, exist_ok=True)
        before = set(destination.glob("*.whl"))
        isolation = ["--no-build-isolation"] if no_build_isolation else []
        if self.tool == "pip":
            command = self._pip("wheel", "--no-deps", "--wheel-dir", os.fspath(destination))
        else:
            uv = shutil.which("uv") or "uv"
            command = [uv, "build", "--wheel", "--out-dir", os.fspath(destination)]
        run_tool([*command, *isolation, "--", source], echo=self.echo)
        built = sorted(set(destination.glob("*.whl")) - before) or sorted(before)
        if not built:
            raise InstallError(f"building {source} produced no wheel")
        return built[-1]

    def install_target(self, requirement: str, target: Path) -> None:
        """Install ``requirement`` alone into a scratch folder (uv's way to fetch one)."""
        run_tool(
            [*self._pip("install", "--no-deps", "--target", os.fspath(target)), "--", requirement],
            echo=self.echo,
        )

    def install(
        self,
        items: Sequence[str],
        *,
        target: Path | None = None,
        reinstall: bool = False,
        no_deps: bool = False,
        no_build_isolation: bool = False,
    ) -> None:
        """Install wheels or requirements (with their dependencies unless ``no_deps``).

        ``reinstall`` replaces an installed distribution of the same version (a rebuilt
        local project); it implies ``no_deps``, so dependencies are never reinstalled.
        """
        options = ["install"]
        if target is not None:
            options += ["--target", os.fspath(target), "--upgrade"]
        if reinstall:
            options += ["--force-reinstall" if self.tool == "pip" else "--reinstall"]
        if no_deps or reinstall:
            options.append("--no-deps")
        if no_build_isolation:
            options.append("--no-build-isolation")
        run_tool([*self._pip(*options), "--", *items], echo=self.echo)

    def uninstall(self, distributions: Sequence[str]) -> None:
        """Uninstall distributions by name."""
        options = ["uninstall", "-y"] if self.tool == "pip" else ["uninstall"]
        run_tool([*self._pip(*options), "--", *distributions], echo=self.echo)


def detect_installer(*, echo: bool = False) -> Installer:
    """pip when this interpreter has it; uv in a uv-managed environment without pip."""
    if importlib.util.find_spec("pip") is not None:
        return Installer("pip", echo=echo)
    if shutil.which("uv") is not None and _uv_managed():
        return Installer("uv", echo=echo)
    raise InstallError(
        f"{sys.executable} has no pip (and this is not a uv environment): "
        f"run '{sys.executable} -m ensurepip' first"
    )


def _uv_managed() -> bool:
    try:
        text = (Path(sys.prefix) / "pyvenv.cfg").read_text("utf-8")
    except OSError:
        return False
    return any(line.split("=")[0].strip() == "uv" for line in text.splitlines())


def git_clone(url: str, destination: Path, *, branch: str | None, echo: bool = False) -> Path:
    """A shallow clone of ``url`` (its ``branch`` or tag) into ``destination``."""
    command = ["git", "clone", "--quiet", "--depth", "1", "--no-recurse-submodules"]
    if branch is not None:
        command += ["--branch", branch]
    environment = {
        # Only real transports: "ext::" would run a command, even from a submodule.
        "GIT_ALLOW_PROTOCOL": ":".join(GIT_PROTOCOLS),
        "GIT_TERMINAL_PROMPT": "0",
    }
    run_tool([*command, "--", url, os.fspath(destination)], env=environment, echo=echo)
    return destination
