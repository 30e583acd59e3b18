"""``clawhost doctor``: every problem of a deliberately broken setup, each with a remedy."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from clawhost import discover_plugins

from ._cli import invoke
from ._site import SiteDir, age, directory_plugin, manifest

OK_CODE = "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    pass\n"


def _broken_site(root: Path) -> SiteDir:
    site = SiteDir(root)
    site.add_plugin("fine", code=OK_CODE)
    site.add_plugin(
        "needs-ghost",
        plugin_toml=manifest("needs-ghost", deps='[plugin.dependencies]\nghost-dep = "^1"'),
    )
    site.add_plugin("too-new", plugin_toml=manifest("too-new") + 'min_clawdesk_version = "99.0"\n')
    site.add_plugin(
        "greedy",
        plugin_toml=manifest(
            "greedy", perms='[plugin.permissions]\nnetwork = ["evil.example:443"]'
        ),
    )
    site.add_plugin(
        "configless",
        plugin_toml=manifest(
            "configless", cfg='[plugin.config.token]\ntype = "string"\nrequired = true'
        ),
    )
    site.add_plugin("exits", code="import os\nos._exit(1)\n")
    site.add_plugin(
        "raises",
        code="from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n"
        "    raise RuntimeError('boom')\n",
    )
    site.add_plugin("base", code=OK_CODE)
    site.add_plugin(
        "needs-base",
        code=OK_CODE,
        plugin_toml=manifest("needs-base", deps='[plugin.dependencies]\nbase = ">=1"'),
    )
    site.add_plugin("bad-manifest", plugin_toml='[plugin]\nname = "bad-manifest"\ntools = 3\n')
    site.add("clawdesk-plugin-lost", "1.0.0", entry_points={"lost": "no_such_module"})
    return site


CONFIG = """\
[plugins]
hot_reload = true
dirs = ["./missing-plugins"]

[plugins.sandbox]
max_memory_mb = 512

[plugins.base]
enabled = false

[plugins.ghost]
enabled = true
"""


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One doctor run over the broken setup, as JSON, shared by the tests below."""
    root = tmp_path_factory.mktemp("doctor")
    site = _broken_site(root / "site")
    config = root / "config.toml"
    config.write_text(CONFIG, "utf-8")
    result = invoke(
        "--config",
        config,
        "--path",
        site.root,
        "doctor",
        "--json",
        env={"CLAWHOST_CACHE_DIR": str(root / "cache")},
    )
    return {"exit_code": result.exit_code, "output": result.output, **json.loads(result.stdout)}


def _findings(broken: dict[str, Any], problem: str) -> list[dict[str, Any]]:
    return [finding for finding in broken["findings"] if finding["problem"] == problem]


def test_doctor_exits_1_with_errors_and_no_traceback(broken: dict[str, Any]) -> None:
    assert broken["exit_code"] == 1
    assert broken["ok"] is False
    assert "Traceback" not in broken["output"]


@pytest.mark.parametrize(
    ("problem", "plugin", "text"),
    [
        ("Dependency not found", "needs-ghost", "requires ghost-dep ^1, which is not installed"),
        ("Incompatible version", "too-new", "needs clawdesk >= 99.0"),
        ("Permission denied", "greedy", "network evil.example:443"),
        ("Invalid plugin configuration", "configless", "token: required"),
        ("Plugin crashes on activate", "exits", "the interpreter exited with status 1"),
        ("Plugin crashes on activate", "raises", "RuntimeError: boom"),
        ("Disabled dependency", "base", "base is disabled, but needs-base require(s) it"),
        ("Disabled dependency", "needs-base", "which is disabled"),
        ("Invalid manifest", "bad-manifest", "plugin.tools"),
        ("Plugin not found", "lost", "module 'no_such_module' not found"),
        ("Plugin not found", "ghost", "[plugins.ghost] configures a plugin that is not installed"),
        ("Hot reload not working", None, "missing-plugins does not exist"),
        ("Sandbox", None, "max_memory_mb = 512 is not enforced"),
    ],
)
def test_doctor_finds_each_problem_with_a_remedy(
    broken: dict[str, Any], problem: str, plugin: str | None, text: str
) -> None:
    found = [
        finding
        for finding in _findings(broken, problem)
        if finding["plugin"] == plugin and text in finding["message"]
    ]

    assert found, [
        f for f in broken["findings"] if f["plugin"] == plugin or f["problem"] == problem
    ]
    assert found[0]["remedy"]


def test_doctor_says_nothing_bad_about_the_healthy_plugin(broken: dict[str, Any]) -> None:
    assert [f for f in broken["findings"] if f["plugin"] == "fine"] == []


def test_doctor_passes_a_healthy_setup(tmp_path: Path) -> None:
    site = SiteDir(tmp_path / "site")
    site.add_plugin("fine", code=OK_CODE)

    result = invoke("--path", site.root, "doctor")

    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output
    assert "All good" in result.output


def test_doctor_prints_remedies_for_people(tmp_path: Path) -> None:
    site = SiteDir(tmp_path / "site")
    site.add_plugin(
        "needs-ghost",
        plugin_toml=manifest("needs-ghost", deps='[plugin.dependencies]\nghost-dep = "^1"'),
    )

    result = invoke("--path", site.root, "doctor", "--no-activate")

    assert result.exit_code == 1
    assert "[error] Dependency not found (needs-ghost)" in result.output
    assert "-> clawhost plugins install ghost-dep" in result.output


def test_doctor_finds_a_stale_discovery_cache_and_fix_deletes_it(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    folder = directory_plugin(plugins, "cached", OK_CODE, module="cached_plugin")
    config = tmp_path / "config.toml"
    config.write_text(f'[plugins]\ndirs = ["{plugins}"]\n', "utf-8")
    empty = tmp_path / "site"
    empty.mkdir()
    age(tmp_path)
    discover_plugins(path=[str(empty)], dirs=[plugins], cache=True)  # saves the cache
    manifest_path = folder / "plugin.toml"
    stamp = manifest_path.stat()
    text = manifest_path.read_text()
    manifest_path.write_text(text.replace('version = "1.0.0"', 'version = "1.0.1"'))
    os.utime(manifest_path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # same size, same time

    stale = invoke("--config", config, "--path", empty, "doctor", "--no-activate", "--json")
    fixed = invoke(
        "--config", config, "--path", empty, "doctor", "--no-activate", "--fix", "--json"
    )
    after = invoke("--config", config, "--path", empty, "doctor", "--no-activate", "--json")

    problems = [f["problem"] for f in json.loads(stale.stdout)["findings"]]
    assert "Stale discovery cache" in problems
    assert stale.exit_code == 0  # a warning, not an error
    fix_notes = [
        f for f in json.loads(fixed.stdout)["findings"] if f["problem"] == "Stale discovery cache"
    ]
    assert fix_notes[0]["severity"] == "info"
    assert "Stale discovery cache" not in [
        f["problem"] for f in json.loads(after.stdout)["findings"]
    ]


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        (None, ("info", "Installer", f"plugins are installed with pip ({sys.executable} -m pip)")),
        (
            "conda",
            (
                "warning",
                "No installer",
                "plugins install, update and uninstall cannot work: "
                "unknown installer 'conda': one of pip, uv",
            ),
        ),
    ],
)
def test_doctor_names_the_installer_or_why_there_is_none(
    tmp_path: Path, asked: str | None, expected: tuple[str, str, str]
) -> None:
    site = SiteDir(tmp_path / "site")
    env = {"CLAWHOST_INSTALLER": asked} if asked else {}

    result = invoke("--path", site.root, "doctor", "--json", "--no-activate", env=env)

    findings = json.loads(result.stdout)["findings"]
    said = [
        (f["severity"], f["problem"], f["message"])
        for f in findings
        if f["problem"] in ("Installer", "No installer")
    ]
    assert said == [expected]
