"""The discovery cache: a warm start re-reads nothing, and every real change is noticed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from clawhost import DiscoveryCache, DiscoveryResult, discover_plugins, invalidate_discovery_cache

from ._site import SiteDir, age, manifest


def run(
    cache: DiscoveryCache | bool, site: SiteDir, dirs: tuple[Path, ...] = ()
) -> DiscoveryResult:
    return discover_plugins(path=[str(site)], dirs=dirs, cache=cache)


def keep_mtime(path: Path, write: str) -> None:
    """Rewrite a file but put its mtime (and its folder's) back, as if nothing changed."""
    stat, parent = path.stat(), path.parent.stat()
    path.write_text(write, "utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.utime(path.parent, ns=(parent.st_atime_ns, parent.st_mtime_ns))


def test_a_second_discovery_is_answered_from_the_cache(
    site: SiteDir, cache: DiscoveryCache
) -> None:
    site.add_plugin(
        "cached", plugin_toml=manifest("cached", caps='[plugin.capabilities]\ntools = ["t"]')
    )
    site.add("clawdesk-plugin-ghost", "1.0.0", entry_points={"ghost": "ghost_module"})
    age(site.root)

    cold = run(cache, site)
    warm = run(cache, site)

    assert not cold.from_cache
    assert warm.from_cache
    assert warm.names == cold.names == ["cached"]
    assert warm.plugins[0].manifest == cold.plugins[0].manifest
    assert warm.plugins[0].source == cold.plugins[0].source
    assert warm.diagnostics == cold.diagnostics


def test_a_warm_start_does_not_reread_installed_manifests(
    site: SiteDir, cache: DiscoveryCache
) -> None:
    site.add_plugin(
        "stable", plugin_toml=manifest("stable", caps='[plugin.capabilities]\ntools = ["t"]')
    )
    age(site.root)
    run(cache, site)

    # Garbage with the old stamps: only a re-read would notice it.
    keep_mtime(site.root / "plugin_stable" / "plugin.toml", "this is not TOML [[[\n")
    warm = run(cache, site)

    assert warm.from_cache
    assert warm.plugins[0].manifest.capabilities.tools == ("t",)


def test_installing_a_distribution_invalidates_the_cache(
    site: SiteDir, cache: DiscoveryCache
) -> None:
    site.add_plugin("first")
    age(site.root)
    run(cache, site)

    site.add_plugin("second")
    age(site.root, seconds=60)  # a later install, and not racy
    result = run(cache, site)

    assert not result.from_cache
    assert result.names == ["first", "second"]


def test_uninstalling_a_distribution_invalidates_the_cache(
    site: SiteDir, cache: DiscoveryCache
) -> None:
    site.add_plugin("keep")
    doomed = site.add_plugin("doomed")
    age(site.root)
    run(cache, site)

    shutil.rmtree(doomed)
    result = run(cache, site)

    assert result.names == ["keep"]


def test_editing_a_directory_plugin_manifest_in_place_invalidates_the_cache(
    tmp_path: Path, site: SiteDir, cache: DiscoveryCache
) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "dev").mkdir(parents=True)
    toml = plugins / "dev" / "plugin.toml"
    toml.write_text(manifest("dev", "1.0.0") + 'entry = "dev"\n', "utf-8")
    age(plugins)
    run(cache, site, (plugins,))

    # Written in place, same size: the folders' stamps do not change, only the file's.
    folders = {path: path.stat().st_mtime_ns for path in (plugins, plugins / "dev")}
    toml.write_text(manifest("dev", "1.0.1") + 'entry = "dev"\n', "utf-8")
    past = toml.stat().st_mtime - 30
    os.utime(toml, (past, past))
    assert {path: path.stat().st_mtime_ns for path in folders} == folders
    result = run(cache, site, (plugins,))

    assert not result.from_cache
    assert [str(p.version) for p in result.plugins] == ["1.0.1"]


def test_nothing_modified_within_the_racy_window_is_cached(
    site: SiteDir, cache: DiscoveryCache
) -> None:
    site.add_plugin("fresh")  # written just now: its stamp could hide a same-tick edit

    run(cache, site)

    assert not run(cache, site).from_cache
    assert not list(cache.directory.glob("discovery-*"))


def test_the_cache_key_includes_the_path(
    site: SiteDir, cache: DiscoveryCache, tmp_path: Path
) -> None:
    site.add_plugin("somewhere")
    age(site.root)
    run(cache, site)

    other = discover_plugins(path=[str(site), str(tmp_path / "elsewhere")], cache=cache)

    assert not other.from_cache


def test_invalidate_removes_the_cache(site: SiteDir, cache: DiscoveryCache) -> None:
    site.add_plugin("gone")
    age(site.root)
    run(cache, site)

    assert cache.invalidate() == 1
    assert not run(cache, site).from_cache


def test_the_default_cache_honours_its_directory_and_off_switch(
    site: SiteDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site.add_plugin("env")
    age(site.root)
    monkeypatch.setenv("CLAWHOST_CACHE_DIR", str(tmp_path / "by-env"))

    run(True, site)
    assert run(True, site).from_cache
    assert invalidate_discovery_cache() == 1

    monkeypatch.setenv("CLAWHOST_NO_CACHE", "1")
    run(True, site)
    assert not run(True, site).from_cache
    assert not list((tmp_path / "by-env").glob("discovery-*"))


def test_a_corrupt_cache_file_is_ignored(site: SiteDir, cache: DiscoveryCache) -> None:
    site.add_plugin("sturdy")
    age(site.root)
    run(cache, site)
    (cache_file,) = cache.directory.glob("discovery-*")
    cache_file.write_bytes(b"\x00garbage")

    result = run(cache, site)

    assert not result.from_cache
    assert result.names == ["sturdy"]


@pytest.mark.parametrize("padding", [0, 100_000], ids=["small file", "records left on disk"])
def test_warm_records_are_built_on_first_use_and_survive_a_rewritten_cache_file(
    site: SiteDir, cache: DiscoveryCache, padding: int
) -> None:
    site.add_plugin("early", plugin_toml=manifest("early") + "# padding\n" * (padding // 10))
    age(site.root)
    run(cache, site)
    warm = run(cache, site)
    assert warm.from_cache  # answered without building a record: they are built below

    # Another process rewrites the cache file before this one looks at its records.
    (cache_file,) = cache.directory.glob("discovery-*")
    site.add_plugin("late")
    age(site.root)
    assert not run(cache, site).from_cache
    assert next(cache.directory.glob("discovery-*")) == cache_file

    assert [plugin.name for plugin in warm.plugins] == ["early"]
    assert warm.plugins == tuple(warm.plugins)
    assert len(warm.plugins[0].manifest_path.read_text("utf-8")) > padding


def test_cached_records_that_do_not_decode_are_found_afresh(
    site: SiteDir, cache: DiscoveryCache
) -> None:
    site.add_plugin("sturdy")
    age(site.root)
    run(cache, site)
    (cache_file,) = cache.directory.glob("discovery-*")
    data = cache_file.read_bytes()
    cache_file.write_bytes(data[:-10])  # the header is intact, the records cut short

    result = run(cache, site)

    assert result.from_cache
    assert result.names == ["sturdy"]
    assert result.plugins[0].manifest.name == "sturdy"
    assert not cache_file.exists()  # dropped; the next discovery writes a good one
