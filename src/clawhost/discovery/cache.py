"""The persistent discovery cache.

A cache file is keyed by the interpreter, the entry-point group, the search path and the
plugin directories. Inside, it records a stamp of what discovery read:

* the mtime of every path entry and plugin directory (and of each plugin directory's
  sub-folders): installing, upgrading or removing a distribution creates or deletes a
  metadata directory there, which changes it. Files a wheel installed beside its
  ``.dist-info`` (its ``entry_points.txt``, its package's ``plugin.toml``) change only
  that way, so they are covered by this stamp, which is the rule Python's own import
  system uses to cache directory listings;
* the mtime and size of every other file read: manifests of directory plugins and of
  editable installs, which are edited in place.

A warm start checks those stamps (one ``stat`` each: a few per path entry, plus one per
development plugin, whatever the number of installed ones) and re-reads nothing else.

Like git's index, the cache refuses to trust a stamp it could not tell apart from a later
edit: if anything read was modified within ``RACY_WINDOW_NS`` of the save, nothing is
saved, so an edit made in the same clock tick is never missed.

The file is written with ``marshal`` (the fastest loader in the standard library, and the
key pins the interpreter version, so the format always matches). The plugin records are
one blob at its end, read and decoded on first use (``CachedPlugins``): a warm load reads
the header, checks the stamps and leaves the records on disk, whatever their number. Off switches:
``discover_plugins(cache=False)``, ``PluginHost(cache=False)``, or ``CLAWHOST_NO_CACHE=1``.
The directory is the user's cache directory (``platformdirs``) unless
``CLAWHOST_CACHE_DIR`` names another.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydantic

from clawhost._version import __version__
from clawhost.discovery.discovered import CachedPlugins, Diagnostic, DiscoveryResult
from clawhost.discovery.entrypoints import ScanStamps, read_descriptor

__all__ = ["DiscoveryCache", "cache_disabled_by_environment", "invalidate_discovery_cache"]

logger = logging.getLogger("clawhost.cache")

CACHE_FORMAT = 3
RACY_WINDOW_NS = 2_000_000_000
_FIRST_READ = 1 << 16
_MAGIC = b"clawhost-discovery\x00"


def cache_disabled_by_environment() -> bool:
    """Whether ``CLAWHOST_NO_CACHE`` asks for no discovery cache."""
    return os.environ.get("CLAWHOST_NO_CACHE", "").strip().lower() not in ("", "0", "false", "no")


def default_cache_directory() -> Path:
    """``CLAWHOST_CACHE_DIR``, else the platform's user cache directory for clawhost."""
    override = os.environ.get("CLAWHOST_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("clawhost", appauthor=False))


class DiscoveryCache:
    """Discovery results stored in one directory, one file per discovery key."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    @classmethod
    def default(cls) -> DiscoveryCache:
        """The cache in ``CLAWHOST_CACHE_DIR`` or the user's cache directory."""
        return cls(default_cache_directory())

    def __repr__(self) -> str:
        return f"DiscoveryCache({str(self.directory)!r})"

    @staticmethod
    def _key(group: str, path: Sequence[str], dirs: Sequence[Path]) -> tuple[Any, ...]:
        # Cached manifests are re-validated lazily, so the validating libraries are part of
        # the key: an upgrade of either starts afresh.
        return (
            CACHE_FORMAT,
            __version__,
            pydantic.VERSION,
            sys.version,
            sys.executable,
            group,
            tuple(path),
            tuple(str(directory) for directory in dirs),
        )

    def file_for(self, group: str, path: Sequence[str], dirs: Sequence[Path]) -> Path:
        """The cache file for one discovery key."""
        key = repr(self._key(group, path, dirs)).encode()
        digest = hashlib.blake2b(key, digest_size=10).hexdigest()
        return self.directory / f"discovery-{digest}.bin"

    def load(self, group: str, path: Sequence[str], dirs: Sequence[Path]) -> DiscoveryResult | None:
        """The cached result if every stamp still matches, else ``None``."""
        file = self.file_for(group, path, dirs)
        try:
            header, rows = _read_cache_file(file)
            key, directories, files, count, diagnostics, token = header
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError, TypeError) as exc:
            logger.debug("ignoring unreadable discovery cache %s: %s", file, exc)
            return None
        if key != self._key(group, path, dirs) or not _stamps_match(directories, files):
            if isinstance(rows, _Deferred):
                rows.close()
            return None
        try:
            if not isinstance(count, int):
                raise TypeError("the record count is not a number")
            plugins = CachedPlugins(rows, count, token=token)
            found = tuple(Diagnostic.from_dict(item) for item in diagnostics)
        except (KeyError, TypeError, ValueError) as exc:
            logger.debug("ignoring malformed discovery cache %s: %s", file, exc)
            return None
        return DiscoveryResult(plugins, found, from_cache=True)

    def save(
        self,
        group: str,
        path: Sequence[str],
        dirs: Sequence[Path],
        result: DiscoveryResult,
        stamps: ScanStamps,
        *,
        token: str | None = None,
    ) -> bool:
        """Store ``result``; returns whether it was stored (racy stamps or I/O errors skip).

        ``token`` names this content (``CachedPlugins.token``); a random one by default.
        """
        newest = max(
            [*stamps.directories.values(), *(stamp[0] for stamp in stamps.files.values()), 0]
        )
        if newest > time.time_ns() - RACY_WINDOW_NS:
            logger.debug("not caching discovery: something it read was modified just now")
            return False
        document = (
            self._key(group, path, dirs),
            stamps.directories,
            stamps.files,
            len(result.plugins),
            [diagnostic.to_dict() for diagnostic in result.diagnostics],
            token or os.urandom(8).hex(),  # names this content: warm starts are keyed by it
        )
        rows = marshal.dumps([plugin.to_row() for plugin in result.plugins])
        file = self.file_for(group, path, dirs)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".discovery-")
            with os.fdopen(descriptor, "wb") as handle:
                header = marshal.dumps(document)
                handle.write(_MAGIC + len(header).to_bytes(8, "little"))
                handle.write(header)
                handle.write(rows)
            os.replace(temporary, file)
        except OSError as exc:
            logger.debug("could not write discovery cache %s: %s", file, exc)
            return False
        return True

    def invalidate(self) -> int:
        """Delete every cache file; returns how many were removed."""
        removed = 0
        try:
            files = [
                *self.directory.glob("discovery-*.bin"),
                *self.directory.glob("start-*.bin"),  # hosts' warm starts (host.warmstart)
            ]
        except OSError:
            return 0
        for file in files:
            try:
                file.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        return removed


def _read_cache_file(file: Path) -> tuple[Any, bytes | _Deferred]:
    """The header of a cache file, and its plugin records still encoded.

    The first read takes the header (and, for a small file, everything). The rest is left
    on disk, open, until ``CachedPlugins`` decodes it (``_Deferred``): the descriptor keeps
    reading this version of the file even if another process replaces it meanwhile.
    """
    descriptor = os.open(file, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    handed_over = False
    try:
        size = os.fstat(descriptor).st_size
        pread = getattr(os, "pread", None)
        if pread is None:  # Windows: read it all
            head = read_descriptor(descriptor, size + 1)
        else:
            head = pread(descriptor, min(size, _FIRST_READ), 0)
        start = len(_MAGIC) + 8
        if head[: len(_MAGIC)] != _MAGIC or len(head) < start:
            raise ValueError("not a clawhost discovery cache file")
        end = start + int.from_bytes(head[len(_MAGIC) : start], "little")
        if end > size:
            raise EOFError("truncated cache file")
        if end > len(head):
            assert pread is not None
            head += pread(descriptor, end - len(head), len(head))
        header = marshal.loads(head[start:end])
        if size <= len(head):
            return header, head[end:]
        handed_over = True
        return header, _Deferred(descriptor, end, size - end)
    finally:
        if not handed_over:
            os.close(descriptor)


class _Deferred:
    """The records of a cache file, read from its open descriptor when first needed."""

    def __init__(self, descriptor: int, offset: int, size: int) -> None:
        self._descriptor = descriptor
        self._offset = offset
        self._size = size
        self._close = weakref.finalize(self, os.close, descriptor)

    def close(self) -> None:
        self._close()

    def __call__(self) -> bytes:
        try:
            chunks = []
            offset, left = self._offset, self._size
            while left:
                chunk = os.pread(self._descriptor, left, offset)
                if not chunk:
                    raise EOFError("the cache file was cut short")
                chunks.append(chunk)
                offset += len(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            self.close()


def _stamps_match(directories: dict[str, int], files: dict[str, tuple[int, int]]) -> bool:
    stat = os.stat
    for name, mtime in directories.items():
        try:
            if stat(name).st_mtime_ns != mtime:
                return False
        except OSError:
            if mtime != -1:
                return False
    for name, (mtime, size) in files.items():
        try:
            status = stat(name)
        except OSError:
            if mtime != -1:
                return False
            continue
        if status.st_mtime_ns != mtime or status.st_size != size:
            return False
    return True


def invalidate_discovery_cache(directory: Path | str | None = None) -> int:
    """Delete the discovery cache (the default one unless ``directory`` names another)."""
    cache = DiscoveryCache(directory) if directory is not None else DiscoveryCache.default()
    return cache.invalidate()
