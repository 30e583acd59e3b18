"""Discovery: find every plugin without importing any plugin code.

Two sources, in this order:

1. plugin directories: each sub-folder of a configured directory that holds a
   ``plugin.toml`` whose ``[plugin] entry`` names the code (importable with that folder on
   the path); one directory may hold several versions of one plugin;
2. installed distributions advertising the entry-point group (``clawdesk.plugins``); the
   manifest ships inside the plugin's package, next to the module the entry point names,
   and distribution metadata fills what the manifest leaves out.

Everything found is a ``DiscoveredPlugin``; everything wrong is a ``Diagnostic`` naming the
plugin, the source, the stage and the problem, and never stops the other plugins.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from clawhost.core.versions import InvalidRequirementText, parse_version
from clawhost.discovery.discovered import (
    CachedPlugins,
    Diagnostic,
    DiscoveredPlugin,
    DiscoveryResult,
    DistributionInfo,
    PluginSource,
    Severity,
    SourceKind,
    read_distribution_info,
)
from clawhost.discovery.entrypoints import (
    FoundEntryPoint,
    ScanStamps,
    read_descriptor,
    scan_entry_points,
)
from clawhost.discovery.manifest import (
    MANIFEST_FILENAME,
    MAX_MANIFEST_BYTES,
    Manifest,
    decode_manifest,
    parse_manifest,
)
from clawhost.errors import ManifestError, Problem

if TYPE_CHECKING:
    from packaging.version import Version

    from clawhost.discovery.cache import DiscoveryCache

__all__ = [
    "DEFAULT_GROUP",
    "Diagnostic",
    "DiscoveredPlugin",
    "DiscoveryResult",
    "DistributionInfo",
    "PluginSource",
    "SourceKind",
    "discover_plugins",
]

logger = logging.getLogger("clawhost.discover")

DEFAULT_GROUP = "clawdesk.plugins"
_DIRECTORY_REQUIRED = ("name", "version", "entry")


def discover_plugins(
    *,
    group: str = DEFAULT_GROUP,
    path: Sequence[str] | None = None,
    dirs: Iterable[Path | str] = (),
    cache: DiscoveryCache | bool = True,
) -> DiscoveryResult:
    """Find every plugin in ``dirs`` and among the distributions on ``path``.

    ``path`` defaults to ``sys.path``. ``cache`` is ``True`` for the default cache in the
    user's cache directory (unless ``CLAWHOST_NO_CACHE`` is set), ``False`` for none, or a
    ``DiscoveryCache``. No plugin code is imported or executed.
    """
    search_path = list(sys.path if path is None else path)
    plugin_dirs = [Path(directory).expanduser().absolute() for directory in dirs]
    store = _cache_from(cache)
    if store is not None:
        cached = store.load(group, search_path, plugin_dirs)
        if cached is not None:
            logger.debug("discovery answered from cache")  # its records are built on use
            if cached._source is not None:
                cached._source.rescan = functools.partial(
                    _rescan, store, group, search_path, plugin_dirs
                )
            return cached
    stamps = ScanStamps() if store is not None else None
    scanner = _Scanner(stamps)
    for directory in plugin_dirs:
        scanner.scan_directory(directory)
    for found in scan_entry_points(group, search_path, stamps):
        scanner.add_entry_point(found)
    result = DiscoveryResult(tuple(scanner.plugins), tuple(scanner.diagnostics))
    if store is not None and stamps is not None:
        token = os.urandom(8).hex()
        if store.save(group, search_path, plugin_dirs, result, stamps, token=token):
            plugins = CachedPlugins.of(result.plugins, token)
            result = DiscoveryResult(plugins, result.diagnostics)
    for diagnostic in result.diagnostics:
        log = logger.warning if diagnostic.severity == "error" else logger.info
        log("%s", diagnostic)
    return result


def _rescan(
    store: DiscoveryCache, group: str, path: list[str], dirs: list[Path]
) -> Sequence[DiscoveredPlugin]:
    """The plugins found afresh, when a cache file's records turn out not to decode."""
    logger.debug("discovery cache records did not decode; scanning afresh")
    store.file_for(group, path, dirs).unlink(missing_ok=True)
    return discover_plugins(group=group, path=path, dirs=dirs, cache=False).plugins


def _cache_from(cache: DiscoveryCache | bool) -> DiscoveryCache | None:
    if cache is False:
        return None
    if cache is True:
        from clawhost.discovery.cache import DiscoveryCache, cache_disabled_by_environment

        return None if cache_disabled_by_environment() else DiscoveryCache.default()
    return cache


def _read_manifest(path: str, stamps: ScanStamps | None) -> str:
    """Read one manifest, stamping it for the cache, with the size and encoding limits."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        raw = read_descriptor(descriptor, MAX_MANIFEST_BYTES + 1)
        if stamps is not None:
            status = os.fstat(descriptor)
            stamps.files[path] = (status.st_mtime_ns, status.st_size)
    finally:
        os.close(descriptor)
    return decode_manifest(raw, path)


class _Scanner:
    """Collects plugins and diagnostics; one instance per discovery run."""

    def __init__(self, stamps: ScanStamps | None) -> None:
        self.stamps = stamps
        self.plugins: list[DiscoveredPlugin] = []
        self.diagnostics: list[Diagnostic] = []
        self._seen: dict[tuple[str, Version], DiscoveredPlugin] = {}
        self._pth_dirs: dict[str, list[str]] = {}

    def _diagnose(
        self,
        plugin: str | None,
        source: str,
        message: str,
        *,
        severity: Severity = "error",
        file: Path | str | None = None,
        problems: Sequence[Problem] = (),
    ) -> None:
        self.diagnostics.append(
            Diagnostic(
                plugin=plugin,
                source=source,
                stage="discover",
                message=message,
                severity=severity,
                file=Path(file) if file is not None else None,
                problems=tuple(problems),
            )
        )

    def _accept(self, plugin: DiscoveredPlugin) -> None:
        key = (plugin.name, plugin.version)
        first = self._seen.get(key)
        if first is not None:
            self._diagnose(
                plugin.name,
                str(plugin.source),
                f"{plugin.name} {plugin.version} is also provided by {first.source}; "
                "this copy is ignored",
                file=plugin.manifest_path,
            )
            return
        self._seen[key] = plugin
        self.plugins.append(plugin)

    # -- plugin directories ------------------------------------------------------------

    def scan_directory(self, directory: Path) -> None:
        source = f"directory {directory}"
        if self.stamps is not None:
            self.stamps.stamp_directory(str(directory))
        try:
            children = sorted(os.scandir(directory), key=lambda item: item.name)
        except FileNotFoundError:
            self._diagnose(None, source, "plugin directory does not exist", severity="warning")
            return
        except NotADirectoryError:
            self._diagnose(None, source, "plugin directory is a file, not a directory")
            return
        except OSError as exc:
            self._diagnose(None, source, f"cannot read plugin directory: {exc.strerror}")
            return
        for child in children:
            if child.name.startswith((".", "_")) or not child.is_dir():
                continue
            folder = Path(child.path)
            manifest_path = folder / MANIFEST_FILENAME
            if self.stamps is not None:
                self.stamps.stamp_directory(child.path)
            if not manifest_path.is_file():
                self._diagnose(
                    None,
                    f"directory {folder}",
                    f"no {MANIFEST_FILENAME} in this sub-folder; it is not a plugin",
                    severity="warning",
                )
                continue
            self._add_directory_plugin(folder, manifest_path)

    def _add_directory_plugin(self, folder: Path, manifest_path: Path) -> None:
        source = f"directory {folder}"
        try:
            text = _read_manifest(str(manifest_path), self.stamps)
            manifest = parse_manifest(text, manifest_path, required=_DIRECTORY_REQUIRED)
        except ManifestError as exc:
            self._manifest_diagnostic(exc, source, folder.name)
            return
        except OSError as exc:
            self._diagnose(
                None, source, f"cannot read manifest: {exc.strerror}", file=manifest_path
            )
            return
        assert manifest.name is not None
        assert manifest.version is not None
        assert manifest.entry is not None
        plugin_source = PluginSource(
            kind=SourceKind.DIRECTORY,
            entry=manifest.entry,
            location=folder,
            import_root=folder,
        )
        self._accept(
            DiscoveredPlugin(
                name=manifest.name,
                version=parse_version(manifest.version),
                source=plugin_source,
                manifest_path=manifest_path,
                manifest=manifest,
                manifest_text=text,
            )
        )

    def _manifest_diagnostic(self, exc: ManifestError, source: str, fallback: str | None) -> None:
        count = len(exc.problems)
        self._diagnose(
            exc.plugin or fallback,
            source,
            f"invalid manifest ({count} problem{'s' if count != 1 else ''})",
            file=exc.file,
            problems=exc.problems,
        )

    # -- installed distributions -------------------------------------------------------

    def add_entry_point(self, found: FoundEntryPoint) -> None:
        source = f"distribution {found.distribution} ({found.metadata_dir})"
        described = f"entry point {found.name!r} = {found.value!r}"
        module, _, attribute = found.value.partition(":")
        if not _is_dotted_name(module) or (attribute and not _is_dotted_name(attribute)):
            self._diagnose(found.name, source, f"{described} is not 'module' or 'module:object'")
            return
        # A wheel puts the package beside its .dist-info; files there change only by
        # (re)installing, which changes the path entry's stamp, so they need none of their
        # own. Anything else (editable sources, egg-info trees) is stamped file by file.
        wheel_installed = found.metadata_dir.endswith(".dist-info")
        manifest_path = os.path.join(found.path_entry, *module.split("."), MANIFEST_FILENAME)
        import_root = found.path_entry
        try:
            try:
                text = _read_manifest(manifest_path, None if wheel_installed else self.stamps)
            except FileNotFoundError:
                located = self._locate_manifest(module, found.path_entry)
                if isinstance(located, str):
                    self._diagnose(found.name, source, f"{described}: {located}")
                    return
                manifest_path, import_root = located
                covered = wheel_installed and import_root == found.path_entry
                text = _read_manifest(manifest_path, None if covered else self.stamps)
            manifest = parse_manifest(text, manifest_path, required=())
        except ManifestError as exc:
            self._manifest_diagnostic(exc, source, found.name)
            return
        except OSError as exc:
            self._diagnose(
                found.name, source, f"cannot read manifest: {exc.strerror}", file=manifest_path
            )
            return
        name = manifest.name or found.name
        if manifest.name and manifest.name != found.name:
            self._diagnose(
                name,
                source,
                f"entry point is named {found.name!r} but the manifest names the plugin "
                f"{manifest.name!r}; the manifest wins",
                severity="warning",
                file=manifest_path,
            )
        if manifest.entry and manifest.entry != found.value:
            self._diagnose(
                name,
                source,
                f"manifest entry {manifest.entry!r} differs from the entry point "
                f"{found.value!r}; the entry point wins",
                severity="warning",
                file=manifest_path,
            )
        version = self._distribution_version(found, manifest, name, source, manifest_path)
        if version is None:
            return
        plugin_source = PluginSource(
            kind=SourceKind.DISTRIBUTION,
            entry=found.value,
            location=found.metadata_dir,
            import_root=import_root,
            distribution=found.distribution,
            entry_point_name=found.name,
        )
        self._accept(
            DiscoveredPlugin(
                name=name,
                version=version,
                source=plugin_source,
                manifest_path=manifest_path,
                manifest=manifest,
                manifest_text=text,
            )
        )

    def _distribution_version(
        self,
        found: FoundEntryPoint,
        manifest: Manifest,
        name: str,
        source: str,
        manifest_path: str,
    ) -> Version | None:
        text = found.distribution_version
        if text is None:
            text = read_distribution_info(Path(found.metadata_dir)).version
            if self.stamps is not None:
                self.stamps.stamp_file(os.path.join(found.metadata_dir, "METADATA"))
        try:
            dist_version = parse_version(text) if text else None
        except InvalidRequirementText:
            dist_version = None
        manifest_version = parse_version(manifest.version) if manifest.version else None
        if dist_version is None and manifest_version is None:
            self._diagnose(
                name, source, "no version: neither the manifest nor the distribution gives one"
            )
            return None
        if (
            dist_version is not None
            and manifest_version is not None
            and dist_version != manifest_version
        ):
            self._diagnose(
                name,
                source,
                f"version mismatch: the manifest says {manifest_version} but the installed "
                f"distribution {found.distribution} is {dist_version}; rebuild or reinstall it",
                file=manifest_path,
                problems=(
                    Problem(
                        "plugin.version",
                        f"{manifest_version} disagrees with the distribution",
                        str(dist_version),
                    ),
                ),
            )
            return None
        return dist_version or manifest_version

    def _locate_manifest(self, module: str, path_entry: str) -> tuple[str, str] | str:
        """Where the manifest of ``module`` is, without importing; or why it is not found.

        The manifest sits in the package directory: inside the package the entry names,
        or beside the module file it names. Wheels put that package in the same path
        entry as the metadata; editable installs reach it through ``.pth`` folders or an
        import finder, consulted only when the direct look-up fails.
        """
        parts = module.split(".")
        bases = [path_entry, *self._pth_folders(path_entry)]
        looked: list[str] = []
        module_seen = False
        for base in bases:
            found = _manifest_beside(base, parts, looked)
            if found == "no-module":
                continue
            module_seen = True
            if found is not None:
                return found, base
        spec_dir = _package_dir_from_finders(parts)
        if spec_dir is not None:
            module_seen = True
            candidate = os.path.join(spec_dir, MANIFEST_FILENAME)
            looked.append(candidate)
            if os.path.isfile(candidate):
                return candidate, spec_dir
        if not module_seen:
            return f"module {module!r} not found (looked in {', '.join(bases)})"
        if len(parts) == 1 and not any(os.path.isdir(os.path.join(b, parts[0])) for b in bases):
            return (
                f"module {module!r} is a single file; a plugin ships as a package with "
                f"its {MANIFEST_FILENAME} inside"
            )
        return f"no {MANIFEST_FILENAME} next to module {module!r} (looked at {', '.join(looked)})"

    def _pth_folders(self, path_entry: str) -> list[str]:
        cached = self._pth_dirs.get(path_entry)
        if cached is not None:
            return cached
        folders: list[str] = []
        try:
            names = [name for name in os.listdir(path_entry) if name.endswith(".pth")]
        except OSError:
            names = []
        for name in sorted(names):
            try:
                with open(os.path.join(path_entry, name), encoding="utf-8") as handle:
                    lines = handle.read().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for raw in lines:
                line = raw.strip()
                if not line or line.startswith(("#", "import ", "import\t")):
                    continue
                folder = os.path.join(path_entry, line)
                if os.path.isdir(folder):
                    folders.append(folder)
        self._pth_dirs[path_entry] = folders
        return folders


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _manifest_beside(base: str, parts: list[str], looked: list[str]) -> str | None:
    """The manifest for module ``parts`` under ``base``; ``"no-module"`` if it is not there."""
    as_package = os.path.join(base, *parts)
    if os.path.isdir(as_package):
        candidate = os.path.join(as_package, MANIFEST_FILENAME)
        looked.append(candidate)
        return candidate if os.path.isfile(candidate) else None
    parent = os.path.join(base, *parts[:-1])
    if not _module_file_exists(parent, parts[-1]):
        return "no-module"
    if len(parts) == 1:
        return None  # a top-level single-file module has no package to hold a manifest
    candidate = os.path.join(parent, MANIFEST_FILENAME)
    looked.append(candidate)
    return candidate if os.path.isfile(candidate) else None


def _module_file_exists(folder: str, name: str) -> bool:
    from importlib.machinery import all_suffixes

    return any(os.path.isfile(os.path.join(folder, name + suffix)) for suffix in all_suffixes())


def _package_dir_from_finders(parts: list[str]) -> str | None:
    """Ask installed import finders (editable installs) where a package lives.

    ``find_spec`` on a finder only locates; it executes nothing. Nested modules are then
    walked on disk from the top-level package's folder.
    """
    from importlib.machinery import PathFinder

    top_spec = None
    for finder in sys.meta_path:
        if finder is PathFinder or not hasattr(finder, "find_spec"):
            continue
        if getattr(finder, "__module__", "").startswith(("importlib", "_frozen_importlib")):
            continue
        try:
            top_spec = finder.find_spec(parts[0], None)
        except Exception:  # a broken third-party finder must not stop discovery
            logger.debug("finder %r failed for %s", finder, parts[0], exc_info=True)
            continue
        if top_spec is not None:
            break
    if top_spec is None or not top_spec.submodule_search_locations:
        return None
    folder = next(iter(top_spec.submodule_search_locations))
    for part in parts[1:]:
        if os.path.isdir(os.path.join(folder, part)):
            folder = os.path.join(folder, part)
        else:
            break
    return str(folder)
