"""Find the entry points of one group across installed distributions, fast.

This reads the same files ``importlib.metadata.entry_points(group=...)`` reads, with the
same precedence (the first distribution of a name on the path wins), but it only looks
for one group: a distribution whose ``entry_points.txt`` does not mention the group costs
one ``read()``. It never imports anything. Path entries that are not directories (zip
archives) are handed to ``importlib.metadata``.

It also stamps every path entry it scanned for the discovery cache: installing, upgrading
or removing a distribution creates or deletes its metadata directory, which changes the
path entry's mtime, so the ``entry_points.txt`` files need no stamps of their own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

__all__ = [
    "FoundEntryPoint",
    "ScanStamps",
    "normalize_distribution_name",
    "read_descriptor",
    "scan_entry_points",
]

_NORMALIZE = re.compile(r"[-_.]+")
_METADATA_SUFFIXES = (".dist-info", ".egg-info")


def normalize_distribution_name(name: str) -> str:
    """PEP 503 normalization: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one distribution."""
    return _NORMALIZE.sub("-", name).lower()


@dataclass(frozen=True, slots=True)
class FoundEntryPoint:
    """One entry point of the group, and the distribution that advertises it."""

    name: str
    value: str
    distribution: str  # PEP 503 normalized, as pip and the index spell it
    distribution_version: str | None  # from the metadata directory name, when it carries one
    metadata_dir: str  # the .dist-info / .egg-info directory
    path_entry: str  # the sys.path entry the distribution was found in


@dataclass(slots=True)
class ScanStamps:
    """What a scan read, for cache validation: ``path -> (mtime_ns, size)``.

    Directories are stamped by mtime only (installing or removing a distribution adds or
    removes a metadata directory, which changes it); files by mtime and size.
    """

    directories: dict[str, int] = field(default_factory=dict)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)

    def stamp_file(self, path: str) -> None:
        try:
            status = os.stat(path)
        except OSError:
            self.files[path] = (-1, -1)
        else:
            self.files[path] = (status.st_mtime_ns, status.st_size)

    def stamp_directory(self, path: str) -> None:
        try:
            self.directories[path] = os.stat(path).st_mtime_ns
        except OSError:
            self.directories[path] = -1


def read_descriptor(descriptor: int, limit: int) -> bytes:
    """Read up to ``limit`` bytes; small reads first (``os.read(n)`` allocates n bytes)."""
    data = os.read(descriptor, 8192)
    if len(data) < 8192:
        return data
    chunks = [data]
    total = len(data)
    while total < limit:
        chunk = os.read(descriptor, min(65536, limit - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _split_metadata_dir(name: str) -> tuple[str, str | None]:
    """``foo_bar-1.2.0.dist-info`` -> (``foo_bar``, ``1.2.0``); versionless egg-info -> None."""
    stem = name.rsplit(".", 1)[0]
    parts = stem.split("-")
    if len(parts) >= 2 and parts[1]:
        return parts[0], parts[1]
    return parts[0], None


def parse_group(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` pairs of one ``[group]`` section of an entry_points.txt.

    The format is INI-like: ``#`` and ``;`` start comments, and a value may end with
    ``[extras]``, which is dropped (clawhost does not install extras).
    """
    pairs: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[" and line[-1] == "]":
            inside = line[1:-1].strip() == group
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()
            pairs.append((name.strip(), value))
    return pairs


def scan_entry_points(
    group: str, path: Sequence[str], stamps: ScanStamps | None = None
) -> Iterator[FoundEntryPoint]:
    """Yield every entry point of ``group`` found on ``path``, in path order."""
    marker = f"[{group}]".encode()
    seen: set[str] = set()
    for entry in path:
        directory = entry or "."
        if stamps is not None:
            stamps.stamp_directory(directory)
        try:
            iterator = os.scandir(directory)
        except NotADirectoryError:
            yield from _scan_archive(group, entry, seen)
            continue
        except OSError:
            continue
        with iterator:
            names = [item.name for item in iterator if item.name.endswith(_METADATA_SUFFIXES)]
        prefix = directory + os.sep
        for name in names:
            raw_name, version = _split_metadata_dir(name)
            # Metadata directory names are already escaped (runs of -_. become _), so a
            # lower() and one replace normalize them; the regex is for other spellings.
            normalized = raw_name.lower().replace("_", "-")
            if normalized in seen:
                continue
            seen.add(normalized)
            metadata_dir = prefix + name
            try:
                descriptor = os.open(metadata_dir + "/entry_points.txt", os.O_RDONLY)
            except OSError:
                continue
            try:
                data = read_descriptor(descriptor, 1 << 20)
            finally:
                os.close(descriptor)
            if marker not in data:
                continue
            for ep_name, value in parse_group(data.decode("utf-8", "replace"), group):
                yield FoundEntryPoint(
                    name=ep_name,
                    value=value,
                    distribution=normalized,
                    distribution_version=version,
                    metadata_dir=metadata_dir,
                    path_entry=directory,
                )


def _scan_archive(group: str, entry: str, seen: set[str]) -> Iterator[FoundEntryPoint]:
    """Zip archives on the path: rare, so the stdlib does the work."""
    import importlib.metadata

    for distribution in importlib.metadata.distributions(path=[entry]):
        name = distribution.metadata["Name"] or ""
        normalized = normalize_distribution_name(name).replace(".", "-")
        if not name or normalized in seen:
            continue
        seen.add(normalized)
        for point in distribution.entry_points.select(group=group):
            yield FoundEntryPoint(
                name=point.name,
                value=point.value,
                distribution=normalized,
                distribution_version=distribution.version,
                metadata_dir=str(getattr(distribution, "_path", entry)),
                path_entry=entry,
            )
