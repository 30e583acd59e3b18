"""The plugin manifest (``plugin.toml``) as typed data, and the loader that checks it.

The pydantic models hold the data; ``load_manifest`` reads a file and reports every
problem of it at once (TOML syntax, unknown keys, wrong types, invalid versions and
requirements, fields a source requires), each naming the file and the field.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from clawhost.core.describe import short_repr
from clawhost.core.toml import TomlSyntaxError
from clawhost.core.toml import loads as toml_loads
from clawhost.core.versions import InvalidRequirementText, parse_requirement, parse_version
from clawhost.errors import ManifestError, Problem

__all__ = [
    "MANIFEST_FILENAME",
    "SUPPORTED_MANIFEST_VERSION",
    "AdminCommand",
    "AdminSection",
    "Capabilities",
    "ConfigOption",
    "HttpSection",
    "Manifest",
    "Permissions",
    "load_manifest",
    "parse_manifest",
]

MANIFEST_FILENAME = "plugin.toml"
SUPPORTED_MANIFEST_VERSION = 2
#: The first manifest_version with the gateway's surfaces (``[plugin.http]``).
SURFACES_MANIFEST_VERSION = 2
#: A manifest is a few kilobytes; anything larger is refused before it is parsed.
MAX_MANIFEST_BYTES = 256 * 1024

PLUGIN_NAME_PATTERN = r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$"
# OpenAI's function-name rule, which the other function-calling shapes also accept.
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
CAPABILITY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
# host:port, where host may be a name, an IPv4 address, a bracketed IPv6 address, or a
# leading-wildcard name (*.example.com), and port a number or *.
_PORT = r"(?:\*|[1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d{2}|655[0-2]\d|6553[0-5])"
NETWORK_PATTERN = rf"^(?:\*|\*\.[A-Za-z0-9.-]+|[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):{_PORT}$"
DISTRIBUTION_PREFIX = "clawdesk-plugin-"


@functools.lru_cache(maxsize=4096)
def _check_version(value: str) -> str:
    try:
        return str(parse_version(value))
    except (InvalidRequirementText, ValueError):  # ValueError: a number of 4,300+ digits
        raise ValueError(
            f"{short_repr(value)} is not a valid version (PEP 440 or semver, e.g. '1.2.0')"
        ) from None


def _check_requirement(value: str) -> str:
    try:
        parse_requirement(value)
    except InvalidRequirementText as exc:
        raise ValueError(exc.reason) from None
    return value


def _check_dependency_key(value: str) -> str:
    if re.fullmatch(PLUGIN_NAME_PATTERN, dependency_name(value)) is None:
        raise ValueError(f"{value!r} is not a plugin name")
    return value


VersionText = Annotated[str, AfterValidator(_check_version)]
PluginName = Annotated[str, StringConstraints(pattern=PLUGIN_NAME_PATTERN, max_length=64)]
ToolName = Annotated[str, StringConstraints(pattern=TOOL_NAME_PATTERN)]
CapabilityName = Annotated[str, StringConstraints(pattern=CAPABILITY_NAME_PATTERN)]
RequirementText = Annotated[str, AfterValidator(_check_requirement)]
NetworkTarget = Annotated[str, StringConstraints(pattern=NETWORK_PATTERN)]
ConfigType = Literal["string", "integer", "float", "boolean", "array", "table"]

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "float": (float, int),
    "boolean": (bool,),
    "array": (list,),
    "table": (dict,),
}


def _first_duplicate(values: tuple[str, ...]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Capabilities(_Section):
    """What a plugin provides: the names it will register, known before it is imported."""

    tools: tuple[ToolName, ...] = ()
    channels: tuple[CapabilityName, ...] = ()
    pipeline_stages: tuple[CapabilityName, ...] = ()
    providers: tuple[CapabilityName, ...] = ()

    @model_validator(mode="after")
    def _no_duplicates(self) -> Capabilities:
        for kind in ("tools", "channels", "pipeline_stages", "providers"):
            duplicate = _first_duplicate(getattr(self, kind))
            if duplicate is not None:
                raise ValueError(f"{kind}: {duplicate!r} is listed twice")
        return self

    def is_empty(self) -> bool:
        """Whether the plugin declares nothing at all (an event-hooks-only plugin)."""
        return not (self.tools or self.channels or self.pipeline_stages or self.providers)


class Permissions(_Section):
    """What a plugin asks to be allowed to do; the host config decides what it gets."""

    network: tuple[NetworkTarget, ...] = ()
    filesystem: tuple[Annotated[str, StringConstraints(min_length=1)], ...] = ()
    subprocess: StrictBool = False


class HttpSection(_Section):
    """``[plugin.http]``: the plugin serves an ASGI app under ``/plugins/<name>/`` of the
    host's gateway app (``ctx.register_http_app``); nothing else is allowed to."""

    description: str = ""


AdminNamespace = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*$", max_length=128)
]
AdminMethod = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=64)]


class AdminCommand(_Section):
    """One ``[[plugin.admin.command]]``: a namespace (the plugin's name, or below it) and
    the methods the plugin answers in it (``host.admin.call("weather.cache_clear")``)."""

    namespace: AdminNamespace
    methods: tuple[AdminMethod, ...]
    description: str = ""

    @model_validator(mode="after")
    def _some_methods(self) -> AdminCommand:
        if not self.methods:
            raise ValueError("methods must list at least one method")
        duplicate = _first_duplicate(self.methods)
        if duplicate is not None:
            raise ValueError(f"methods: {duplicate!r} is listed twice")
        return self


class AdminSection(_Section):
    """``[plugin.admin]``: the plugin's admin commands."""

    command: tuple[AdminCommand, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every declared command, ``namespace.method``."""
        return tuple(
            f"{entry.namespace}.{method}" for entry in self.command for method in entry.methods
        )


class ConfigOption(_Section):
    """One key of the plugin's configuration schema (``[plugin.config.<key>]``)."""

    type: ConfigType = "string"
    required: StrictBool = False
    default: Any = None
    env: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    enum: tuple[Any, ...] | None = None
    description: str = ""
    secret: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> ConfigOption:
        allowed = _PYTHON_TYPES[self.type]

        def fits(value: Any) -> bool:
            if isinstance(value, bool) and self.type != "boolean":
                return False
            return isinstance(value, allowed)

        if self.default is not None and not fits(self.default):
            raise ValueError(f"default {self.default!r} is not of type {self.type}")
        if self.enum is not None:
            if not self.enum:
                raise ValueError("enum must list at least one value")
            wrong = [value for value in self.enum if not fits(value)]
            if wrong:
                raise ValueError(f"enum value {wrong[0]!r} is not of type {self.type}")
            if self.default is not None and self.default not in self.enum:
                raise ValueError(f"default {self.default!r} is not one of enum {list(self.enum)}")
        if self.required and self.default is not None:
            raise ValueError("a required option cannot have a default")
        return self

    @property
    def is_secret(self) -> bool:
        """Secrets are never shown: options marked ``secret`` or read from the environment."""
        return self.secret or self.env is not None


class Manifest(_Section):
    """The ``[plugin]`` table of a ``plugin.toml``.

    ``name`` and ``version`` may be left out of a manifest shipped in a distribution (the
    entry point name and the distribution version fill them in), so they are optional here;
    ``load_manifest(required=...)`` says which fields a source insists on.
    """

    name: PluginName | None = None
    version: VersionText | None = None
    description: str | None = None
    author: str | None = None
    license: str | None = None
    homepage: str | None = None
    min_clawdesk_version: VersionText | None = None
    manifest_version: StrictInt = Field(default=SUPPORTED_MANIFEST_VERSION, ge=1)
    entry: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][\w.]*(?::[A-Za-z_][\w.]*)?$")] | None
    ) = None
    capabilities: Capabilities = Capabilities()
    dependencies: dict[Annotated[str, AfterValidator(_check_dependency_key)], RequirementText] = {}
    permissions: Permissions = Permissions()
    config: dict[
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], ConfigOption
    ] = {}
    http: HttpSection | None = None
    admin: AdminSection | None = None

    @model_validator(mode="after")
    def _surfaces_need_version_2(self) -> Manifest:
        for section, value in (("[plugin.http]", self.http), ("[plugin.admin]", self.admin)):
            if value is not None and self.manifest_version < SURFACES_MANIFEST_VERSION:
                raise ValueError(
                    f"{section} needs manifest_version = {SURFACES_MANIFEST_VERSION} "
                    f"(this manifest says {self.manifest_version})"
                )
        return self

    @model_validator(mode="after")
    def _admin_stays_in_its_namespace(self) -> Manifest:
        if self.admin is None or self.name is None:
            return self
        for entry in self.admin.command:
            if not admin_namespace_of(self.name, entry.namespace):
                raise ValueError(
                    f"admin namespace {entry.namespace!r} is not plugin {self.name!r}'s: "
                    f"use {self.name!r} or a namespace below it ({self.name}.<name>)"
                )
        duplicate = _first_duplicate(self.admin.names())
        if duplicate is not None:
            raise ValueError(f"admin command {duplicate!r} is declared twice")
        return self

    @field_validator("manifest_version")
    @classmethod
    def _supported(cls, value: int) -> int:
        if value > SUPPORTED_MANIFEST_VERSION:
            raise ValueError(
                f"manifest_version {value} is newer than this clawhost "
                f"understands ({SUPPORTED_MANIFEST_VERSION}); upgrade clawhost"
            )
        return value

    @property
    def requirements(self) -> dict[str, str]:
        """Dependencies keyed by plugin name (a ``clawdesk-plugin-`` prefix is dropped)."""
        return {dependency_name(key): value for key, value in self.dependencies.items()}


def admin_namespace_of(plugin: str, namespace: str) -> bool:
    """Whether ``namespace`` belongs to ``plugin``: its name (``-`` read as ``_`` too), or
    below it."""
    own = {plugin, plugin.replace("-", "_")}
    return any(namespace == name or namespace.startswith(name + ".") for name in own)


def dependency_name(key: str) -> str:
    """The plugin name a ``[plugin.dependencies]`` key refers to."""
    key = key.strip().lower()
    if key.startswith(DISTRIBUTION_PREFIX) and len(key) > len(DISTRIBUTION_PREFIX):
        return key[len(DISTRIBUTION_PREFIX) :]
    return key


_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "plugin": tuple(Manifest.model_fields),
    "capabilities": tuple(Capabilities.model_fields),
    "permissions": tuple(Permissions.model_fields),
    "config": tuple(ConfigOption.model_fields),
    "http": tuple(HttpSection.model_fields),
    "admin": tuple(AdminSection.model_fields),
}


def _field_path(loc: Iterable[int | str]) -> str:
    path = "plugin"
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]" or part.startswith(("function-after[", "function-wrap[")):
            continue
        else:
            path += f".{part}"
    return path


def _problem_from_error(error: Mapping[str, Any]) -> Problem:
    loc = tuple(error["loc"])
    field = _field_path(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        table = _table_of(loc)
        allowed = ", ".join(_TABLE_KEYS.get(table, ()))
        return Problem(field, "unknown key", f"one of: {allowed}" if allowed else None)
    if kind == "string_pattern_mismatch":
        return Problem(field, f"{error['input']!r} is not allowed here", _describe_pattern(loc))
    if kind == "value_error":
        message = str(error["ctx"]["error"]) if "ctx" in error else error["msg"]
        if (loc and loc[-1] == "dependencies") or (len(loc) >= 2 and loc[-2] == "dependencies"):
            return Problem(field, f"invalid requirement {error['input']!r}: {message}")
        return Problem(field, message)
    if kind == "missing":
        return Problem(field, "required field is missing")
    expected = _EXPECTED.get(kind)
    message = error["msg"]
    if expected:
        return Problem(field, f"got {_short(error.get('input'))}", expected)
    return Problem(field, message[:1].lower() + message[1:])


def _table_of(loc: tuple[int | str, ...]) -> str:
    names = [part for part in loc[:-1] if isinstance(part, str)]
    if not names:
        return "plugin"
    if len(names) >= 2 and names[-2] == "config":
        return "config"
    return names[-1]


def _describe_pattern(loc: tuple[int | str, ...]) -> str:
    strings = [part for part in loc if isinstance(part, str)]
    where = strings[-1] if strings else ""
    if where == "name":
        return "lower-case letters, digits, '-' or '_', starting with a letter (max 64)"
    if where == "tools":
        return "1-64 letters, digits, '_' or '-' (the OpenAI function-name rule)"
    if where == "network":
        return "'host:port' (a name, *.name, an IP or [IPv6], and a port 1-65535 or *)"
    if where == "entry":
        return "'module' or 'module:object'"
    if where == "env":
        return "an environment variable name"
    if "config" in strings:
        return "a config key: letters, digits and '_', not starting with a digit"
    return "letters, digits, '_', '.' or '-'"


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_strict": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "bool_strict": "true or false",
    "tuple_type": "an array",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "literal_error": "one of: string, integer, float, boolean, array, table",
    "greater_than_equal": "a number >= 1",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_manifest(
    text: str,
    file: Path | str,
    *,
    required: Iterable[str] = ("name", "version"),
) -> Manifest:
    """Parse and validate manifest text; raise ``ManifestError`` listing every problem.

    ``required`` names ``[plugin]`` fields this source insists on (a directory plugin needs
    ``name``, ``version`` and ``entry``; a distribution fills name and version itself).
    """
    try:
        data = toml_loads(text)
    except TomlSyntaxError as exc:
        problem = Problem(None, f"TOML syntax error: {exc.message}", line=exc.line)
        raise ManifestError(file, [problem], None) from None
    return validate_manifest_data(data, file, required=required)


def validate_manifest_data(
    data: dict[str, Any], file: Path | str, *, required: Iterable[str] = ("name", "version")
) -> Manifest:
    """Validate already-parsed manifest data; see ``parse_manifest``."""
    plugin = data.get("plugin")
    name = plugin.get("name") if isinstance(plugin, dict) else None
    name = name if isinstance(name, str) else None
    problems: list[Problem] = []
    problems.extend(
        Problem(key, "unknown top-level table", "only [plugin]") for key in data if key != "plugin"
    )
    if not isinstance(plugin, dict):
        expected = "a [plugin] table" if plugin is None else "[plugin] to be a table"
        problems.append(Problem("plugin", "missing" if plugin is None else "not a table", expected))
        raise ManifestError(file, problems, name)
    problems.extend(
        Problem(f"plugin.{field}", "required field is missing")
        for field in required
        if plugin.get(field) is None
    )
    manifest: Manifest | None = None
    try:
        manifest = Manifest.model_validate(plugin)
    except ValidationError as exc:
        problems.extend(_problem_from_error(error) for error in exc.errors(include_url=False))
    if problems or manifest is None:
        raise ManifestError(file, problems, name)
    return manifest


def load_manifest(path: Path | str, *, required: Iterable[str] = ("name", "version")) -> Manifest:
    """Read, parse and validate the manifest at ``path``."""
    path = Path(path)
    return parse_manifest(read_manifest_text(path), path, required=required)


def read_manifest_text(path: Path) -> str:
    """Read a manifest file, refusing huge files and text that is not UTF-8."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(path, [Problem(None, "file not found")], None) from None
    except OSError as exc:
        raise ManifestError(path, [Problem(None, f"cannot read: {exc.strerror}")], None) from None
    return decode_manifest(raw, path)


def decode_manifest(raw: bytes, path: Path | str) -> str:
    """Manifest bytes as text: at most ``MAX_MANIFEST_BYTES`` (read one byte more to tell)
    of UTF-8, or a ``ManifestError`` saying which limit was broken."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(
            path, [Problem(None, f"file is larger than {MAX_MANIFEST_BYTES // 1024} KiB")], None
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            path, [Problem(None, f"not UTF-8 text (byte {exc.start})", "UTF-8 encoded TOML")], None
        ) from None
