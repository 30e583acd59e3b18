"""Shared fixtures: real wheels of the example plugins, and throw-away install targets."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clawhost import DiscoveryCache

from ._site import SiteDir

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXAMPLE_PROJECTS = sorted(p.parent for p in EXAMPLES.glob("clawdesk-plugin-*/pyproject.toml"))


def pip(*args: str | Path, python: str | Path = sys.executable) -> None:
    """Run pip offline (no index): everything a test installs is built locally."""
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *map(str, args)],
        check=True,
        env={**os.environ, "PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull},
    )


def make_venv(path: Path) -> Path:
    """A new virtual environment that also sees this one's packages; returns its python.

    ``--system-site-packages`` would expose the base interpreter, not this test
    environment, so a ``.pth`` file adds this environment's site directories instead
    (with ``site.addsitedir``, so their own ``.pth`` files, editable installs among them,
    count too); the new environment's own site-packages still comes first.
    """
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    inherited = [
        entry for entry in sys.path if entry.endswith("site-packages") and Path(entry).is_dir()
    ]
    line = f"import site; list(map(site.addsitedir, {inherited!r}))\n"
    Path(purelib, "_clawhost_tests_parent.pth").write_text(line, "utf-8")
    return python


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example plugin built into a real wheel, once per test session."""
    out = tmp_path_factory.mktemp("wheelhouse")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", out, *EXAMPLE_PROJECTS)
    return out


def example_wheel(wheelhouse: Path, project: str) -> Path:
    """The built wheel of one example project (``clawdesk-plugin-weather``)."""
    stem = project.replace("-", "_")
    (wheel,) = wheelhouse.glob(f"{stem}-*.whl")
    return wheel


@pytest.fixture
def installed_examples(wheelhouse: Path, tmp_path: Path) -> Path:
    """A throw-away target directory with every example wheel installed by pip."""
    target = tmp_path / "site-packages"
    pip("install", "--no-deps", "--target", target, *sorted(wheelhouse.glob("*.whl")))
    return target


@pytest.fixture
def cache(tmp_path: Path) -> DiscoveryCache:
    """A discovery cache of the test's own."""
    return DiscoveryCache(tmp_path / "cache")


@pytest.fixture
def site(tmp_path: Path) -> SiteDir:
    """An empty directory to install purpose-built distributions into."""
    return SiteDir(tmp_path / "site")


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Keep every test's discovery cache out of the user's real cache directory."""
    monkeypatch.setenv("CLAWHOST_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    return


@pytest.fixture
def signal_interrupts() -> Iterator[None]:
    """The watchdog interrupts the main thread with a signal (breaks blocking calls)."""
    from clawhost.sandbox.watchdog import disable_signal_interrupts, enable_signal_interrupts

    enable_signal_interrupts()
    try:
        yield
    finally:
        disable_signal_interrupts()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio through anyio's pytest plugin."""
    return "asyncio"
