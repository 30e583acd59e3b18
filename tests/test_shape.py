"""A plugin's shape (capability, hybrid, hook-only, none): ``classify`` and what
``plugins list`` and ``plugins inspect`` show of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawhost import Manifest
from clawhost.runtime.context import Registrations
from clawhost.runtime.shape import KINDS, classify

from ._cli import EXAMPLES, invoke
from ._site import SiteDir, manifest

RULEBOT = EXAMPLES / "clawdesk-plugin-rulebot" / "src" / "clawdesk_plugin_rulebot"

TOOLS_CODE = """\
from clawhost import hookimpl

def hello(name: str) -> str:
    \"\"\"Say hello.\"\"\"
    return f"hello {name}"

@hookimpl
def activate(ctx):
    ctx.register_tool(hello)
"""
HOOK_CODE = """\
from clawhost import hookimpl

@hookimpl
def on_message_received(message):
    pass
"""
ON_CODE = """\
from clawhost import hookimpl

@hookimpl
def activate(ctx):
    ctx.on("on_response_sent", lambda response: None)
"""
EMPTY_CODE = "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    pass\n"


def _manifest(**plugin: Any) -> Manifest:
    return Manifest.model_validate({"name": "demo", "version": "1.0.0", **plugin})


# -- classify ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("capabilities", "kind"),
    [
        ({"tools": ["hello"]}, "tools"),
        ({"channels": ["console"]}, "channels"),
        ({"pipeline_stages": ["trim", "redact"]}, "pipeline_stages"),
        ({"providers": ["geocoder"]}, "providers"),
    ],
)
def test_one_declared_kind_is_a_capability_plugin(
    capabilities: dict[str, list[str]], kind: str
) -> None:
    assert classify(_manifest(capabilities=capabilities)) == ("capability", (kind,))


def test_an_http_section_alone_is_a_capability_plugin() -> None:
    assert classify(_manifest(http={"description": "a status page"})) == (
        "capability",
        ("http",),
    )


def test_several_declared_kinds_are_a_hybrid_sorted_by_name() -> None:
    both = _manifest(capabilities={"tools": ["geocode"], "providers": ["geocoder"]})
    rulebot = _manifest(
        capabilities={
            "channels": ["console"],
            "pipeline_stages": ["trim", "redact"],
            "providers": ["rulebot"],
        }
    )
    web = _manifest(capabilities={"tools": ["hello"]}, http={})

    assert classify(both) == ("hybrid", ("providers", "tools"))
    assert classify(rulebot) == ("hybrid", ("channels", "pipeline_stages", "providers"))
    assert classify(web) == ("hybrid", ("http", "tools"))


def test_every_kind_at_once() -> None:
    everything = _manifest(
        capabilities={
            "tools": ["t"],
            "channels": ["c"],
            "pipeline_stages": ["s"],
            "providers": ["p"],
        },
        http={},
    )

    assert classify(everything) == ("hybrid", KINDS)


def test_nothing_declared_and_nothing_known_is_none() -> None:
    assert classify(_manifest()) == ("none", ())
    assert classify(None) == ("none", ())


def test_event_handlers_without_capabilities_are_hook_only() -> None:
    handlers = Registrations(events=("on_message_received",))

    assert classify(_manifest(), handlers) == ("hook-only", ())
    assert classify(None, handlers) == ("hook-only", ())


def test_an_active_plugin_that_registered_nothing_is_none() -> None:
    assert classify(_manifest(), Registrations()) == ("none", ())


def test_events_never_count_as_a_kind() -> None:
    handlers = Registrations(tools=("hello",), events=("on_tool_called",))

    assert classify(_manifest(capabilities={"tools": ["hello"]}), handlers) == (
        "capability",
        ("tools",),
    )


def test_registered_kinds_join_the_declared_ones() -> None:
    declared = _manifest(capabilities={"tools": ["hello"]})

    assert classify(declared, Registrations(tools=("hello",))) == ("capability", ("tools",))
    assert classify(declared, Registrations(providers=("llm",))) == (
        "hybrid",
        ("providers", "tools"),
    )
    assert classify(None, Registrations(http=("/plugins/demo/",))) == ("capability", ("http",))
    assert classify(None, Registrations(channels=("c",), http=("/plugins/demo/",))) == (
        "hybrid",
        ("channels", "http"),
    )


# -- the command -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ./config.toml or $CLAWHOST_CONFIG from outside leaks into a test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CLAWHOST_CONFIG", raising=False)


def _add_rulebot(site: SiteDir) -> None:
    site.add_plugin(
        "rulebot",
        "0.3.0",
        module="shape_rulebot",
        plugin_toml=(RULEBOT / "plugin.toml").read_text("utf-8"),
        code=(RULEBOT / "__init__.py").read_text("utf-8"),
    )


@pytest.fixture
def plugins(site: SiteDir) -> SiteDir:
    """One plugin of each shape (as far as manifests tell): tools only, rulebot, tools and
    an HTTP app, an event hookimpl only, and nothing."""
    site.add_plugin(
        "hello",
        module="shape_hello",
        plugin_toml=manifest("hello", caps='[plugin.capabilities]\ntools = ["hello"]'),
        code=TOOLS_CODE,
    )
    _add_rulebot(site)
    site.add_plugin(
        "web",
        module="shape_web",
        plugin_toml=manifest(
            "web", caps='[plugin.capabilities]\ntools = ["hello"]', http="[plugin.http]"
        ),
    )
    site.add_plugin("listener", module="shape_listener", code=HOOK_CODE)
    site.add_plugin("empty", module="shape_empty", code=EMPTY_CODE)
    return site


def _rows(*args: str | Path) -> dict[str, dict[str, Any]]:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_list_json_gives_each_plugin_its_shape_and_kinds(plugins: SiteDir) -> None:
    rows = _rows("--path", plugins.root, "plugins", "list")

    assert {name: (row["shape"], row["kinds"]) for name, row in rows.items()} == {
        "empty": ("none", []),
        "hello": ("capability", ["tools"]),
        "listener": ("none", []),  # event hooks are not in the manifest
        "rulebot": ("hybrid", ["channels", "pipeline_stages", "providers"]),
        "web": ("hybrid", ["http", "tools"]),
    }


def test_list_shows_a_shape_column(plugins: SiteDir) -> None:
    result = invoke("--path", plugins.root, "plugins", "list")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header = next(line for line in lines if "Name" in line and "Capabilities" in line)
    assert "Shape" in header
    for name, shape in (
        ("hello", "capability"),
        ("rulebot", "hybrid"),
        ("web", "hybrid"),
        ("listener", "none"),
        ("empty", "none"),
    ):
        row = next(line for line in lines if line.startswith(f"│ {name} "))
        assert f"│ {shape} " in row


@pytest.mark.parametrize(
    ("name", "shape", "kinds", "line"),
    [
        ("hello", "capability", ["tools"], "Shape: capability (tools)"),
        (
            "rulebot",
            "hybrid",
            ["channels", "pipeline_stages", "providers"],
            "Shape: hybrid (channels, stages, providers)",
        ),
        ("web", "hybrid", ["http", "tools"], "Shape: hybrid (http, tools)"),
        ("listener", "none", [], "Shape: none (declares no capability;"),
        ("empty", "none", [], "Shape: none (declares no capability;"),
    ],
)
def test_inspect_shows_the_shape(
    plugins: SiteDir, name: str, shape: str, kinds: list[str], line: str
) -> None:
    shown = invoke("--path", plugins.root, "plugins", "inspect", name)
    data = invoke("--path", plugins.root, "plugins", "inspect", name, "--json")

    assert shown.exit_code == 0, shown.output
    assert line in shown.output
    assert data.exit_code == 0, data.output
    assert (json.loads(data.stdout)["shape"], json.loads(data.stdout)["kinds"]) == (shape, kinds)


def test_list_activate_tells_hook_only_from_none(site: SiteDir) -> None:
    site.add_plugin("listener", module="shape_active_listener", code=HOOK_CODE)
    site.add_plugin("subscriber", module="shape_active_subscriber", code=ON_CODE)
    site.add_plugin("empty", module="shape_active_empty", code=EMPTY_CODE)
    _add_rulebot(site)

    rows = _rows("--path", site.root, "plugins", "list", "--activate")

    assert {name: row["state"] for name, row in rows.items()} == dict.fromkeys(rows, "active")
    assert {name: (row["shape"], row["kinds"]) for name, row in rows.items()} == {
        "empty": ("none", []),
        "listener": ("hook-only", []),
        "rulebot": ("hybrid", ["channels", "pipeline_stages", "providers"]),
        "subscriber": ("hook-only", []),
    }
