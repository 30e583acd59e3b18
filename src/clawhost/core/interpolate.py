"""``${VAR}`` interpolation of the string values of a configuration file.

The rules, all in one place because they are what users must learn:

* ``${NAME}`` is replaced by the variable's value; ``NAME`` is ``[A-Za-z_][A-Za-z0-9_]*``.
* ``${NAME:-fallback}`` uses ``fallback`` when the variable is unset *or empty*.
* ``$$`` is a literal ``$``; a ``$`` followed by anything else is kept as it is.
* An unset variable without a fallback is an error, never left as literal text.
* Substitution is not recursive: a value that contains ``${X}`` is inserted verbatim, and
  a fallback may not itself contain ``${``.

Error messages name the variable, never the text around it: the string may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["InterpolationProblem", "interpolate", "interpolate_tree"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Variable names and malformed references are echoed in messages; keep them short.
_ECHO_LIMIT = 40

KeyPath = tuple[str | int, ...]


class InterpolationProblem(ValueError):
    """One reference that cannot be substituted; ``variable`` is set when one is named."""

    def __init__(self, message: str, variable: str | None = None, hint: str | None = None):
        self.message = message
        self.variable = variable
        self.hint = hint
        super().__init__(message)


def _echo(text: str) -> str:
    return repr(text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 3] + "...")


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Substitute every ``${...}`` reference in ``text``; see the module docstring."""
    if "$" not in text:  # the common case: nothing to do, no copy
        return text
    return _substitute(text, environ, allow_variables=True)


def _substitute(text: str, environ: Mapping[str, str], *, allow_variables: bool) -> str:
    out: list[str] = []
    index = 0
    length = len(text)
    while index < length:
        dollar = text.find("$", index)
        if dollar < 0:
            out.append(text[index:])
            break
        out.append(text[index:dollar])
        following = text[dollar + 1 : dollar + 2]
        if following == "$":
            out.append("$")
            index = dollar + 2
        elif following == "{":
            if not allow_variables:
                raise InterpolationProblem(
                    "a fallback cannot contain '${' (interpolation is not recursive)",
                    hint="plain text as the fallback ('$$' for a literal '$')",
                )
            close = text.find("}", dollar + 2)
            if close < 0:
                raise InterpolationProblem(
                    f"'${{' at character {dollar + 1} is never closed",
                    hint="'${NAME}', or '$${' for a literal '${'",
                )
            out.append(_resolve(text[dollar + 2 : close], environ))
            index = close + 1
        else:  # a lone '$' ("costs $5", "abc$") is ordinary text
            out.append("$")
            index = dollar + 1
    return "".join(out)


def _resolve(body: str, environ: Mapping[str, str]) -> str:
    name, has_fallback, fallback = body.partition(":-")
    if not name:
        raise InterpolationProblem(
            "empty reference '${}'" if not has_fallback else "a reference names no variable",
            hint="'${NAME}', or '$${' for a literal '${'",
        )
    if _NAME.fullmatch(name) is None:
        raise InterpolationProblem(
            f"{_echo(name)} is not a variable name",
            hint="letters, digits and '_', not starting with a digit",
        )
    value = environ.get(name)
    if has_fallback:
        # Checked even when unused, so that a malformed fallback fails in every environment.
        fallback = _substitute(fallback, environ, allow_variables=False)
        return value if value else fallback
    if value is None:
        raise InterpolationProblem(
            f"environment variable {name} is not set",
            variable=name,
            hint=f"{name} to be set, or a fallback: '${{{name}:-fallback}}'",
        )
    return value


def interpolate_tree(
    data: Any,
    environ: Mapping[str, str],
    *,
    path: KeyPath = (),
    problems: list[tuple[KeyPath, InterpolationProblem]] | None = None,
    substituted: set[KeyPath] | None = None,
) -> Any:
    """Interpolate every string inside ``data`` (nested dicts and lists); keys are left alone.

    Returns a new structure. Each failure is appended to ``problems`` with its path (the
    original string is kept in its place); the path of every string in which a variable was
    substituted is added to ``substituted``, so that error messages can avoid echoing it.
    """
    if isinstance(data, str):
        try:
            result = interpolate(data, environ)
        except InterpolationProblem as problem:
            if problems is not None:
                problems.append((path, problem))
            return data
        if substituted is not None and "${" in data:
            substituted.add(path)
        return result
    if isinstance(data, dict):
        return {
            key: interpolate_tree(
                value,
                environ,
                path=(*path, key),
                problems=problems,
                substituted=substituted,
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            interpolate_tree(
                value,
                environ,
                path=(*path, index),
                problems=problems,
                substituted=substituted,
            )
            for index, value in enumerate(data)
        ]
    return data
