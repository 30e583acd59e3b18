"""Every example plugin's own test suite passes, run as its author would run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLE_PROJECTS


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["in-process", "process"])
@pytest.mark.parametrize("project", EXAMPLE_PROJECTS, ids=lambda path: path.name)
def test_the_example_plugins_own_tests_pass(project: Path, isolation: str, tmp_path: Path) -> None:
    """In both modes: ``--clawhost-isolation=process`` runs every plugin of every
    ``clawhost_host`` in a worker process, with the tests unchanged."""
    env = {**os.environ, "CLAWHOST_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", f"--clawhost-isolation={isolation}"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )

    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout
