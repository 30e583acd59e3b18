"""Every error clawhost raises, as data.

Each error carries structured fields (the plugin, the file, the field, the requirement)
and builds its message from them, so the CLI, logs and tests read fields instead of
parsing text. Where the meaning matches a builtin, the error subclasses it too
(``ValueError``, ``LookupError``, ``PermissionError``, ``TimeoutError``).

The tree::

    ClawhostError
     ├── ManifestError (ValueError)        a plugin.toml that cannot be used; .problems
     └── DiscoveryError                    discovery could not run at all (not one plugin)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ClawhostError",
    "DiscoveryError",
    "ManifestError",
    "Problem",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about one field of a file.

    ``field`` is a dotted path into the document (``plugin.capabilities.tools[0]``), or
    ``None`` when the finding concerns the whole file (a TOML syntax error, a size limit).
    """

    field: str | None
    message: str
    expected: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.field or "(file)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        text = f"{where}: {self.message}"
        if self.expected:
            text = f"{text}; expected {self.expected}"
        return text


class ClawhostError(Exception):
    """Base class of every error clawhost raises on purpose."""


class DiscoveryError(ClawhostError):
    """Discovery could not run at all (for example, a plugin directory that is a file).

    Problems with a single plugin never raise this: they become diagnostics and the
    other plugins are still discovered.
    """


class ManifestError(ClawhostError, ValueError):
    """A ``plugin.toml`` that cannot be used, with every problem found in it.

    All problems of one file are reported together, not only the first.
    """

    def __init__(
        self, file: Path | str, problems: tuple[Problem, ...] | list[Problem], plugin: str | None
    ) -> None:
        self.file = Path(file)
        self.problems = tuple(problems)
        self.plugin = plugin
        super().__init__(self._render())

    def _render(self) -> str:
        who = f"plugin {self.plugin!r}" if self.plugin else "plugin"
        count = len(self.problems)
        head = f"{who}: invalid manifest {self.file} ({count} problem{'s' if count != 1 else ''})"
        return "\n".join([head, *(f"  - {problem}" for problem in self.problems)])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.file, self.problems, self.plugin))
