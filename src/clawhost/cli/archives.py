"""Archives checked before use: no member may land outside the folder it is unpacked into.

Every member is checked, before anything is written: absolute names, ``..`` components,
drive letters and backslash paths, links (symbolic or hard) whose target leaves the
folder, and device or FIFO files are refused with ``UnsafeArchive``. Extraction then also
uses the standard library's ``data`` filter, as a second line of defence. A wheel is a zip
file and is checked the same way (and may hold no links at all).
"""

from __future__ import annotations

import posixpath
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from clawhost.errors import UnsafeArchive

__all__ = ["check_tar", "check_zip", "extract_archive"]


def _check_name(archive: Path, name: str) -> str:
    """The member's normalised relative name; ``UnsafeArchive`` if it could escape."""
    if not name or "\0" in name:
        raise UnsafeArchive(archive, name, "has an empty or NUL-containing name")
    if "\\" in name:
        raise UnsafeArchive(archive, name, "uses backslashes, which some systems read as folders")
    if name.startswith("/") or PurePosixPath(name).is_absolute():
        raise UnsafeArchive(archive, name, "is an absolute path")
    if len(name) > 1 and name[1] == ":":
        raise UnsafeArchive(archive, name, "names a drive")
    parts = PurePosixPath(name).parts
    if ".." in parts:
        raise UnsafeArchive(archive, name, "has a '..' component")
    return posixpath.normpath(name)


def _check_link(archive: Path, name: str, target: str, *, hard: bool) -> None:
    if not target:
        raise UnsafeArchive(archive, name, "is a link with no target")
    if target.startswith("/") or "\\" in target or (len(target) > 1 and target[1] == ":"):
        raise UnsafeArchive(archive, name, f"is a link to the absolute path {target!r}")
    # A hard link's target is relative to the archive root; a symlink's to its folder.
    base = "" if hard else posixpath.dirname(name)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise UnsafeArchive(archive, name, f"is a link pointing outside the archive ({target!r})")


def check_tar(archive: Path) -> list[str]:
    """Check every member of a tar archive; returns their names."""
    names: list[str] = []
    try:
        with tarfile.open(archive) as handle:
            for member in handle.getmembers():
                name = _check_name(archive, member.name)
                if member.issym() or member.islnk():
                    _check_link(archive, member.name, member.linkname, hard=member.islnk())
                elif not (member.isfile() or member.isdir()):
                    raise UnsafeArchive(archive, member.name, "is a device, FIFO or special file")
                names.append(name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsafeArchive(archive, "", f"cannot be read as a tar archive: {exc}") from None
    return names


def check_zip(archive: Path, *, links: bool = False) -> list[str]:
    """Check every member of a zip archive (a wheel: ``links=False`` refuses any link)."""
    names: list[str] = []
    try:
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                name = _check_name(archive, info.filename)
                mode = info.external_attr >> 16
                if stat.S_ISLNK(mode):
                    if not links:
                        raise UnsafeArchive(archive, info.filename, "is a symbolic link")
                    target = handle.read(info).decode("utf-8", "replace")
                    _check_link(archive, info.filename, target, hard=False)
                names.append(name)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(archive, "", f"cannot be read as a zip archive: {exc}") from None
    return names


def extract_archive(archive: Path, destination: Path) -> Path:
    """Check, then unpack a source archive into ``destination``; returns the project
    folder in it (the single top-level folder an sdist has, else ``destination``)."""
    destination.mkdir(parents=True, exist_ok=True)
    if archive.name.lower().endswith(".zip"):
        names = check_zip(archive, links=False)
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(destination)
    else:
        names = check_tar(archive)
        with tarfile.open(archive) as handle:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                handle.extractall(destination, filter="data")
            else:  # every member was checked above
                handle.extractall(destination)
    tops = {name.split("/", 1)[0] for name in names if name not in (".", "")}
    if len(tops) == 1:
        (top,) = tops
        folder = destination / top
        if folder.is_dir():
            return folder
    return destination
