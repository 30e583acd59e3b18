"""Reading TOML: rtoml (Rust) where it is installed, the stdlib's ``tomllib`` otherwise.

Discovery parses every installed plugin's manifest on a cold start, and at a thousand
plugins the pure-Python parser costs more than the rest of discovery together (about
80 us a manifest against 7 us), so the compiled parser is a dependency; the fallback keeps
clawhost working where no rtoml wheel exists.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["TomlSyntaxError", "loads"]

_POSITION = re.compile(r"\s*\(?at line (\d+),? column (\d+)\)?")


class TomlSyntaxError(ValueError):
    """Text that is not valid TOML; ``line`` and ``column`` are 1-based when known."""

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        self.message = message
        self.line = line
        self.column = column
        super().__init__(message if line is None else f"{message} (line {line}, column {column})")


def _split_position(text: str) -> tuple[str, int | None, int | None]:
    match = _POSITION.search(text)
    if match is None:
        return text.strip(), None, None
    message = (text[: match.start()] + text[match.end() :]).strip()
    return message, int(match.group(1)), int(match.group(2))


try:
    import rtoml as _rtoml

    def loads(text: str) -> dict[str, Any]:
        """Parse TOML text into a dict; raise ``TomlSyntaxError`` with the position."""
        try:
            return _rtoml.loads(text)
        except _rtoml.TomlParsingError as exc:
            raise TomlSyntaxError(*_split_position(str(exc))) from None

except ImportError:  # pragma: no cover - exercised only where rtoml has no wheel
    import tomllib as _tomllib

    def loads(text: str) -> dict[str, Any]:
        """Parse TOML text into a dict; raise ``TomlSyntaxError`` with the position."""
        try:
            return _tomllib.loads(text)
        except _tomllib.TOMLDecodeError as exc:
            raise TomlSyntaxError(*_split_position(str(exc))) from None
        except RecursionError:
            raise TomlSyntaxError("tables or arrays nested too deeply", None, None) from None
