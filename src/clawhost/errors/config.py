"""Errors of configuration: a host ``config.toml`` or one plugin's settings."""

from __future__ import annotations

from pathlib import Path

from .base import ClawhostError, Problem


class ConfigError(ClawhostError, ValueError):
    """A host ``config.toml`` that cannot be used, with every problem found in it.

    Each problem's ``field`` is the dotted table and key (``plugins.sandbox.max_concurrency``).
    """

    def __init__(
        self, file: Path | str | None, problems: tuple[Problem, ...] | list[Problem]
    ) -> None:
        self.file = Path(file) if file is not None else None
        self.problems = tuple(problems)
        super().__init__(self._render())

    def _head(self) -> str:
        where = str(self.file) if self.file is not None else "configuration"
        count = len(self.problems)
        return f"invalid {where} ({count} problem{'s' if count != 1 else ''})"

    def _render(self) -> str:
        return "\n".join([self._head(), *(f"  - {problem}" for problem in self.problems)])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.file, self.problems))


class PluginConfigError(ConfigError):
    """One plugin's configuration does not match its manifest's schema.

    Messages never include the value of a secret option.
    """

    def __init__(
        self, plugin: str, file: Path | str | None, problems: tuple[Problem, ...] | list[Problem]
    ) -> None:
        self.plugin = plugin
        super().__init__(file, problems)

    def _head(self) -> str:
        return f"plugin {self.plugin!r}: {super()._head()}"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.file, self.problems))
