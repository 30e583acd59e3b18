"""What every command shares: the global options, the host config, and logging.

``--config FILE`` (default ``$CLAWHOST_CONFIG``, else ``./config.toml`` when it exists,
else none: every default), ``--path DIR`` (look for installed plugins only there),
``--log-level`` and ``--debug``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawhost.config.host import HostConfig
    from clawhost.host.host import PluginHost

__all__ = ["DEFAULT_CONFIG", "AppState", "cli_logging", "find_config"]

DEFAULT_CONFIG = "config.toml"
LEVELS = ("debug", "info", "warning", "error")
#: Above every level: management commands print what they found themselves.
SILENT = logging.CRITICAL + 10


def find_config(given: Path | None) -> tuple[Path | None, bool]:
    """The config file to use and whether it was asked for (``--config`` or the variable).

    Without either, ``./config.toml`` is used when it exists; otherwise there is no file.
    """
    if given is not None:
        return given.expanduser().absolute(), True
    default = Path(DEFAULT_CONFIG)
    if default.is_file():
        return default.absolute(), False
    return None, False


@dataclass
class AppState:
    """The global options, and what is derived from them once per command."""

    config_file: Path | None = None
    config_explicit: bool = False
    paths: tuple[Path, ...] = ()
    log_level: str | None = None
    debug: bool = False
    _config: HostConfig | None = field(default=None, repr=False)

    def load_config(self) -> HostConfig:
        """The host configuration (every default when there is no file); ``ConfigError``
        when the file is invalid."""
        if self._config is None:
            from clawhost.config.host import HostConfig, load_host_config

            if self.config_file is None:
                self._config = HostConfig()
            else:
                self._config = load_host_config(self.config_file)
        return self._config

    @property
    def search_path(self) -> list[str] | None:
        """Where installed plugins are looked for: ``--path`` folders, else ``sys.path``."""
        return [os.fspath(path) for path in self.paths] if self.paths else None

    def config_target(self) -> Path:
        """The file ``enable``/``disable`` write: the config in use, else ``./config.toml``."""
        return self.config_file or Path(DEFAULT_CONFIG).absolute()

    def host(self, *, cache: bool = True, **options: Any) -> PluginHost:
        """A host for this configuration; nothing is discovered or imported yet."""
        from clawhost.host.host import PluginHost

        return PluginHost(config=self.load_config(), path=self.search_path, cache=cache, **options)

    def import_paths(self) -> None:
        """Make plugins installed in ``--path`` folders importable (gateway, probes)."""
        for path in reversed(self.paths):
            text = os.fspath(path)
            if text not in sys.path:
                sys.path.insert(0, text)

    def level_for(self, default: str | None) -> int:
        """The logging level: ``--debug``, else ``--log-level``, else the command's own."""
        if self.debug:
            return logging.DEBUG
        chosen = self.log_level or default
        return SILENT if chosen is None else logging.getLevelName(chosen.upper())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not setStream(): it flushes the old, maybe closed, stream
        super().emit(record)


@contextmanager
def cli_logging(level: int) -> Iterator[None]:
    """Show the ``clawhost.*`` loggers' records at ``level`` and above as ``[INFO] ...``.

    At ``SILENT`` nothing is shown, and Python's last-resort handler is kept from printing
    warnings the command reports itself.
    """
    logger = logging.getLogger("clawhost")
    handler = _StderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(levelname)s] %(message)s"))
    handler.setLevel(level)
    previous = logger.level
    if level != SILENT and (previous == logging.NOTSET or previous > level):
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
