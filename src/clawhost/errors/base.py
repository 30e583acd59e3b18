"""What every error builds on: the base class and one finding about one field."""

from __future__ import annotations

from dataclasses import dataclass


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
