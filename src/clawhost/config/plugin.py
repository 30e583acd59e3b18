"""Each plugin's configuration, checked against its manifest's schema before it activates.

For every option of the schema the value comes from, in order: the plugin's
``[plugins.<name>.config]`` table, the option's ``env`` variable (text, coerced to the
option's type), the option's default. pydantic checks the types, strictly: TOML is typed,
so ``"3"`` is not an integer (a float option takes an integer, though).

Secret options (``secret = true``, or read from the environment) are never shown: not in
error messages, not in ``repr``, not in logs. pydantic puts the input value into its own
messages, so problems are built here from the error *types* and never from its text.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, NoReturn

from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr, TypeAdapter, ValidationError

from clawhost.core.describe import kind_of, short_repr, toml_path
from clawhost.discovery.manifest import ConfigOption
from clawhost.errors import PluginConfigError, Problem

__all__ = ["MASK", "PluginConfig", "validate_plugin_config"]

logger = logging.getLogger("clawhost.config")

#: What a secret's value is replaced by wherever it would be shown.
MASK = "***"

#: Where a value came from, as ``PluginConfig.sources`` reports it.
Source = Literal["config", "env", "default", "unset"]

_EXPECTED = {
    "string": "a string",
    "integer": "an integer",
    "float": "a number",
    "boolean": "true or false",
    "array": "an array",
    "table": "a table",
}
_ENV_EXPECTED = {
    "integer": "an integer such as 300",
    "float": "a number such as 0.5",
    "boolean": "true, false, 1, 0, yes or no",
    "array": 'a JSON array such as ["a", "b"]',
    "table": 'a JSON object such as {"key": "value"}',
}
_BOOLEAN_TEXT = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")

_adapters: dict[str, TypeAdapter[Any]] = {}


def _adapter(kind: str) -> TypeAdapter[Any]:
    """The pydantic validator of one option type; built on first use (they are six)."""
    adapter = _adapters.get(kind)
    if adapter is None:
        python_type: Any = {
            "string": StrictStr,
            "integer": StrictInt,
            "float": StrictFloat,  # strict, yet it takes an int (and returns a float)
            "boolean": StrictBool,
            "array": list[Any],
            "table": dict[str, Any],
        }[kind]
        adapter = _adapters[kind] = TypeAdapter(python_type, config={"strict": True})
    return adapter


class PluginConfig(Mapping[str, Any]):
    """A plugin's validated configuration: a read-only mapping of plain Python values.

    Every option of the schema is a key; an optional option nobody set is ``None``.
    ``repr`` (and so ``str`` and logging) shows secrets as ``***``.
    """

    __slots__ = ("_plugin", "_secret_keys", "_sources", "_values")

    _plugin: str
    _values: dict[str, Any]
    _secret_keys: frozenset[str]
    _sources: dict[str, Source]

    def __init__(
        self,
        plugin: str,
        values: Mapping[str, Any],
        *,
        secret_keys: Iterable[str] = (),
        sources: Mapping[str, Source] | None = None,
    ) -> None:
        # A deep copy: the plugin may change its lists, but not the host's configuration.
        object.__setattr__(self, "_plugin", plugin)
        object.__setattr__(self, "_values", _copied(dict(values)))
        object.__setattr__(self, "_secret_keys", frozenset(secret_keys))
        object.__setattr__(self, "_sources", dict(sources or dict.fromkeys(values, "config")))

    @property
    def plugin(self) -> str:
        """The name of the plugin this configuration belongs to."""
        return self._plugin

    @property
    def secret_keys(self) -> frozenset[str]:
        """The keys whose values are never shown."""
        return self._secret_keys

    @property
    def sources(self) -> Mapping[str, Source]:
        """Where each value came from: ``config``, ``env``, ``default`` or ``unset``."""
        return self._sources.copy()

    def masked(self) -> dict[str, Any]:
        """The values, with every secret that has a value replaced by ``***``."""
        return {
            key: MASK if key in self._secret_keys and value is not None else value
            for key, value in self._values.items()
        }

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"PluginConfig({self._plugin!r}, {self.masked()!r})"

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._plugin, self._values, self._secret_keys, self._sources))


def _rebuild(
    plugin: str, values: dict[str, Any], secret_keys: frozenset[str], sources: dict[str, Source]
) -> PluginConfig:
    return PluginConfig(plugin, values, secret_keys=secret_keys, sources=sources)


def validate_plugin_config(
    plugin: str,
    schema: Mapping[str, ConfigOption],
    values: Mapping[str, Any],
    *,
    file: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> PluginConfig:
    """Check ``values`` (``[plugins.<plugin>.config]``) against the manifest's ``schema``.

    Raises ``PluginConfigError`` listing every problem; no message ever holds a secret.
    """
    problems: list[Problem] = []
    result: dict[str, Any] = {}
    sources: dict[str, Source] = {}

    def field(key: str) -> str:
        return toml_path(("plugins", plugin, "config", key))

    allowed = ", ".join(schema) if schema else None
    for key in values:
        if key not in schema:
            expected = f"one of: {allowed}" if allowed else "nothing: this plugin has no options"
            problems.append(Problem(field(key), "unknown key", expected))

    for key, option in schema.items():
        source, value = _pick(option, values.get(key), environ)
        if source == "env":
            assert option.env is not None  # _pick reads the environment only then
            try:
                value = _from_text(option.type, environ[option.env])
            except ValueError:
                problems.append(
                    Problem(
                        field(key),
                        f"environment variable {option.env} is not {_EXPECTED[option.type]}",
                        _ENV_EXPECTED[option.type],
                    )
                )
                continue
            logger.debug("plugin %r: %s read from %s", plugin, key, option.env)
        elif source == "unset" and option.required:
            where = f"required; set it in [plugins.{plugin}.config]"
            if option.env is not None:
                where += f" or the environment variable {option.env}"
            problems.append(Problem(field(key), where, _EXPECTED[option.type]))
            continue
        if source != "unset":
            value, problem = _check(option, value, source, functools.partial(field, key))
            if problem is not None:
                problems.append(problem)
                continue
        result[key] = value
        sources[key] = source

    if problems:
        raise PluginConfigError(plugin, file, problems)
    secret_keys = [key for key, option in schema.items() if option.is_secret]
    config = PluginConfig(plugin, result, secret_keys=secret_keys, sources=sources)
    logger.debug("plugin %r: configuration %r", plugin, config)
    return config


def _pick(option: ConfigOption, given: Any, environ: Mapping[str, str]) -> tuple[Source, Any]:
    """Which value wins: the config's, the environment's, the default; or none."""
    if given is not None:
        return "config", given
    # An empty variable counts as unset: an exported-but-blank API key is a mistake far more
    # often than a deliberate empty value (which the config file can still give).
    if option.env is not None and environ.get(option.env):
        return "env", None
    if option.default is not None:
        return "default", _copied(option.default)
    return "unset", None


_ATOMIC = frozenset({str, int, float, bool, type(None)})


def _copied(value: Any) -> Any:
    """A deep copy of ``value``; strings, numbers and the like, and dicts and lists holding
    only them, are copied without ``copy.deepcopy``'s dispatch."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if kind is dict and all(type(item) in _ATOMIC for item in value.values()):
        return dict(value)
    if kind is list and all(type(item) in _ATOMIC for item in value):
        return list(value)
    return copy.deepcopy(value)


def _from_text(kind: str, text: str) -> Any:
    """An environment variable's text as a value of ``kind``; ``ValueError`` if it is not."""
    stripped = text.strip()
    if kind == "string":
        return text
    if kind == "integer":
        if _INTEGER_TEXT.fullmatch(stripped) is None:
            raise ValueError(kind)
        return int(stripped)
    if kind == "float":
        return float(stripped)  # raises ValueError
    if kind == "boolean":
        if stripped.lower() not in _BOOLEAN_TEXT:
            raise ValueError(kind)
        return _BOOLEAN_TEXT[stripped.lower()]
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        raise ValueError(kind) from None  # the decoder's message quotes the text


def _check(
    option: ConfigOption, value: Any, source: Source, where: Callable[[], str]
) -> tuple[Any, Problem | None]:
    """``value`` as validated for ``option``, or the problem with it (at ``where()``: the
    field and the value's description are only worked out for a problem).

    The problem is built without pydantic's message text, which would quote the value.
    """
    try:
        valid = _adapter(option.type).validate_python(value)
    except ValidationError:
        # Only the fact of the failure is used: str(exc) would quote the value.
        if source == "env":
            assert option.env is not None
            message = f"environment variable {option.env} does not hold {_EXPECTED[option.type]}"
            return None, Problem(where(), message, _ENV_EXPECTED.get(option.type))
        message = f"got {_shown(option, value)}"
        if isinstance(value, str) and option.type in ("integer", "float", "boolean"):
            message += " (quoted: TOML numbers, true and false are written without quotes)"
        return None, Problem(where(), message, _EXPECTED[option.type])
    if option.enum is not None and valid not in option.enum:
        allowed = ", ".join(short_repr(item) for item in option.enum)
        message = f"got {_shown(option, value)}, which is not allowed"
        return None, Problem(where(), message, f"one of: {allowed}")
    return valid, None


def _shown(option: ConfigOption, value: Any) -> str:
    """How a problem names the value: its kind only, for a secret."""
    return kind_of(value) if option.is_secret else short_repr(value)
