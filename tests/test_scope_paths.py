"""Real paths as the sandbox checks them: folders new to its cache resolved from their parent."""

from __future__ import annotations

import os
from pathlib import Path

from clawhost.sandbox.scope import resolve_path


def test_a_new_folder_under_a_symlinked_parent_resolves_to_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "real" / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    named = tmp_path / "link" / "pkg" / "__pycache__" / "mod.pyc"
    assert resolve_path(str(named)) == os.path.realpath(named)


def test_a_re_pointed_symlink_parent_is_noticed(tmp_path: Path) -> None:
    for side in ("one", "two"):
        (tmp_path / side / "pkg" / "data").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "one")
    named = str(link / "pkg" / "data" / "file.txt")
    assert resolve_path(named) == str(tmp_path / "one" / "pkg" / "data" / "file.txt")
    link.unlink()
    link.symlink_to(tmp_path / "two")
    assert resolve_path(named) == str(tmp_path / "two" / "pkg" / "data" / "file.txt")


def test_a_folder_that_is_itself_a_symlink_resolves_through_it(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "pkg").symlink_to(tmp_path / "elsewhere")
    named = tmp_path / "site" / "pkg" / "file.txt"
    assert resolve_path(str(named)) == str(tmp_path / "elsewhere" / "file.txt")
