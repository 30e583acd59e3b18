"""Properties of clawhost on random bad input: it never crashes, and it says whose input is bad.

* Whatever a plugin's ``plugin.toml`` holds (random TOML, near-valid manifests with wrong
  values, raw bytes), discovery returns: the plugin is either discovered or reported by an
  error ``Diagnostic`` that names the plugin, its folder, its manifest file and the fields at
  fault. A host started beside such a plugin still activates a good plugin and serves its
  tool; the bad one ends FAILED, or is absent with its diagnostic. ``start()`` never raises.
* Whatever a ``config.toml`` holds, loading it returns a ``HostConfig`` or raises a
  ``ConfigError`` that names the file and the key path of every problem, never another
  exception; a value substituted from the environment (``${VAR}``) is never echoed back.
* Whatever values a plugin's ``[plugins.<name>.config]`` holds, validation against the
  manifest's schema returns a read-only mapping of exactly the expected values, or raises a
  ``PluginConfigError`` naming the plugin and exactly the keys at fault; the value of a
  secret option (``secret = true`` or read from ``env``) never appears in the error, in a
  ``repr`` or in the logs, even when it is invalid.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import string
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
import rtoml
import tomlkit
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

from clawhost import (
    ConfigOption,
    HostConfig,
    PluginConfig,
    PluginHost,
    PluginState,
    discover_plugins,
    load_host_config,
    load_manifest,
    validate_plugin_config,
)
from clawhost.config.host import RESERVED_PLUGINS_KEYS
from clawhost.core.describe import toml_path
from clawhost.discovery.manifest import MAX_MANIFEST_BYTES
from clawhost.errors import ConfigError, ManifestError, PluginConfigError

from ._site import directory_plugin

DISCOVERY_EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
HOST_EXAMPLES = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
CONFIG_EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
LOGGED_EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

DIRECTORY_REQUIRED = ("name", "version", "entry")
BAD_FOLDER = "bad-plugin"
GOOD_NAME = "known-good"
GOOD_TOOL = "known_good_ping"
GOOD_CODE = '''
from clawhost import hookimpl, tool

@tool
def known_good_ping() -> str:
    """Answer pong."""
    return "pong"

@hookimpl
def activate(ctx):
    ctx.register_tool(known_good_ping)
'''
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)
SECRET_PREFIX = "S3CRET-"
SECRETS = st.text(alphabet=string.ascii_letters + string.digits, min_size=8, max_size=16).map(
    lambda token: SECRET_PREFIX + token
)


# -- random TOML values ---------------------------------------------------------------------------

TIMEZONES = st.sampled_from(
    [
        None,
        dt.UTC,
        dt.timezone(dt.timedelta(hours=5, minutes=30)),
        dt.timezone(dt.timedelta(hours=-8)),
    ]
)
ODD_TEXT = ("", " ", "\t", "é", "名前", "\u200b", "🦀", "\x7f", "a\nb", "\x00", '"', "'''")
SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=12),
    st.sampled_from(ODD_TEXT),
    st.integers(),
    st.sampled_from([2**63 - 1, 2**63, -(2**63) - 1, 10**40, -(10**40)]),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0]),
    st.booleans(),
    st.dates(),
    st.datetimes(timezones=TIMEZONES),
    st.times(),
)
REAL_KEYS = (
    "plugin",
    "name",
    "version",
    "entry",
    "capabilities",
    "tools",
    "dependencies",
    "permissions",
    "config",
    "type",
    "default",
    "secret",
    "env",
)
KEYS: st.SearchStrategy[str] = st.one_of(st.text(max_size=8), st.sampled_from(REAL_KEYS))
TREES: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


def _toml_string(text: str) -> str:
    # JSON's escapes are TOML's, except that TOML also refuses a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _inline(value: Any) -> str:
    """One value as inline TOML (tables as ``{...}``), by hand."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(_inline, value)) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_string(key)} = {_inline(item)}" for key, item in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"not a TOML value: {value!r}")


def to_toml(document: Mapping[str, Any], style: str) -> str:
    """``document`` as TOML: by tomlkit (with [table] headers), or all inline by hand."""
    if style == "tomlkit":
        return tomlkit.dumps(document)
    return "".join(f"{_toml_string(key)} = {_inline(value)}\n" for key, value in document.items())


def parsed(content: bytes) -> dict[str, Any] | None:
    """The document ``content`` encodes, as clawhost's TOML parser reads it; else None."""
    try:
        document: dict[str, Any] = rtoml.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, rtoml.TomlParsingError):
        return None
    return document


def key_paths(value: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The path of every table, array and value inside ``value``."""
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from key_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from key_paths(item, (*prefix, index))


def outcome_of(call: Callable[[], T], error: type[E]) -> T | E:
    """What ``call`` returns, or the ``error`` it raises (any other exception escapes)."""
    try:
        return call()
    except error as exc:
        return exc


# -- random manifests -----------------------------------------------------------------------------


def plausible(*values: Any) -> st.SearchStrategy[Any]:
    """One of ``values`` (right or plausibly wrong for the field), or any scalar."""
    return st.sampled_from(values) | SCALARS


def lists_of(*values: Any) -> st.SearchStrategy[Any]:
    return st.lists(plausible(*values), max_size=4)


def table_or_junk(table: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly ``table``; sometimes a scalar or an array where a table belongs."""
    return st.one_of(table, table, SCALARS, st.lists(TREES, max_size=2))


VALID_NAMES = ("bad-plugin", "zz_other", "x", "a1-b2_c3", "known-goods")
NAMES = (*VALID_NAMES, "Bad-Plugin", "bad plugin", "", " ", "1abc", "-x", "a" * 65, "名前", 42)
VERSIONS = (
    "1.0.0",
    "0.1",
    "2.0.0rc1",
    "1.2.3-beta.2",
    "1!2.0.post1.dev3+local.7",
    "1.0.0.0.0.x",
    "",
    "v",
    "latest",
    "1..0",
    "^1.0",
    ">=1",
    "1.0.0-",
    "x.y.z",
    "1" * 5000,
    1,
    1.0,
    [1, 0, 0],
    {"major": 1},
)
# Entries never name an importable module: a valid manifest fails to import, never runs.
ENTRIES = (
    "zz_nosuch_mod",
    "zz_nosuch_mod:make",
    "zz_nosuch.pkg:attr.sub",
    "_zz_nosuch",
    "1bad",
    "zz:a:b",
    "",
    " ",
    "zz-nosuch",
    "zz nosuch",
    "zz_nosuch:",
    ":obj",
    "zz_nosuch.",
    3,
    ["zz_nosuch_mod"],
)
REQUIREMENTS = (
    ">=1.0",
    "^1.2",
    "~1",
    "*",
    "1.x",
    "1.2.*",
    ">=1, <2",
    ">=1.0.0 <2.0.0",
    "==1.0.0",
    "!=1.0.0",
    "<1.0",
    "=>1",
    "^^1",
    "1.0.0.0.0.x",
    "",
    " ",
    ">= banana",
    "!=",
    "^1 || ^2",
    "~=1",
    "===weird",
    ">=" + "9" * 5000,
    1,
    True,
    ["^1"],
    {"version": "^1"},
)
DEPENDENCY_KEYS = (
    GOOD_NAME,
    f"clawdesk-plugin-{GOOD_NAME}",
    "ghost",
    BAD_FOLDER,
    "Bad Key",
    "",
    "clawdesk-plugin-",
    "1abc",
    "a" * 70,
)
TOOL_NAMES = (GOOD_TOOL, "fetch", "get-weather", "a" * 64, "a" * 65, "", "has space", "dot.ted", 7)
CAPABILITY_NAMES = ("chat", "x.y-z_1", ".hidden", "", "a" * 129, "has space", 7)
NETWORK = (
    "api.example.com:443",
    "*:*",
    "*.example.com:80",
    "[::1]:8080",
    "10.0.0.1:65535",
    "host",
    "host:0",
    "host:65536",
    ":80",
    "",
    "http://x:1",
    443,
)
CONFIG_TYPES = ("string", "integer", "float", "boolean", "array", "table", "str", "enum", "", 1)

CAPABILITIES = st.fixed_dictionaries(
    {},
    optional={
        "tools": lists_of(*TOOL_NAMES),
        "channels": lists_of(*CAPABILITY_NAMES),
        "pipeline_stages": lists_of(*CAPABILITY_NAMES),
        "providers": lists_of(*CAPABILITY_NAMES),
        "tool": lists_of(*TOOL_NAMES),
    },
)
PERMISSIONS = st.fixed_dictionaries(
    {},
    optional={
        "network": lists_of(*NETWORK),
        "filesystem": lists_of("data", "/tmp", "~/x", "", " ", 1),
        "subprocess": plausible(True, False, "yes", 1),
        "net": TREES,
    },
)
CONFIG_OPTION = st.fixed_dictionaries(
    {},
    optional={
        "type": plausible(*CONFIG_TYPES),
        "required": plausible(True, False, "true", 1),
        "default": TREES,
        "env": plausible("API_KEY", "_X", "1BAD", "", "has space", "A-B"),
        "enum": st.one_of(st.lists(SCALARS, max_size=3), SCALARS),
        "description": SCALARS,
        "secret": plausible(True, False, "no"),
        "optional": SCALARS,
    },
)
PLUGIN_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "name": plausible(*NAMES),
        "version": plausible(*VERSIONS),
        "entry": plausible(*ENTRIES),
        "description": SCALARS,
        "author": SCALARS,
        "license": SCALARS,
        "homepage": SCALARS,
        "min_clawdesk_version": plausible(*VERSIONS, "99.0"),
        "manifest_version": plausible(1, 0, -1, 2, 2**63, "1", 1.0, True),
        "capabilities": table_or_junk(CAPABILITIES),
        "dependencies": table_or_junk(
            st.dictionaries(plausible(*DEPENDENCY_KEYS).map(str), plausible(*REQUIREMENTS))
        ),
        "permissions": table_or_junk(PERMISSIONS),
        "config": table_or_junk(
            st.dictionaries(
                plausible("api_key", "units", "_x", "1bad", "has space", "", "é").map(str),
                table_or_junk(CONFIG_OPTION),
                max_size=3,
            )
        ),
    },
)
UNKNOWN_FIELDS = st.dictionaries(
    plausible("Name", "entry_point", "requires", "tools", "plugin").map(str), TREES, max_size=2
)


@st.composite
def near_valid_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A ``[plugin]`` table of the real fields with plausible, often wrong, values."""
    plugin: dict[str, Any] = {}
    if draw(st.booleans()):  # a valid core, so that the other fields decide
        plugin.update(name=draw(st.sampled_from(VALID_NAMES)), version="1.0.0")
        plugin.update(entry=draw(st.sampled_from(ENTRIES[:4])))
    plugin.update(draw(PLUGIN_FIELDS))
    plugin.update(draw(UNKNOWN_FIELDS))
    others = draw(
        st.dictionaries(plausible("plugins", "tool", "Plugin").map(str), TREES, max_size=2)
    )
    others.pop("plugin", None)
    return {"plugin": plugin, **others}


DOOMED_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "min_clawdesk_version": st.sampled_from(("0.1", "99.0")),
        "capabilities": st.fixed_dictionaries(
            {},
            optional={
                "tools": st.lists(
                    st.sampled_from((GOOD_TOOL, "fetch", "get-weather", "a" * 64)), unique=True
                ),
                "channels": st.lists(st.sampled_from(("chat", "x.y-z_1")), unique=True),
            },
        ),
        "dependencies": st.dictionaries(
            st.sampled_from((GOOD_NAME, f"clawdesk-plugin-{GOOD_NAME}", "ghost", *VALID_NAMES)),
            st.sampled_from((">=1.0", "^1.2", "~1", "*", "1.x", ">=1, <2", "<1.0", "^2", ">=99")),
            max_size=2,
        ),
        "permissions": st.fixed_dictionaries(
            {},
            optional={
                "network": st.lists(st.sampled_from(("api.example.com:443", "*:*")), max_size=2),
                "filesystem": st.lists(st.sampled_from(("data", "/etc")), max_size=2),
                "subprocess": st.booleans(),
            },
        ),
        "config": st.dictionaries(
            st.sampled_from(("api_key", "units")),
            st.fixed_dictionaries(
                {"type": st.sampled_from(("string", "integer", "table"))},
                optional={
                    "required": st.booleans(),
                    "secret": st.booleans(),
                    "env": st.just("CLAWHOST_TEST_UNSET"),
                },
            ),
            max_size=2,
        ),
    },
)


@st.composite
def doomed_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid manifest of a plugin that cannot run: its module does not exist, and it may
    need a missing or mismatched dependency (or itself), more permissions than the host
    grants, a config value nobody set, or a newer host."""
    plugin = {
        "name": draw(st.sampled_from(VALID_NAMES)),
        "version": draw(st.sampled_from(("1.0.0", "0.1", "2.0.0rc1", "1!2.0.post1"))),
        "entry": draw(st.sampled_from(ENTRIES[:4])),
    }
    return {"plugin": {**plugin, **draw(DOOMED_FIELDS)}}


RANDOM_DOCUMENTS: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.dictionaries(KEYS, TREES, max_size=4),
    st.builds(lambda rest, plugin: {**rest, "plugin": plugin}, st.dictionaries(KEYS, TREES), TREES),
)
DOCUMENTS = st.one_of(near_valid_documents(), doomed_documents(), RANDOM_DOCUMENTS)
STYLES = st.sampled_from(["tomlkit", "inline"])

VALID_MANIFEST = f"""\
[plugin]
name = "{BAD_FOLDER}"
version = "1.0.0"
entry = "zz_nosuch_mod"
description = "A plugin whose code does not exist."

[plugin.capabilities]
tools = ["fetch"]

[plugin.dependencies]
{GOOD_NAME} = "^1.0"

[plugin.config.api_key]
type = "string"
secret = true
"""


@st.composite
def raw_manifests(draw: st.DrawFn) -> bytes:
    """Bytes no well-behaved tool writes: binary, odd text, cut or corrupted manifests."""
    valid = VALID_MANIFEST.encode()
    cut = draw(st.integers(0, len(valid)))
    position = draw(st.integers(0, len(valid)))
    content: bytes = draw(
        st.one_of(
            st.binary(max_size=300),
            st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
            st.text(alphabet="[]{}=\"'#.,\n\t abc123_-:\\", max_size=120).map(str.encode),
            st.just(valid[:cut]),
            st.binary(min_size=1, max_size=4).map(lambda junk: valid[:position] + junk),
            st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]).map(
                lambda junk: valid[:position] + junk + valid[position:]
            ),
            st.just(b"\xef\xbb\xbf" + valid),
            st.just(VALID_MANIFEST.encode("utf-16")),
            st.just(valid + b"#" * MAX_MANIFEST_BYTES),
            st.just(b"a = " + b"[" * 5000),
            st.just(b""),
        )
    )
    return content


@st.composite
def manifest_files(draw: st.DrawFn) -> bytes:
    """The bytes of a plugin.toml: a random document, or raw bytes one time in four."""
    if draw(st.integers(0, 3)) == 0:
        return draw(raw_manifests())
    return to_toml(draw(DOCUMENTS), draw(STYLES)).encode("utf-8")


def claims_the_good_name(document: Mapping[str, Any] | None) -> bool:
    """Whether the bad manifest names itself like the good plugin (a newer version of it
    would rightly replace it, which is not what these properties are about)."""
    plugin = document.get("plugin") if document is not None else None
    name = plugin.get("name") if isinstance(plugin, dict) else None
    return isinstance(name, str) and name.strip() == GOOD_NAME


def write_bad_plugin(root: Path, content: bytes) -> Path:
    folder = root / BAD_FOLDER
    folder.mkdir(parents=True)
    manifest_path = folder / "plugin.toml"
    manifest_path.write_bytes(content)
    return manifest_path


def field_points_into(field: str, document: Mapping[str, Any]) -> bool:
    """Whether a manifest problem's ``field`` names a key of ``document`` (or a required
    field, which may be missing)."""
    if field in document or field == "plugin":
        return True
    plugin = document.get("plugin")
    if not isinstance(plugin, dict):
        return False
    return any(
        field == f"plugin.{key}" or field.startswith((f"plugin.{key}.", f"plugin.{key}["))
        for key in {*plugin, *DIRECTORY_REQUIRED}
    )


def check_discovery(root: Path, manifest_path: Path) -> None:
    """Discovery of ``root`` returns, and the manifest is either a plugin or an error
    diagnostic naming the plugin, its folder, its file and the fields at fault."""
    document = parsed(manifest_path.read_bytes())
    result = discover_plugins(dirs=[root], path=[], cache=False)

    found = [plugin for plugin in result.plugins if plugin.manifest_path == manifest_path]
    errors = [d for d in result.diagnostics if d.file == manifest_path and d.severity == "error"]
    assert bool(found) != bool(errors), (found, errors)
    assert len(found) <= 1
    event("discovered" if found else "diagnosed")
    loaded = outcome_of(
        lambda: load_manifest(manifest_path, required=DIRECTORY_REQUIRED), ManifestError
    )
    if isinstance(loaded, ManifestError):  # the same verdict, in a message naming the file
        assert not found
        assert loaded.file == manifest_path
        assert str(manifest_path) in str(loaded)
        assert loaded.problems == errors[0].problems
    else:
        assert repr(found[0].manifest) == repr(loaded)  # repr: NaN defaults are unequal
        assert found[0].name == loaded.name
    plugin = document.get("plugin") if document is not None else None
    own_name = plugin.get("name") if isinstance(plugin, dict) else None
    for diagnostic in errors:
        text = str(diagnostic)
        assert diagnostic.stage == "discover"
        assert diagnostic.plugin in (BAD_FOLDER, own_name)
        assert str(manifest_path.parent) in text
        assert diagnostic.problems
        for problem in diagnostic.problems:
            assert str(problem) in text
            if problem.field is not None and document is not None:
                assert field_points_into(problem.field, document), problem


@DISCOVERY_EXAMPLES
@given(document=DOCUMENTS, style=STYLES)
@example(document={"plugin": {"name": "a", "version": "1" * 5000, "entry": "m"}}, style="inline")
@example(document={"plugin": []}, style="tomlkit")
@example(document={}, style="inline")
def test_a_random_manifest_is_discovered_or_a_diagnostic_naming_its_file_and_fields(
    document: dict[str, Any], style: str
) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / "plugins"
        manifest_path = write_bad_plugin(root, to_toml(document, style).encode("utf-8"))

        check_discovery(root, manifest_path)


@DISCOVERY_EXAMPLES
@given(content=raw_manifests())
def test_random_bytes_as_a_manifest_never_escape_discovery_as_an_exception(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / "plugins"
        manifest_path = write_bad_plugin(root, content)

        check_discovery(root, manifest_path)


async def start_beside_a_good_plugin(root: Path, manifest_path: Path) -> None:
    host = PluginHost(dirs=[root], path=[], cache=False)
    await host.start()  # never raises, whatever the bad plugin is
    try:
        good = host.plugins[GOOD_NAME]
        assert good.state is PluginState.ACTIVE, good.failure
        assert await host.tools.invoke(GOOD_TOOL, {}) == "pong"

        others = [record for name, record in host.plugins.items() if name != GOOD_NAME]
        assert len(others) <= 1
        failure = others[0].failure if others else None
        event(f"bad plugin failed to {failure.stage}" if failure else "bad plugin absent")
        if others:
            (bad,) = others
            assert bad.state is PluginState.FAILED, bad
            assert bad.failure is not None
            assert bad.failure.stage in {"load", "resolve", "activate"}
            assert bad.failure.reason
            assert bad.plugin is not None
            assert bad.plugin.manifest_path == manifest_path
        else:
            assert any(
                d.file == manifest_path and d.severity == "error" and d.plugin
                for d in host.diagnostics
            ), host.diagnostics
    finally:
        await host.stop()
    assert host.plugins[GOOD_NAME].state is PluginState.INACTIVE


@HOST_EXAMPLES
@given(content=manifest_files())
@example(content=VALID_MANIFEST.encode())
@example(
    content=VALID_MANIFEST.replace('"^1.0"', '"<1.0"')
    .replace('["fetch"]', f'["{GOOD_TOOL}"]')
    .encode()
)
@example(content=VALID_MANIFEST.encode() + b"\n[plugin.permissions]\nsubprocess = true\n")
def test_a_bad_plugin_never_stops_a_good_one_from_starting(content: bytes) -> None:
    assume(not claims_the_good_name(parsed(content)))
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / "plugins"
        manifest_path = write_bad_plugin(root, content)
        directory_plugin(
            root,
            GOOD_NAME,
            GOOD_CODE,
            sections={"caps": f'[plugin.capabilities]\ntools = ["{GOOD_TOOL}"]'},
        )

        anyio.run(start_beside_a_good_plugin, root, manifest_path)


# -- random host configurations -------------------------------------------------------------------

ENVIRON = {"TOKEN": "token-value", "EMPTY": ""}
# A reference to a set variable half the time; else the other forms, good and bad.
INTERPOLATED = st.just("${TOKEN}") | st.sampled_from(
    (
        "x-${TOKEN}-y",
        "${MISSING}",
        "${",
        "${}",
        "${1A}",
        "$$",
        "$${TOKEN}",
        "${MISSING:-plugins}",
        "${A:-${B}}",
        "${EMPTY}",
        "${EMPTY:-4}",
        "costs $5",
    )
)


def setting(*values: Any) -> st.SearchStrategy[Any]:
    """A host setting's value: plausible, interpolated, any scalar, or a container of those."""
    contained = st.one_of(st.sampled_from(values), INTERPOLATED, SCALARS)
    return st.one_of(
        st.sampled_from(values),
        INTERPOLATED,
        SCALARS,
        st.lists(contained, max_size=2),
        st.dictionaries(st.sampled_from(("a", "value", "")), contained, max_size=2),
    )


PATHS = ("plugins", "/srv/plugins", "~/plugins", "", " ", "${TOKEN}/x", "${MISSING}")
SANDBOX_FIELDS = {
    "max_memory_mb": setting(256, 1, 0, -1, 2**70, 1.5, "256"),
    "max_cpu_time_secs": setting(30, 0.001, 0, -1, math.nan, math.inf, "30", True),
    "fs_allowed": setting(*PATHS) | lists_of(*PATHS),
    "net_allowed": setting(*NETWORK) | lists_of(*NETWORK, "${TOKEN}"),
    "allow_subprocess": setting(True, False, "false", 0, 1),
    "max_concurrency": setting(4, 1, 0, -3, 2.0, "4", True),
    "isolation": setting("in-process", "process", "thread", "", "Process", 1),
}
SANDBOX = st.fixed_dictionaries({}, optional={**SANDBOX_FIELDS, "max_memory": TREES})
HOST_FIELDS = {
    "dirs": setting(*PATHS) | lists_of(*PATHS),
    "hot_reload": setting(True, False, "true", 1),
    "watch_interval_secs": setting(2, 0.5, 0, -1, math.nan, "2"),
    "lazy_activation": setting(True, False, "no"),
    "entry_point_group": setting("clawdesk.plugins", "my_group-1", "", "bad group", "a/b"),
    "discovery_cache": setting(True, False, 0),
    "call_timeout_secs": setting(45, 0.1, 0, -5, math.inf, "45"),
    "sandbox": table_or_junk(SANDBOX),
}
PLUGIN_SECTION = st.fixed_dictionaries(
    {},
    optional={
        "enabled": setting(True, False, "yes", 1),
        "config": st.one_of(
            st.dictionaries(st.text(max_size=6), TREES | INTERPOLATED, max_size=3),
            setting("api_key"),
        ),
        "sandbox": table_or_junk(SANDBOX),
        "isolation": setting("in-process", "process", "thread"),
        "enable": SCALARS,
        "settings": TREES,
    },
)
SECTION_NAMES = st.one_of(
    st.sampled_from(
        ("weather", "my-plugin", "a_b", "Bad Name", "", "1abc", "a" * 65, "é", "plugin_settings")
    ),
    st.sampled_from(sorted(RESERVED_PLUGINS_KEYS)),
    st.text(max_size=8),
)


@st.composite
def config_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A config.toml document: host settings, [plugins.sandbox], plugin sections, and tables
    of the embedding application, with plausible, often wrong, values."""
    sections = draw(st.dictionaries(SECTION_NAMES, table_or_junk(PLUGIN_SECTION), max_size=3))
    fields = draw(st.fixed_dictionaries({}, optional=HOST_FIELDS))
    plugins: Any = {**sections, **fields} if draw(st.booleans()) else {**fields, **sections}
    if draw(st.integers(0, 9)) == 0:
        plugins = draw(st.one_of(SCALARS, st.lists(TREES, max_size=2)))
    others = draw(
        st.dictionaries(plausible("plugin", "Plugins", "PLUGIN", "app").map(str), TREES, max_size=2)
    )
    others.pop("plugins", None)
    if draw(st.integers(0, 9)) == 0:
        return others
    return {**others, "plugins": plugins}


def check_config_outcome(
    document: Mapping[str, Any], load: Callable[[], HostConfig], file: Path | None
) -> None:
    """Run ``load``; it returns a HostConfig, or raises a ConfigError that names the file
    and, for every problem, a key path present in ``document``. Nothing else escapes."""
    config = outcome_of(load, ConfigError)
    event(type(config).__name__)
    if isinstance(config, ConfigError):
        text = str(config)
        assert config.file == file
        if file is not None:
            assert str(file) in text
        assert config.problems
        where = {toml_path(path) for path in key_paths(document)}
        for problem in config.problems:
            assert str(problem) in text
            assert problem.field is None or problem.field in where, problem
        return
    assert isinstance(config, HostConfig)
    assert config.file == file
    plugins = document.get("plugins", {})
    sections = {
        name
        for name, value in plugins.items()
        if isinstance(value, dict) and name not in RESERVED_PLUGINS_KEYS
    }
    assert set(config.plugins.plugin_settings) == sections
    for name in sections:
        assert isinstance(config.settings_for(name).enabled, bool)
        assert config.sandbox_for(name).max_concurrency >= 1


@CONFIG_EXAMPLES
@given(document=config_documents())
@example(document={"plugins": {"dirs": {"sandbox": 1}, "p": {"sandbox": []}}})
@example(document={"plugin": {}, "plugins": []})
def test_a_random_host_config_mapping_is_valid_or_a_config_error_naming_the_key(
    document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.getbasetemp()

    check_config_outcome(
        document,
        lambda: HostConfig.from_mapping(document, base_dir=base, environ=ENVIRON),
        None,
    )


@CONFIG_EXAMPLES
@given(document=config_documents(), style=STYLES, raw=st.none() | raw_manifests())
def test_a_random_config_file_is_valid_or_a_config_error_naming_the_file_and_key(
    document: dict[str, Any], style: str, raw: bytes | None
) -> None:
    content = to_toml(document, style).encode("utf-8") if raw is None else raw
    with tempfile.TemporaryDirectory() as temporary:
        path = Path(temporary) / "config.toml"
        path.write_bytes(content)

        check_config_outcome(
            parsed(content) or {}, lambda: load_host_config(path, environ=ENVIRON), path
        )


@CONFIG_EXAMPLES
@given(document=config_documents(), secret=SECRETS)
@example(document={"plugins": {"weather": {"enabled": ["${TOKEN}"]}}}, secret="S3CRET-abcdefgh")
@example(
    document={"plugins": {"sandbox": {"max_concurrency": {"a": "${TOKEN}"}}}}, secret="S3CRET-1"
)
def test_a_value_substituted_from_the_environment_never_appears_in_a_config_error(
    document: dict[str, Any], secret: str
) -> None:
    environ = {**ENVIRON, "TOKEN": secret}
    error = outcome_of(lambda: HostConfig.from_mapping(document, environ=environ), ConfigError)

    if isinstance(error, ConfigError):
        shown = (str(error), repr(error), repr(error.problems))
        assert not any(secret in text for text in shown), str(error)


# -- random plugin configuration against a random schema -----------------------------------------

TYPES = ("string", "integer", "float", "boolean", "array", "table")
LOWER = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6)
MISSING = object()
ENV_BOOLEANS = {True: ("true", "1", "YES", " yes "), False: ("false", "0", "No", " no ")}
EXPECTED_BY_TYPE: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "float": (int, float),
    "boolean": bool,
    "array": list,
    "table": dict,
}


def fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the option type ``kind`` (TOML is typed: no coercion)."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, EXPECTED_BY_TYPE[kind])


def plain_values(kind: str) -> st.SearchStrategy[Any]:
    """Valid values of ``kind`` that cannot contain a secret."""
    small = LOWER | st.integers(-9, 9)
    return {
        "string": LOWER,
        "integer": st.integers(-(10**9), 10**9),
        "float": st.floats(-1e6, 1e6),
        "boolean": st.booleans(),
        "array": st.lists(small, max_size=3),
        "table": st.dictionaries(LOWER, small, max_size=3),
    }[kind]


@dataclass
class OptionCase:
    """One option of a random schema, the value given for it, and what must come out."""

    key: str
    option: ConfigOption
    given: Any = MISSING
    environ: dict[str, str] = field(default_factory=dict)
    bad: bool = False
    expected: Any = None
    secrets: list[str] = field(default_factory=list)


@st.composite
def options(draw: st.DrawFn, key: str) -> ConfigOption:
    """A valid option of a random type, maybe required, secret, env-backed or an enum."""
    kind = draw(st.sampled_from(TYPES))
    enum: tuple[Any, ...] | None = None
    if kind == "boolean" and draw(st.booleans()):
        enum = (draw(st.booleans()),)
    elif kind in ("string", "integer", "float") and draw(st.booleans()):
        enum = tuple(draw(st.lists(plain_values(kind), min_size=1, max_size=3, unique=True)))
    required = draw(st.booleans())
    default = None
    if not required and draw(st.booleans()):
        default = draw(st.sampled_from(enum) if enum else plain_values(kind))
    return ConfigOption.model_validate(
        {
            "type": kind,
            "required": required,
            "default": default,
            "env": draw(st.none() | st.just(f"CLAWHOST_TEST_{key.upper()}")),
            "enum": enum,
            "secret": draw(st.booleans()),
            "description": draw(LOWER),
        }
    )


def _unset(draw: st.DrawFn, case: OptionCase, token: str) -> None:
    if case.option.env is not None and draw(st.booleans()):
        case.environ[case.option.env] = ""  # an empty variable counts as unset
    case.bad = case.option.required
    case.expected = case.option.default


def _good(draw: st.DrawFn, case: OptionCase, token: str) -> None:
    option = case.option
    if option.enum is not None:
        value = draw(st.sampled_from(option.enum))
    elif option.is_secret and option.type in ("string", "array", "table"):
        value = {"string": token, "array": [token], "table": {"key": token}}[option.type]
        case.secrets.append(token)
    else:
        value = draw(plain_values(option.type))
    case.given = case.expected = value
    if option.env is not None and draw(st.booleans()):  # the config wins over the environment
        case.environ[option.env] = draw(SECRETS)
        case.secrets.append(case.environ[option.env])


def _wrong_type(draw: st.DrawFn, case: OptionCase, token: str) -> None:
    shapes: list[Any] = [7, 2.5, True, dt.date(2024, 1, 1)]
    if case.option.is_secret:
        shapes += [token, [token], {"key": token}]
        case.secrets.append(token)
    else:
        shapes += ["text", [1], {"a": 1}]
    case.given = draw(st.sampled_from([v for v in shapes if not fits(case.option.type, v)]))
    case.bad = True


def _not_in_enum(draw: st.DrawFn, case: OptionCase, token: str) -> None:
    option = case.option
    assert option.enum is not None
    if option.type == "string":
        case.given = token if option.is_secret else "not-listed"
        case.secrets += [token] if option.is_secret else []
    elif option.type == "boolean":
        case.given = not option.enum[0]
    else:
        case.given = max(option.enum) + (1 if option.type == "integer" else 1.5)
    case.bad = True


def _env_good(draw: st.DrawFn, case: OptionCase, token: str) -> None:
    option = case.option
    assert option.env is not None
    listed = st.sampled_from(option.enum) if option.enum is not None else None
    if option.type == "string":
        value = text = draw(listed) if listed is not None else token
    elif option.type == "boolean":
        value = draw(listed if listed is not None else st.booleans())
        text = draw(st.sampled_from(ENV_BOOLEANS[value]))
    elif option.type in ("integer", "float"):
        value = draw(listed if listed is not None else plain_values(option.type))
        text = f" {value!r} "
    else:
        value = [token] if option.type == "array" else {"key": token}
        text = json.dumps(value)
    case.environ[option.env] = text
    case.expected = value
    case.secrets.append(token)


def _env_bad(draw: st.DrawFn, case: OptionCase, token: str) -> None:
    # No number, boolean or JSON reads as the token; as a string, only an enum refuses it.
    assert case.option.env is not None
    case.environ[case.option.env] = token
    case.secrets.append(token)
    case.bad = case.option.type != "string" or case.option.enum is not None
    case.expected = token


@st.composite
def option_cases(draw: st.DrawFn, key: str) -> OptionCase:
    """An option, a value given for it (or not), and what validation must make of it."""
    option = draw(options(key))
    makers = [_unset, _good, _wrong_type]
    if option.enum is not None and (option.type != "boolean" or len(option.enum) == 1):
        makers.append(_not_in_enum)
    if option.env is not None:
        makers += [_env_good, _env_bad]
    case = OptionCase(key, option)
    draw(st.sampled_from(makers))(draw, case, draw(SECRETS))
    return case


@dataclass
class ConfigWorld:
    """A random schema, the values and environment given, and the outcome they must have."""

    plugin: str
    file: Path | None
    cases: list[OptionCase]
    unknown: dict[str, Any]

    @property
    def schema(self) -> dict[str, ConfigOption]:
        return {case.key: case.option for case in self.cases}

    @property
    def values(self) -> dict[str, Any]:
        given = {case.key: case.given for case in self.cases if case.given is not MISSING}
        return {**given, **self.unknown}

    @property
    def environ(self) -> dict[str, str]:
        return {name: text for case in self.cases for name, text in case.environ.items()}

    @property
    def secrets(self) -> list[str]:
        return [secret for case in self.cases for secret in case.secrets]

    def field(self, key: str) -> str:
        return f"plugins.{self.plugin}.config.{key}"

    def validate(self) -> PluginConfig:
        return validate_plugin_config(
            self.plugin, self.schema, self.values, file=self.file, environ=self.environ
        )


@st.composite
def config_worlds(draw: st.DrawFn) -> ConfigWorld:
    keys = draw(
        st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True), max_size=5, unique=True)
    )
    cases = [draw(option_cases(key)) for key in keys]
    unknown = draw(
        st.just({})
        | st.dictionaries(
            st.sampled_from(("extra", "Api_Key", "typo_key", "x1")).filter(
                lambda key: key not in keys
            ),
            plain_values("string") | plain_values("integer"),
            max_size=2,
        )
    )
    return ConfigWorld(
        plugin=draw(st.sampled_from(("weather", "my-plugin", "a_b"))),
        file=draw(st.none() | st.just(Path("/srv/clawdesk/config.toml"))),
        cases=cases,
        unknown=unknown,
    )


@CONFIG_EXAMPLES
@given(world=config_worlds())
def test_random_plugin_config_is_the_expected_mapping_or_an_error_naming_each_bad_key(
    world: ConfigWorld,
) -> None:
    bad = {world.field(case.key) for case in world.cases if case.bad}
    bad |= {world.field(key) for key in world.unknown}
    config = outcome_of(world.validate, PluginConfigError)
    event(type(config).__name__)

    if isinstance(config, PluginConfigError):
        text = str(config)
        assert bad, text
        assert config.plugin == world.plugin
        assert f"plugin {world.plugin!r}" in text
        assert config.file == world.file
        assert world.file is None or str(world.file) in text
        assert {problem.field for problem in config.problems} == bad, text
        assert all(str(problem) in text for problem in config.problems)
        return
    assert not bad, config
    assert dict(config) == {case.key: case.expected for case in world.cases}
    with pytest.raises(AttributeError):
        setattr(config, "_values", {})  # noqa: B010 - the attribute is the point
    with pytest.raises(TypeError):
        config["key"] = "value"  # type: ignore[index]


@LOGGED_EXAMPLES
@given(world=config_worlds())
@example(
    world=ConfigWorld(
        plugin="weather",
        file=None,
        cases=[
            OptionCase(
                "api_key",
                ConfigOption(type="integer", env="API_KEY"),
                environ={"API_KEY": "S3CRET-abcdefgh"},
                bad=True,
                secrets=["S3CRET-abcdefgh"],
            ),
            OptionCase(
                "token",
                ConfigOption(type="string", secret=True, enum=("a", "b")),
                given="S3CRET-zyxwvuts",
                bad=True,
                secrets=["S3CRET-zyxwvuts"],
            ),
        ],
        unknown={},
    )
)
def test_a_secret_value_never_appears_in_an_error_a_repr_or_the_logs(
    world: ConfigWorld, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="clawhost"):
        config = outcome_of(world.validate, PluginConfigError)
        if isinstance(config, PluginConfigError):
            # What the host does with it: log it as the plugin's failure (PluginRecord.fail).
            logging.getLogger("clawhost.tests").error("%s", config)
            shown = [str(config), repr(config), repr(config.problems), repr(config.args)]
        else:
            logging.getLogger("clawhost.tests").info("%s %r", config, config)
            shown = [str(config), repr(config), repr(config.masked())]
            for case in world.cases:  # the secrets are really there, only never shown
                if not case.bad and case.secrets and case.expected is not None:
                    assert config[case.key] == case.expected
    shown += [caplog.text, *(record.getMessage() for record in caplog.records)]

    for secret in world.secrets:
        assert not any(secret in text for text in shown), secret
