"""Errors of discovery: it could not run, or a plugin's manifest cannot be used."""

from __future__ import annotations

from pathlib import Path

from .base import ClawhostError, Problem


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
