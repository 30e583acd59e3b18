"""The host configuration (``config.toml``) as typed data, and the loader that checks it.

Loading runs in three steps: parse the TOML, substitute ``${VAR}`` references in every
string (see ``_interpolate``), then validate with pydantic, which also makes relative
paths absolute against the config file's folder. Every problem of the file is reported
together in one ``ConfigError``, each naming the dotted table and key.

Each plugin's own ``[plugins.<name>.config]`` is kept raw here; it is validated against
the plugin's manifest by ``_plugin_config`` once the plugin's schema is known.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from clawhost.config.sandbox import (
    BadHostPattern,
    Isolation,
    PathList,
    PositiveInt,
    SandboxConfig,
    SandboxOverrides,
    Seconds,
    Section,
)
from clawhost.core.describe import kind_of, short_repr, toml_path
from clawhost.core.interpolate import interpolate_tree
from clawhost.core.toml import TomlSyntaxError
from clawhost.core.toml import loads as toml_loads
from clawhost.discovery.discover import DEFAULT_GROUP
from clawhost.discovery.manifest import PLUGIN_NAME_PATTERN, PluginName
from clawhost.errors import ConfigError, Problem

__all__ = [
    "RESERVED_PLUGINS_KEYS",
    "HostConfig",
    "Isolation",
    "PluginSettings",
    "PluginsConfig",
    "SandboxConfig",
    "SandboxOverrides",
    "load_host_config",
    "set_plugin_enabled",
]


EntryPointGroup = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")]


class ChannelInstanceSettings(Section):
    """``[plugins.<name>.channels.<instance>]``: one channel the host runs and supervises.

    ``channel`` names the factory (the plugin's ``register_channel_factory`` name; default:
    the instance's own name); ``config`` is what the factory is given. A channel that fails
    is started again after ``restart_backoff_secs``, doubling up to
    ``restart_backoff_max_secs``, at most ``max_restarts`` times in a row.
    """

    channel: Annotated[str, StringConstraints(min_length=1)] | None = None
    config: dict[str, Any] = Field(default_factory=dict, repr=False)
    restart_backoff_secs: Seconds = 5.0
    restart_backoff_max_secs: Seconds = 300.0
    max_restarts: PositiveInt = 10


class PluginSettings(Section):
    """``[plugins.<name>]``: whether the plugin runs, its raw config and sandbox overrides.

    ``config`` is validated later, against the plugin's manifest (``validate_plugin_config``).
    """

    enabled: bool = True
    # Left out of repr: the values may be secrets, and which ones only the manifest knows.
    config: dict[str, Any] = Field(default_factory=dict, repr=False)
    sandbox: SandboxOverrides = Field(default_factory=SandboxOverrides)
    #: ``[plugins.<name>] isolation``: the same as ``[plugins.<name>.sandbox] isolation``.
    isolation: Isolation | None = None
    #: ``[plugins.<name>.channels.<instance>]``: the channels the host runs for it.
    channels: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")],
        ChannelInstanceSettings,
    ] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_isolation(self) -> PluginSettings:
        inner = self.sandbox.isolation
        if self.isolation is not None and inner is not None and inner != self.isolation:
            raise ValueError(
                f"isolation = {self.isolation!r} contradicts sandbox.isolation = {inner!r}; "
                "set it in one place"
            )
        return self


class PluginsConfig(Section):
    """The ``[plugins]`` table.

    In TOML, every sub-table of ``[plugins]`` other than ``[plugins.sandbox]`` configures
    the plugin it is named after; here they are collected in ``plugin_settings``.
    """

    dirs: PathList = ()
    hot_reload: bool = False
    watch_interval_secs: Seconds = 2.0
    lazy_activation: bool = False
    entry_point_group: EntryPointGroup = DEFAULT_GROUP
    discovery_cache: bool = True
    call_timeout_secs: Seconds | None = None
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    plugin_settings: dict[PluginName, PluginSettings] = Field(default_factory=dict)


#: Keys of ``[plugins]`` that are host settings, so no plugin section can have their name.
RESERVED_PLUGINS_KEYS = frozenset(PluginsConfig.model_fields) - {"plugin_settings"}


class HostConfig(Section):
    """A whole host configuration: ``[plugins]``, the file it came from and its folder.

    ``HostConfig()`` is the configuration of a host without a file: every default.
    """

    plugins: PluginsConfig = Field(default_factory=PluginsConfig)
    file: Annotated[Path, Strict(False)] | None = None
    #: The folder relative paths were resolved against (the config file's folder).
    base_dir: Annotated[Path, Strict(False)] = Field(default_factory=Path.cwd)

    def settings_for(self, plugin: str) -> PluginSettings:
        """The ``[plugins.<plugin>]`` settings, or the defaults when the file has none."""
        settings = self.plugins.plugin_settings.get(plugin)
        # A fresh default each time: its config dict must not be shared between callers.
        return settings if settings is not None else PluginSettings()

    def sandbox_for(self, plugin: str) -> SandboxConfig:
        """``[plugins.sandbox]`` with the plugin's ``[plugins.<plugin>.sandbox]`` applied
        (and its ``[plugins.<plugin>] isolation``, which is the same setting)."""
        settings = self.plugins.plugin_settings.get(plugin)
        if settings is None:  # no [plugins.<plugin>]: the defaults, as they are (frozen)
            return self.plugins.sandbox
        sandbox = settings.sandbox.apply_to(self.plugins.sandbox)
        if settings.isolation is not None and settings.isolation != sandbox.isolation:
            sandbox = sandbox.model_copy(update={"isolation": settings.isolation})
        return sandbox

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, Any],
        *,
        file: Path | str | None = None,
        base_dir: Path | str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> HostConfig:
        """Interpolate, resolve and validate parsed TOML; raise ``ConfigError`` on problems.

        Relative paths are resolved against ``base_dir``, which defaults to the folder of
        ``file``, or the working directory when there is no file.
        """
        file = Path(file).absolute() if file is not None else None
        if base_dir is None:
            base_dir = file.parent if file is not None else Path.cwd()
        base = Path(base_dir).expanduser().absolute()
        return _validate(data, file, base, environ)

    @classmethod
    def from_toml(
        cls,
        text: str,
        *,
        file: Path | str | None = None,
        base_dir: Path | str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> HostConfig:
        """Parse and validate ``config.toml`` text; see ``from_mapping``."""
        try:
            data = toml_loads(text)
        except TomlSyntaxError as exc:
            problem = Problem(None, f"TOML syntax error: {exc.message}", line=exc.line)
            raise ConfigError(file, [problem]) from None
        return cls.from_mapping(data, file=file, base_dir=base_dir, environ=environ)


def load_host_config(path: Path | str, *, environ: Mapping[str, str] = os.environ) -> HostConfig:
    """Read, interpolate and validate the host configuration file at ``path``."""
    path = Path(path).expanduser().absolute()
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(path, [Problem(None, "file not found")]) from None
    except OSError as exc:
        raise ConfigError(path, [Problem(None, f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        problem = Problem(None, f"not UTF-8 text (byte {exc.start})", "UTF-8 encoded TOML")
        raise ConfigError(path, [problem]) from None
    return HostConfig.from_toml(text, file=path, environ=environ)


# -- validation -----------------------------------------------------------------------------

Loc = tuple[str | int, ...]


def _validate(
    data: Mapping[str, Any], file: Path | None, base_dir: Path, environ: Mapping[str, str]
) -> HostConfig:
    problems: list[Problem] = []
    # Other top-level tables belong to the application embedding the host (its own
    # settings share config.toml), so they are left alone; only a near miss is refused.
    problems.extend(
        Problem(toml_path((key,)), "unknown top-level table; did you mean [plugins]?", "[plugins]")
        for key in data
        if isinstance(key, str) and key != "plugins" and key.lower().rstrip("s") == "plugin"
    )
    problems.extend(
        Problem(repr(key), "a table key must be text", "a string")
        for key in data
        if not isinstance(key, str)
    )
    raw = data.get("plugins", {})
    if not isinstance(raw, dict):
        problems.append(Problem("plugins", f"got {kind_of(raw)}", "a [plugins] table"))
        raise ConfigError(file, problems)
    interpolation: list[tuple[Loc, Any]] = []
    substituted: set[Loc] = set()
    plugins = interpolate_tree(
        raw, environ, path=("plugins",), problems=interpolation, substituted=substituted
    )
    for loc, failure in interpolation:
        problems.append(Problem(toml_path(loc), failure.message, failure.hint))
    fields = _split_plugin_sections(plugins, problems)
    config: HostConfig | None = None
    try:
        config = HostConfig.model_validate(
            {"plugins": fields, "file": file, "base_dir": base_dir},
            context={"base_dir": base_dir},
        )
    except ValidationError as exc:
        problems.extend(
            _problem_from_error(error, substituted) for error in exc.errors(include_url=False)
        )
    if problems or config is None:
        raise ConfigError(file, problems)
    return config


def _split_plugin_sections(plugins: dict[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """Sort the keys of ``[plugins]`` into host settings and per-plugin sections."""
    fields: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in plugins.items():
        if key in RESERVED_PLUGINS_KEYS:
            if isinstance(value, dict) and key != "sandbox":
                problems.append(
                    Problem(
                        toml_path(("plugins", key)),
                        f"{key!r} is a host setting, so no plugin section can have its name",
                        _EXPECTED_BY_KEY.get(key),
                    )
                )
                continue
            fields[key] = value
        elif isinstance(value, dict):
            sections[key] = value
        else:
            problems.append(
                Problem(
                    toml_path(("plugins", key)),
                    "unknown key",
                    f"one of: {', '.join(_TABLE_KEYS['plugins'])}, "
                    "or a [plugins.<name>] table for one plugin",
                )
            )
    fields["plugin_settings"] = sections
    return fields


_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "plugins": tuple(key for key in PluginsConfig.model_fields if key in RESERVED_PLUGINS_KEYS),
    "sandbox": tuple(SandboxConfig.model_fields),
    "plugin": tuple(PluginSettings.model_fields),
}

_EXPECTED_BY_KEY = {
    "dirs": "an array of paths",
    "hot_reload": "true or false",
    "watch_interval_secs": "a number of seconds > 0",
    "lazy_activation": "true or false",
    "entry_point_group": "an entry-point group name (letters, digits, '.', '_' or '-')",
    "discovery_cache": "true or false",
    "call_timeout_secs": "a number of seconds > 0",
    "max_memory_mb": "an integer >= 1",
    "max_cpu_time_secs": "a number of seconds > 0",
    "max_wall_time_secs": "a number of seconds > 0",
    "fs_allowed": "an array of paths",
    "net_allowed": "an array of 'host:port' strings",
    "allow_subprocess": "true or false",
    "max_concurrency": "an integer >= 1",
    "isolation": "'in-process' or 'process'",
    "restart": "true or false",
    "channels": "a table of channel instances",
    "channel": "a channel factory's name",
    "restart_backoff_secs": "a number of seconds > 0",
    "restart_backoff_max_secs": "a number of seconds > 0",
    "max_restarts": "an integer >= 1",
    "enabled": "true or false",
    "config": "a table",
    "sandbox": "a table",
}

_EXPECTED_BY_TYPE = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "tuple_type": "an array",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "path_type": "a path (a string)",
}


def _public_loc(loc: Loc) -> Loc:
    """The pydantic location as the user wrote it: no ``plugin_settings``, no markers."""
    parts: list[str | int] = []
    for index, part in enumerate(loc):
        if part == "plugin_settings" and index == 1:
            continue
        if isinstance(part, str) and (part == "[key]" or part.startswith("function-")):
            continue
        parts.append(part)
    return tuple(parts)


def _problem_from_error(error: Mapping[str, Any], substituted: set[Loc]) -> Problem:
    loc = _public_loc(tuple(error["loc"]))
    field = toml_path(loc)
    kind = error["type"]
    value = error.get("input")
    key = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if kind == "extra_forbidden":
        table = _table_of(loc)
        allowed = _TABLE_KEYS[table]
        return Problem(field, _unknown_key(table, key, loc), f"one of: {', '.join(allowed)}")
    if tuple(error["loc"])[-1:] == ("[key]",):  # the name of a [plugins.<name>] section
        return Problem(
            field,
            "not a plugin name",
            f"lower-case letters, digits, '-' or '_', starting with a letter (max 64), "
            f"matching {PLUGIN_NAME_PATTERN}",
        )
    # A value taken from the environment may be a secret: never echo it, nor a table or
    # array holding one.
    hides_secret = any(path[: len(loc)] == loc for path in substituted)
    got = f"got {kind_of(value) if hides_secret else short_repr(value)}"
    if kind == "string_pattern_mismatch":
        return Problem(field, f"{got}, which is not allowed here", _EXPECTED_BY_KEY.get(key))
    reason = error.get("ctx", {}).get("error")
    if kind == "value_error" and isinstance(reason, BadHostPattern):
        joint = ", which" if str(reason).startswith("is ") else ":"
        return Problem(field, f"{got}{joint} {reason}", _HOST_PATTERN)
    if kind in ("greater_than", "greater_than_equal", "value_error"):
        message = got if kind != "value_error" else str(error["ctx"]["error"])
        return Problem(field, message, _EXPECTED_BY_KEY.get(key))
    expected = _EXPECTED_BY_KEY.get(key) or _EXPECTED_BY_TYPE.get(kind)
    if isinstance(value, str) and kind in ("int_type", "float_type", "bool_type"):
        got += " (quoted: TOML numbers, true and false are written without quotes)"
    if expected is None:
        message = str(error["msg"])
        return Problem(field, message[:1].lower() + message[1:])
    return Problem(field, got, expected)


_HOST_PATTERN = "'host:port': a name, *.name, an IP or [IPv6]; a port 1-65535 or *"
#: Keys people write for a permission, and the sandbox key that grants it.
_PERMISSION_KEYS = dict.fromkeys(("network", "net", "hosts"), "net_allowed")
_PERMISSION_KEYS.update(dict.fromkeys(("filesystem", "fs", "paths"), "fs_allowed"))
_PERMISSION_KEYS["subprocess"] = "allow_subprocess"


def _unknown_key(table: str, key: str, loc: Loc) -> str:
    """``unknown key``, with what was probably meant for a permission."""
    right = _PERMISSION_KEYS.get(key.lower())
    if table == "sandbox" and right is not None:
        return f"unknown key; the {key} permission is granted by {right}"
    if table == "plugin" and (right is not None or key in SandboxOverrides.model_fields):
        where = toml_path((*loc[:-1], "sandbox"))
        return f"unknown key here; {right or key} belongs in [{where}]"
    return "unknown key"


def _table_of(loc: Loc) -> str:
    """Which table an unknown key at ``loc`` was found in."""
    table = loc[:-1]
    if table == ("plugins", "sandbox") or (len(table) == 3 and table[2] == "sandbox"):
        return "sandbox"
    if len(table) == 2:
        return "plugin"
    return "plugins"


# -- write-back -----------------------------------------------------------------------------


def read_document(path: Path) -> Any:
    """The file at ``path`` as a tomlkit document (empty when absent), to edit and write
    back with every comment, blank line and key order kept. Needs tomlkit, from the
    ``clawhost[cli]`` extra; a syntax error is a ``ConfigError`` naming the line."""
    try:
        import tomlkit
        from tomlkit.exceptions import ParseError
    except ImportError:
        raise ImportError(
            "editing config.toml needs tomlkit: pip install 'clawhost[cli]'", name="tomlkit"
        ) from None
    try:
        with path.open(encoding="utf-8", newline="") as handle:  # keep \r\n as written
            text = handle.read()
    except FileNotFoundError:
        text = ""
    try:
        return tomlkit.parse(text)
    except ParseError as exc:
        problem = Problem(None, f"TOML syntax error: {exc}", line=exc.line)
        raise ConfigError(path, [problem]) from None


def set_plugin_enabled(path: Path | str, plugin: str, enabled: bool) -> None:
    """Set ``[plugins.<plugin>] enabled`` in the file at ``path``, changing nothing else.

    Every comment, blank line and key order is kept; the table (and the file) is created
    when absent. Needs tomlkit, from the ``clawhost[cli]`` extra.
    """
    path = Path(path).expanduser().absolute()
    field = toml_path(("plugins", plugin))
    if re.fullmatch(PLUGIN_NAME_PATTERN, plugin) is None or len(plugin) > 64:
        raise ConfigError(path, [Problem(field, "not a plugin name", "a manifest's [plugin] name")])
    if plugin in RESERVED_PLUGINS_KEYS:
        raise ConfigError(path, [Problem(field, "a host setting, not a plugin section")])
    document = read_document(path)
    import tomlkit

    plugins = document.get("plugins")
    if plugins is None:
        # A super table writes no [plugins] header of its own, only [plugins.<name>].
        plugins = tomlkit.table(is_super_table=True)
        document.append("plugins", plugins)
    # An array of tables ([[plugins]]) is a list, so this refuses it too.
    if not isinstance(plugins, MutableMapping):
        raise ConfigError(path, [Problem("plugins", f"got {kind_of(plugins)}", "a table")])
    section = plugins.get(plugin)
    if section is None:
        section = tomlkit.table()
        section.append("enabled", enabled)
        plugins[plugin] = section
    elif isinstance(section, MutableMapping):
        section["enabled"] = enabled
    else:
        raise ConfigError(path, [Problem(field, f"got {kind_of(section)}", "a table")])
    _write_text(path, document.as_string())


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path``; replace an existing file atomically, keeping its mode.

    A running gateway may re-read the file at any moment, so it must never see half of it.
    """
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        with path.open("x", encoding="utf-8", newline="") as handle:  # the umask's mode
            handle.write(text)
        return
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
