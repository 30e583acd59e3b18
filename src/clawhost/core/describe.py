"""How configuration errors show where a problem is and what was found there."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["kind_of", "short_repr", "toml_path"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_KINDS = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "an array",
    dict: "a table",
}
#: Longer values are cut short in messages (a long value is often a pasted credential).
SHORT_LIMIT = 60


def toml_path(path: tuple[str | int, ...]) -> str:
    """A dotted TOML path (``plugins.weather.config.api_key``, ``plugins.dirs[0]``).

    Keys that are not bare TOML keys are quoted (``plugins."my plugin"``).
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        text = f"{text}.{key}" if text else key
    return text


def kind_of(value: Any) -> str:
    """What ``value`` is, in TOML words, without showing it (``a string``, ``a table``)."""
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def short_repr(value: Any) -> str:
    """``repr(value)``, cut to ``SHORT_LIMIT`` characters."""
    text = repr(value)
    return text if len(text) <= SHORT_LIMIT else text[: SHORT_LIMIT - 3] + "..."
