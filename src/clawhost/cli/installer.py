"""Running pip (or uv) and git: argument lists only, never a shell, SPECs after ``--``.

pip is used through the running interpreter (``python -m pip``), so plugins go into the
environment clawhost runs in. uv is used the same way (``uv pip install --python <this
interpreter>``, ``uv build --python <this interpreter>``): in an environment without pip
(``uv venv`` makes them) it is chosen by itself, and ``--installer uv`` (or
``CLAWHOST_INSTALLER=uv``) chooses it anywhere. pip, uv and git read their usual
configuration (``PIP_INDEX_URL``, ``pip.conf``, ``UV_INDEX_URL``, ``uv.toml``, credentials
helpers): the command adds none of its own.
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

__all__ = ["TOOLS", "Installer", "Tool", "detect_installer", "find_uv", "git_clone", "run_tool"]

Tool = Literal["pip", "uv"]
#: The installers ``--installer`` accepts.
TOOLS: tuple[Tool, ...] = ("pip", "uv")


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


def find_uv() -> str | None:
    """The uv binary: ``$UV`` (uv sets it for the commands it runs), the first ``uv`` on
    ``PATH``, the one beside this interpreter, or the one the ``uv`` Python package
    ships; ``None`` when there is none."""
    given = os.environ.get("UV")
    if given and os.path.isfile(given) and os.access(given, os.X_OK):
        return given
    found = shutil.which("uv")
    if found is not None:
        return found
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    if importlib.util.find_spec("uv") is not None:
        try:
            import uv

            return str(uv.find_uv_bin())
        except (ImportError, FileNotFoundError, AttributeError):
            return None
    return None


def _has_pip() -> bool:
    return importlib.util.find_spec("pip") is not None


@dataclass(frozen=True)
class Installer:
    """pip or uv, acting on the environment of ``python``.

    ``uv`` is the uv binary (``find_uv()`` when left out).
    """

    tool: Tool
    python: str = sys.executable
    echo: bool = False
    uv: str | None = None

    def _uv(self) -> str:
        uv = self.uv or find_uv()
        if uv is None:
            raise InstallError(_NO_UV)
        return uv

    def _pip(self, *arguments: str) -> list[str]:
        if self.tool == "pip":
            return [self.python, "-m", "pip", *arguments, "--disable-pip-version-check"]
        return [self._uv(), "pip", *arguments, "--python", self.python]

    def build_wheel(self, source: str, destination: Path, *, no_build_isolation: bool) -> Path:
        """Build (or, for a requirement, fetch) one wheel of ``source`` without its
        dependencies; returns it."""
        destination.mkdir(parents=True, exist_ok=True)
        before = set(destination.glob("*.whl"))
        isolation = ["--no-build-isolation"] if no_build_isolation else []
        if self.tool == "pip":
            command = self._pip("wheel", "--no-deps", "--wheel-dir", os.fspath(destination))
        else:
            # uv builds with this environment's interpreter; without isolation, in it.
            command = [
                self._uv(),
                "build",
                "--wheel",
                "--out-dir",
                os.fspath(destination),
                "--python",
                self.python,
            ]
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


_NO_UV = "uv is not installed: put it on PATH (https://docs.astral.sh/uv/), or set UV to its path"


def detect_installer(*, echo: bool = False, tool: str | None = None) -> Installer:
    """The installer for the environment clawhost runs in.

    ``tool`` is what ``--installer`` (or ``$CLAWHOST_INSTALLER``) asked for, any text:
    a name not in ``TOOLS`` is an ``InstallError``; without it, pip when the environment has
    it, else uv (an environment made by ``uv venv`` has no pip). ``InstallError`` says
    what is missing and what to do.
    """
    python = sys.executable
    if tool == "pip":
        if _has_pip():
            return Installer("pip", python, echo)
        made_by = " (an environment made by uv has none)" if _uv_managed() else ""
        raise InstallError(
            f"--installer pip: {python} has no pip{made_by}; use --installer uv, or add "
            f"pip to it: uv pip install --python {python} pip"
        )
    if tool == "uv":
        uv = find_uv()
        if uv is None:
            raise InstallError(f"--installer uv: {_NO_UV}")
        return Installer("uv", python, echo, uv)
    if tool is not None:
        raise InstallError(f"unknown installer {tool!r}: one of {', '.join(TOOLS)}")
    if _has_pip():
        return Installer("pip", python, echo)
    uv = find_uv()
    if uv is not None:
        return Installer("uv", python, echo, uv)
    if _uv_managed():
        raise InstallError(
            f"{python} is an environment made by uv, which has no pip, and uv cannot be "
            "found: put uv on PATH or set UV to its path (or add pip: uv pip install "
            f"--python {python} pip)"
        )
    raise InstallError(
        f"{python} has no pip, and uv cannot be found: run '{python} -m ensurepip' first"
    )


def _uv_managed() -> bool:
    """Whether this environment was made by uv (its pyvenv.cfg says so)."""
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
