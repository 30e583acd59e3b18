"""Real uv environments for the tests: made by ``uv venv`` (so they hold no pip), filled by
uv, offline.

uv never reaches an index here. Its "registry" is a folder of wheels (``--find-links``):
every distribution ``clawhost[cli]`` and hatchling need, packed back into a wheel from
the files this test environment has installed (their RECORD lists them), plus whatever
plugin wheels a test adds. ``UV_OFFLINE`` and ``UV_NO_INDEX`` keep uv off the network, and
a cache of the session's own keeps the user's uv cache out of it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path

from ._cli import REPO, offline_env

__all__ = ["UvWorld", "find_uv", "pack_installed", "requirement_closure"]

#: What a uv environment with clawhost's CLI needs, and what building a plugin needs.
BASE_REQUIREMENTS = ("clawhost[cli]", "hatchling>=1.25")
#: Written by an installer, not part of a wheel.
_INSTALLER_FILES = frozenset(
    {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "uv_cache.json", "uv_build.json"}
)


def find_uv() -> str | None:
    """The uv binary: the one the ``uv`` package ships (the test extra depends on it),
    else one on ``PATH``."""
    try:
        import uv
    except ImportError:
        return shutil.which("uv")
    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


def requirement_closure(requirements: Iterable[str]) -> list[metadata.Distribution]:
    """The installed distributions ``requirements`` need, transitively (extras and
    markers evaluated as installers do)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    queue = [Requirement(text) for text in requirements]
    while queue:
        requirement = queue.pop()
        name = canonicalize_name(requirement.name)
        extras = ("", *sorted(requirement.extras))
        if all((name, extra) in done for extra in extras):
            continue
        distribution = found.get(name) or metadata.distribution(requirement.name)
        found[name] = distribution
        for line in distribution.requires or ():
            needed = Requirement(line)
            for extra in extras:
                if (name, extra) in done:
                    continue
                if needed.marker is None or needed.marker.evaluate({"extra": extra}):
                    queue.append(needed)
                    break
        done.update((name, extra) for extra in extras)
    return sorted(found.values(), key=lambda d: canonicalize_name(d.metadata["Name"]))


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode('ascii')}"


def _tag(wheel_text: str) -> str:
    """``py2.py3-none-any`` from a WHEEL file's ``Tag:`` lines."""
    tags = [line.split(":", 1)[1].strip() for line in wheel_text.splitlines() if line[:4] == "Tag:"]
    parts: list[dict[str, None]] = [{}, {}, {}]
    for tag in tags or ["py3-none-any"]:
        for index, part in enumerate(tag.split("-")):
            parts[index][part] = None
    return "-".join(".".join(part) for part in parts)


def pack_installed(distribution: metadata.Distribution, out: Path) -> Path:
    """A wheel of an installed distribution, made of the files its RECORD lists (inside
    site-packages: scripts are the installer's to write) with a fresh RECORD."""
    files = distribution.files
    name = distribution.metadata["Name"]
    if not files:
        raise RuntimeError(f"{name} has no RECORD: it cannot be packed into a wheel")
    dist_info = next(
        str(file.parts[0])
        for file in files
        if len(file.parts) == 2 and file.parts[0].endswith(".dist-info") and file.name == "METADATA"
    )
    wheel_file = Path(str(distribution.locate_file(f"{dist_info}/WHEEL")))
    wheel_text = (
        wheel_file.read_text("utf-8")
        if wheel_file.is_file()
        else "Wheel-Version: 1.0\nGenerator: clawhost-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    stem = name.replace("-", "_").replace(".", "_")
    path = out / f"{stem}-{distribution.version}-{_tag(wheel_text)}.whl"
    out.mkdir(parents=True, exist_ok=True)
    records: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in files:
            relative = file.as_posix()
            if (
                relative.startswith("../")
                or "__pycache__" in file.parts
                or (file.parts[0] == dist_info and file.name in _INSTALLER_FILES)
                or (file.parts[0] == dist_info and file.name == "WHEEL")
            ):
                continue
            source = Path(str(distribution.locate_file(file)))
            if not source.is_file():
                continue
            data = source.read_bytes()
            wheel.write(source, relative)
            records.append(f"{relative},{_record_hash(data)},{len(data)}")
        wheel.writestr(f"{dist_info}/WHEEL", wheel_text)
        records.append(f"{dist_info}/WHEEL,{_record_hash(wheel_text.encode())},")
        records.append(f"{dist_info}/RECORD,,")
        wheel.writestr(f"{dist_info}/RECORD", "\n".join(records) + "\n")
    return path


class UvWorld:
    """uv, an offline wheelhouse for it, and a cache of its own: makes environments."""

    def __init__(self, uv: str, root: Path) -> None:
        from packaging.utils import canonicalize_name

        self.uv = uv
        self.root = root
        self.registry = root / "registry"
        self.cache = root / "cache"
        self.registry.mkdir(parents=True, exist_ok=True)
        for distribution in requirement_closure(BASE_REQUIREMENTS):
            if canonicalize_name(distribution.metadata["Name"]) not in ("clawhost", "pip"):
                pack_installed(distribution, self.registry)
        # A `pip` that would tell on anyone calling it: these environments must not.
        self.tattle = root / "no-pip"
        self.tattle.mkdir(exist_ok=True)
        self.pip_calls = root / "pip-was-called"
        for script in ("pip", "pip3"):
            shim = self.tattle / script
            shim.write_text(f'#!/bin/sh\necho "$0 $*" >> {self.pip_calls}\nexit 3\n', "utf-8")
            shim.chmod(0o755)

    def env(self, *find_links: Path, **extra: str) -> dict[str, str]:
        """The environment the environments' commands run in: uv offline, on PATH."""
        environ = offline_env(**extra)
        for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "UV_PYTHON", "UV_PROJECT_ENVIRONMENT"):
            environ.pop(name, None)
        environ.update(
            UV_OFFLINE="1",
            UV_NO_INDEX="1",
            UV_FIND_LINKS=",".join(os.fspath(p) for p in (self.registry, *find_links)),
            UV_CACHE_DIR=os.fspath(self.cache),
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_CONFIG="1",
            UV_LINK_MODE="copy",
            PATH=os.pathsep.join(
                [os.fspath(self.tattle), str(Path(self.uv).parent), environ.get("PATH", "")]
            ),
        )
        return environ

    def venv(self, path: Path) -> Path:
        """A new environment made by ``uv venv`` with clawhost (and its CLI) installed by
        ``uv pip install``; returns its python."""
        env = self.env()
        subprocess.run(
            [self.uv, "venv", "--quiet", "--python", sys.executable, os.fspath(path)],
            check=True,
            env=env,
            capture_output=True,
        )
        python = path / "bin" / "python"
        self.run("pip", "install", "--quiet", "--python", python, f"{REPO}[cli]", env=env)
        return python

    def run(
        self, *args: str | os.PathLike[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run uv; raises with its output when it fails."""
        done = subprocess.run(
            [self.uv, *map(os.fspath, args)],
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else self.env(),
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"uv {' '.join(map(str, args))} failed:\n{done.stderr}")
        return done
