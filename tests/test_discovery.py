"""Discovery finds every plugin, imports none, and turns every problem into a diagnostic."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.version import Version

from clawhost import Diagnostic, DiscoveryResult, SourceKind, discover_plugins

from ._site import SiteDir, manifest
from .conftest import EXAMPLES, make_venv, pip


def discover(
    *path: Path | SiteDir, dirs: tuple[Path, ...] = (), group: str = "clawdesk.plugins"
) -> DiscoveryResult:
    return discover_plugins(path=[str(p) for p in path], dirs=dirs, group=group, cache=False)


def only_diagnostic(result: DiscoveryResult) -> Diagnostic:
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert len(errors) == 1, result.diagnostics
    return errors[0]


# -- installed distributions -------------------------------------------------------------


def test_discovers_the_example_wheels_installed_by_pip(installed_examples: Path) -> None:
    result = discover(installed_examples)

    assert result.names == ["geocoding", "rulebot", "weather"]
    assert result.diagnostics == ()
    weather = result.versions()["weather"][0]
    assert weather.version == Version("1.2.0")
    assert weather.source.kind is SourceKind.DISTRIBUTION
    assert weather.source.distribution == "clawdesk-plugin-weather"
    assert weather.source.entry == "clawdesk_plugin_weather:WeatherPlugin"
    assert weather.manifest.capabilities.tools == ("get_weather", "get_forecast")
    assert weather.manifest.requirements == {"geocoding": "^1.5.0"}
    assert weather.manifest_path == installed_examples / "clawdesk_plugin_weather" / "plugin.toml"


def test_discovery_does_not_import_plugin_code(installed_examples: Path) -> None:
    script = (
        "import sys, clawhost\n"
        f"result = clawhost.discover_plugins(path=[{str(installed_examples)!r}], cache=False)\n"
        "print(len(result.plugins), sorted(m for m in sys.modules if m.startswith('clawdesk')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True)

    assert out.stdout.strip() == "3 []"


def test_a_plugin_whose_module_raises_at_import_is_still_discovered(
    site: SiteDir, tmp_path: Path
) -> None:
    marker = tmp_path / "executed"
    site.add_plugin(
        "explosive",
        code=f"open({str(marker)!r}, 'w').close()\nraise RuntimeError('boom at import')\n",
        plugin_toml=manifest(
            "explosive", "1.0.0", caps='[plugin.capabilities]\ntools = ["kaboom"]'
        ),
    )

    result = discover(site)

    (plugin,) = result.plugins
    assert plugin.name == "explosive"
    assert plugin.manifest.capabilities.tools == ("kaboom",)
    assert not marker.exists(), "discovery executed plugin code"
    assert "plugin_explosive" not in sys.modules


def test_distribution_metadata_fills_what_the_manifest_leaves_out(site: SiteDir) -> None:
    site.add(
        "clawdesk-plugin-terse",
        "2.0.1",
        entry_points={"terse": "terse_plugin"},
        files={"terse_plugin/__init__.py": "", "terse_plugin/plugin.toml": "[plugin]\n"},
        metadata=[
            "Summary: A plugin that says little",
            "Author-email: Ann <ann@example.com>",
            "License-Expression: Apache-2.0",
            "Project-URL: Homepage, https://example.com/terse",
        ],
    )

    (plugin,) = discover(site).plugins

    assert plugin.name == "terse"  # from the entry point name
    assert plugin.version == Version("2.0.1")  # from the distribution
    assert plugin.description == "A plugin that says little"
    assert plugin.author == "Ann <ann@example.com>"
    assert plugin.license == "Apache-2.0"
    assert plugin.homepage == "https://example.com/terse"


def test_the_manifest_wins_over_metadata_where_it_speaks(installed_examples: Path) -> None:
    weather = discover(installed_examples).versions()["weather"][0]

    assert weather.description == "Weather information tool for ClawDesk"
    assert weather.author == "Jane Doe <jane@example.com>"


def test_the_entry_point_group_is_a_parameter(site: SiteDir) -> None:
    site.add(
        "other-plugin",
        "1.0.0",
        group="acme.plugins",
        entry_points={"other": "other_plugin"},
        files={"other_plugin/__init__.py": "", "other_plugin/plugin.toml": manifest("other")},
    )

    assert discover(site).plugins == ()
    assert discover(site, group="acme.plugins").names == ["other"]


def test_a_module_entry_point_finds_the_manifest_beside_the_module_file(site: SiteDir) -> None:
    site.add(
        "clawdesk-plugin-nested",
        "1.0.0",
        entry_points={"nested": "nested_pkg.impl:Plugin"},
        files={
            "nested_pkg/__init__.py": "",
            "nested_pkg/impl.py": "class Plugin: ...\n",
            "nested_pkg/plugin.toml": manifest("nested"),
        },
    )

    (plugin,) = discover(site).plugins

    assert plugin.manifest_path == site.root / "nested_pkg" / "plugin.toml"
    assert plugin.source.module == "nested_pkg.impl"


def test_one_distribution_may_offer_several_plugins(site: SiteDir) -> None:
    site.add(
        "clawdesk-plugin-bundle",
        "1.0.0",
        entry_points={"alpha": "bundle.alpha", "beta": "bundle.beta"},
        files={
            "bundle/__init__.py": "",
            "bundle/alpha/__init__.py": "",
            "bundle/alpha/plugin.toml": manifest("alpha"),
            "bundle/beta/__init__.py": "",
            "bundle/beta/plugin.toml": manifest("beta"),
        },
    )

    assert discover(site).names == ["alpha", "beta"]


def test_the_first_distribution_of_a_name_on_the_path_wins(tmp_path: Path) -> None:
    first, second = SiteDir(tmp_path / "first"), SiteDir(tmp_path / "second")
    first.add_plugin("shadowed", "2.0.0")
    second.add_plugin("shadowed", "1.0.0")

    result = discover(first, second)

    assert [str(p.version) for p in result.plugins] == ["2.0.0"]


@pytest.mark.slow
def test_an_editable_install_is_discovered_from_its_source_tree(tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv")
    project = EXAMPLES / "clawdesk-plugin-geocoding"
    pip("install", "--no-deps", "--no-build-isolation", "-e", project, python=python)

    script = textwrap.dedent(
        """
        import json, sys, clawhost
        result = clawhost.discover_plugins(cache=False)
        [plugin] = [p for p in result.plugins if p.name == "geocoding"]
        print(json.dumps({"manifest": str(plugin.manifest_path),
                          "imported": "clawdesk_plugin_geocoding" in sys.modules}))
        """
    )
    out = subprocess.run([python, "-c", script], check=True, capture_output=True, text=True)

    import json

    found = json.loads(out.stdout)
    assert found == {
        "manifest": str(project / "src" / "clawdesk_plugin_geocoding" / "plugin.toml"),
        "imported": False,
    }


# -- plugin directories ------------------------------------------------------------------


def write_directory_plugin(root: Path, folder: str, toml: str, code: str = "") -> Path:
    plugin = root / folder
    plugin.mkdir(parents=True)
    (plugin / "plugin.toml").write_text(toml, "utf-8")
    (plugin / "weather_dev.py").write_text(code, "utf-8")
    return plugin


def dir_manifest(version: str, name: str = "weather") -> str:
    return manifest(name, version) + 'entry = "weather_dev:plugin"\n'


def test_a_plugin_directory_may_hold_several_versions_of_one_plugin(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_directory_plugin(plugins, "weather-1.2.0", dir_manifest("1.2.0"))
    write_directory_plugin(plugins, "weather-1.3.0", dir_manifest("1.3.0"))

    result = discover(dirs=(plugins,))

    versions = [str(p.version) for p in result.versions()["weather"]]
    assert versions == ["1.3.0", "1.2.0"]
    newest = result.versions()["weather"][0]
    assert newest.source.kind is SourceKind.DIRECTORY
    assert newest.source.import_root == plugins / "weather-1.3.0"
    assert newest.source.entry == "weather_dev:plugin"


def test_a_directory_plugin_must_name_itself_its_version_and_its_entry(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    write_directory_plugin(plugins, "anonymous", "[plugin]\ndescription = 'who am I'\n")

    diagnostic = only_diagnostic(discover(dirs=(plugins,)))

    assert {p.field for p in diagnostic.problems} == {
        "plugin.name",
        "plugin.version",
        "plugin.entry",
    }
    assert diagnostic.file == plugins / "anonymous" / "plugin.toml"
    assert diagnostic.stage == "discover"


def test_a_missing_plugin_directory_is_a_warning_not_a_failure(
    tmp_path: Path, site: SiteDir
) -> None:
    site.add_plugin("fine")

    result = discover(site, dirs=(tmp_path / "nowhere",))

    assert result.names == ["fine"]
    (warning,) = result.diagnostics
    assert warning.severity == "warning"
    assert "does not exist" in warning.message


def test_a_sub_folder_without_a_manifest_is_reported_and_skipped(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "notes").mkdir(parents=True)
    (plugins / ".hidden").mkdir()
    write_directory_plugin(plugins, "weather", dir_manifest("1.0.0"))

    result = discover(dirs=(plugins,))

    assert result.names == ["weather"]
    assert [d.source for d in result.diagnostics] == [f"directory {plugins / 'notes'}"]


# -- bad input: every problem becomes a diagnostic, the rest go on -------------------------


def test_malformed_toml_names_the_file_and_the_line(site: SiteDir) -> None:
    site.add_plugin("broken", plugin_toml='[plugin]\nname = "broken"\nversion = 1.0.0\n')
    site.add_plugin("fine")

    result = discover(site)

    assert result.names == ["fine"]
    diagnostic = only_diagnostic(result)
    assert diagnostic.plugin == "broken"
    assert diagnostic.file == site.root / "plugin_broken" / "plugin.toml"
    (problem,) = diagnostic.problems
    assert problem.line == 3
    assert "TOML syntax error" in problem.message


def test_every_problem_of_a_manifest_is_reported_together(site: SiteDir) -> None:
    toml = textwrap.dedent(
        """
        [plugin]
        name = "many"
        version = "one"
        descripton = "typo"
        min_clawdesk_version = 5

        [plugin.capabilities]
        tools = ["get weather"]

        [plugin.permissions]
        subprocess = "yes"
        """
    )
    site.add_plugin("many", plugin_toml=toml)

    diagnostic = only_diagnostic(discover(site))

    fields = [p.field for p in diagnostic.problems]
    assert sorted(fields) == sorted(
        [
            "plugin.version",
            "plugin.descripton",
            "plugin.min_clawdesk_version",
            "plugin.capabilities.tools[0]",
            "plugin.permissions.subprocess",
        ]
    )
    unknown = next(p for p in diagnostic.problems if p.field == "plugin.descripton")
    assert unknown.message == "unknown key"
    assert unknown.expected is not None
    assert "description" in unknown.expected


def test_an_entry_point_naming_a_missing_module_is_a_diagnostic(site: SiteDir) -> None:
    site.add("clawdesk-plugin-ghost", "1.0.0", entry_points={"ghost": "ghost_module:Plugin"})

    diagnostic = only_diagnostic(discover(site))

    assert diagnostic.plugin == "ghost"
    assert "module 'ghost_module' not found" in diagnostic.message
    assert "clawdesk-plugin-ghost" in diagnostic.source


def test_a_package_without_a_manifest_is_a_diagnostic(site: SiteDir) -> None:
    site.add(
        "clawdesk-plugin-bare",
        "1.0.0",
        entry_points={"bare": "bare_pkg"},
        files={"bare_pkg/__init__.py": ""},
    )

    diagnostic = only_diagnostic(discover(site))

    assert "no plugin.toml next to module 'bare_pkg'" in diagnostic.message


def test_a_single_file_module_cannot_carry_a_manifest(site: SiteDir) -> None:
    site.add(
        "clawdesk-plugin-single",
        "1.0.0",
        entry_points={"single": "single_file"},
        files={"single_file.py": ""},
    )

    diagnostic = only_diagnostic(discover(site))

    assert "single file" in diagnostic.message


def test_an_entry_point_value_that_is_not_a_module_path_is_a_diagnostic(site: SiteDir) -> None:
    site.add("clawdesk-plugin-odd", "1.0.0", entry_points={"odd": "not a module!"})

    diagnostic = only_diagnostic(discover(site))

    assert "is not 'module' or 'module:object'" in diagnostic.message


def test_a_manifest_version_that_disagrees_with_the_distribution_is_refused(site: SiteDir) -> None:
    site.add_plugin("drift", "1.2.0", plugin_toml=manifest("drift", "1.3.0"))

    diagnostic = only_diagnostic(discover(site))

    assert "the manifest says 1.3.0" in diagnostic.message
    assert "is 1.2.0" in diagnostic.message
    assert diagnostic.problems[0].field == "plugin.version"


def test_equal_versions_in_other_spellings_agree(site: SiteDir) -> None:
    site.add_plugin("spelled", "1.2", plugin_toml=manifest("spelled", "1.2.0"))

    (plugin,) = discover(site).plugins

    assert plugin.version == Version("1.2.0")


def test_two_plugins_with_one_name_and_version_keep_the_first(
    site: SiteDir, tmp_path: Path
) -> None:
    site.add_plugin("twin", "1.0.0", distribution="clawdesk-plugin-twin")
    site.add_plugin("twin", "1.0.0", module="twin_fork", distribution="acme-twin-fork")
    plugins = tmp_path / "plugins"
    write_directory_plugin(plugins, "twin", manifest("twin", "1.0.0") + 'entry = "weather_dev"\n')

    result = discover(site, dirs=(plugins,))

    (kept,) = result.plugins
    assert kept.source.kind is SourceKind.DIRECTORY  # directories come first
    duplicates = [d for d in result.diagnostics if "also provided by" in d.message]
    assert len(duplicates) == 2
    assert all(d.plugin == "twin" for d in duplicates)


def test_an_entry_point_name_that_differs_from_the_manifest_is_a_warning(site: SiteDir) -> None:
    site.add(
        "clawdesk-plugin-alias",
        "1.0.0",
        entry_points={"alias": "alias_pkg"},
        files={"alias_pkg/__init__.py": "", "alias_pkg/plugin.toml": manifest("real-name")},
    )

    result = discover(site)

    assert result.names == ["real-name"]
    (warning,) = result.diagnostics
    assert warning.severity == "warning"


def test_a_huge_manifest_is_refused_without_parsing_it(site: SiteDir) -> None:
    site.add_plugin("huge", plugin_toml=manifest("huge") + "# " + "x" * (300 * 1024) + "\n")

    diagnostic = only_diagnostic(discover(site))

    assert "larger than 256 KiB" in diagnostic.problems[0].message


def test_a_deeply_nested_manifest_is_refused_cleanly(site: SiteDir) -> None:
    depth = 5000
    nested = (
        manifest("deep")
        + "[plugin.config.x]\ntype = 'array'\ndefault = "
        + "[" * depth
        + "]" * depth
        + "\n"
    )
    site.add_plugin("deep", plugin_toml=nested)
    site.add_plugin("fine")

    result = discover(site)

    assert result.names == ["fine"]
    assert only_diagnostic(result).plugin == "deep"


def test_a_manifest_that_is_not_utf8_is_refused(site: SiteDir) -> None:
    site.add_plugin("latin", plugin_toml='[plugin]\nname = "caf\xe9"\n'.encode("latin-1"))

    diagnostic = only_diagnostic(discover(site))

    assert "not UTF-8" in diagnostic.problems[0].message


def test_one_broken_plugin_never_stops_the_others(site: SiteDir, installed_examples: Path) -> None:
    site.add_plugin("broken-toml", plugin_toml="[plugin\n")
    site.add_plugin("bad-fields", plugin_toml="[plugin]\nname = 42\n")
    site.add("clawdesk-plugin-ghost", "1.0.0", entry_points={"ghost": "ghost_module"})
    site.add_plugin("drift", "1.0.0", plugin_toml=manifest("drift", "9.9.9"))

    result = discover(site, installed_examples)

    assert result.names == ["geocoding", "rulebot", "weather"]
    assert len([d for d in result.diagnostics if d.severity == "error"]) == 4


def test_diagnostics_render_every_problem_for_people(site: SiteDir) -> None:
    site.add_plugin("shown", plugin_toml='[plugin]\nname = "shown"\nversion = "x"\nbogus = 1\n')

    text = str(only_diagnostic(discover(site)))

    assert text.startswith("[error] plugin 'shown' (distribution clawdesk-plugin-shown")
    assert "plugin.version" in text
    assert "plugin.bogus: unknown key" in text


def test_discovery_is_fine_with_an_unreadable_path_entry(tmp_path: Path, site: SiteDir) -> None:
    site.add_plugin("fine")
    archive = tmp_path / "not-really.zip"
    archive.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive

    result = discover(tmp_path / "missing", archive, site)

    assert result.names == ["fine"]


def test_importing_clawhost_imports_nothing_heavy_and_builds_no_cache(tmp_path: Path) -> None:
    script = (
        "import sys, clawhost\n"
        "heavy = ['pydantic', 'anyio', 'watchdog', 'opentelemetry', 'click', 'rich', 'pluggy']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    env = {**os.environ, "CLAWHOST_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, env=env
    )

    assert out.stdout.strip() == "[]"
    assert not (tmp_path / "cache").exists()
