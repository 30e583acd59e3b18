"""What discovery finds: each plugin version as a ``DiscoveredPlugin``, where it came from
(``PluginSource``), what its distribution says (``DistributionInfo``), every problem met
(``Diagnostic``), and the whole result (``DiscoveryResult``). ``_discover`` fills them in.
"""

from __future__ import annotations

import enum
import marshal
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import FrozenInstanceError, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from clawhost.core.versions import parse_version
from clawhost.discovery.manifest import Manifest, parse_manifest
from clawhost.errors import Problem

if TYPE_CHECKING:
    from packaging.version import Version

__all__ = [
    "CachedPlugins",
    "Diagnostic",
    "DiscoveredPlugin",
    "DiscoveryResult",
    "DistributionInfo",
    "PluginSource",
    "Severity",
    "SourceKind",
    "read_distribution_info",
]


class SourceKind(enum.StrEnum):
    """Where a plugin was found."""

    DISTRIBUTION = "distribution"  #: an installed distribution's entry point
    DIRECTORY = "directory"  #: a sub-folder of a configured plugin directory
    MEMORY = "memory"  #: an object handed to the host in code (tests: PluginHost.test_instance)
    PROJECT = "project"  #: a plugin project's source tree (PluginHost.add_project)


_KINDS = {kind.value: kind for kind in SourceKind}

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem found with one plugin (or one source), which never stops the others.

    ``stage`` is the lifecycle stage that found it (``discover``, ``load``, ``resolve``,
    ``activate``, ...). ``problems`` holds the field-level findings of an invalid file.
    """

    plugin: str | None
    source: str
    stage: str
    message: str
    severity: Severity = "error"
    file: Path | None = None
    problems: tuple[Problem, ...] = ()

    def __str__(self) -> str:
        who = f"plugin {self.plugin!r}" if self.plugin else "plugin"
        lines = [f"[{self.severity}] {who} ({self.source}), {self.stage}: {self.message}"]
        if self.file is not None and str(self.file) not in self.message:
            lines.append(f"    in {self.file}")
        lines.extend(f"    - {problem}" for problem in self.problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, used by the cache and the CLI's ``--json``."""
        return {
            "plugin": self.plugin,
            "source": self.source,
            "stage": self.stage,
            "message": self.message,
            "severity": self.severity,
            "file": str(self.file) if self.file else None,
            "problems": [
                {"field": p.field, "message": p.message, "expected": p.expected, "line": p.line}
                for p in self.problems
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnostic:
        return cls(
            plugin=data["plugin"],
            source=data["source"],
            stage=data["stage"],
            message=data["message"],
            severity=data["severity"],
            file=Path(data["file"]) if data["file"] else None,
            problems=tuple(Problem(**problem) for problem in data["problems"]),
        )


class PluginSource:
    """How a plugin was found and how its code is imported.

    ``entry`` is ``module`` or ``module:object``. ``import_root`` is the folder the module
    is imported from: a directory plugin's folder is importable while the plugin is
    loaded (``clawhost.core.importpath``, never through ``sys.path``); for a distribution it
    is its site (held the same way when the host was given a path of its own).
    ``location`` is the ``.dist-info`` directory, or the plugin's folder.
    """

    # Paths are kept as strings and turned into Path objects on access: discovery builds
    # thousands of these and pathlib construction would dominate its cost.
    __slots__ = (
        "_import_root",
        "_location",
        "distribution",
        "entry",
        "entry_point_name",
        "kind",
        "target",
    )

    def __init__(
        self,
        kind: SourceKind,
        entry: str,
        location: Path | str,
        import_root: Path | str,
        *,
        distribution: str | None = None,
        entry_point_name: str | None = None,
        target: object | None = None,
    ) -> None:
        self.kind = kind
        self.target = target  # the plugin object itself, for MEMORY sources
        self.entry = entry
        self._location = os.fspath(location)
        self._import_root = os.fspath(import_root)
        self.distribution = distribution
        self.entry_point_name = entry_point_name

    @property
    def location(self) -> Path:
        return Path(self._location)

    @property
    def import_root(self) -> Path:
        return Path(self._import_root)

    @property
    def import_folder(self) -> str:
        """``import_root`` as a string (what the loader needs, without building a Path)."""
        return self._import_root

    def __str__(self) -> str:
        if self.kind is SourceKind.DISTRIBUTION:
            return f"distribution {self.distribution} ({self._location})"
        if self.kind is SourceKind.MEMORY:
            return f"in-memory object {self.entry}"
        if self.kind is SourceKind.PROJECT:
            return f"project {self._location}"
        return f"directory {self._location}"

    def __repr__(self) -> str:
        return f"<PluginSource {self}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PluginSource):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.kind, self.entry, self._location))

    @property
    def module(self) -> str:
        """The module the entry names."""
        return self.entry.partition(":")[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "entry": self.entry,
            "location": self._location,
            "import_root": self._import_root,
            "distribution": self.distribution,
            "entry_point_name": self.entry_point_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PluginSource:
        return cls(
            kind=SourceKind(data["kind"]),
            entry=data["entry"],
            location=data["location"],
            import_root=data["import_root"],
            distribution=data["distribution"],
            entry_point_name=data["entry_point_name"],
        )


@dataclass(frozen=True, slots=True)
class DistributionInfo:
    """The fields of a distribution's core metadata that can fill a manifest's gaps."""

    name: str
    version: str | None
    summary: str | None
    author: str | None
    license: str | None
    homepage: str | None
    urls: Mapping[str, str] = field(default_factory=dict)
    editable_root: Path | None = None


def read_distribution_info(metadata_dir: Path) -> DistributionInfo:
    """Read METADATA (or PKG-INFO) headers and ``direct_url.json`` of one distribution."""
    import email.parser
    import json

    headers: Any = {}
    for filename in ("METADATA", "PKG-INFO"):
        try:
            with open(metadata_dir / filename, "rb") as handle:
                headers = email.parser.BytesHeaderParser().parse(handle)
            break
        except OSError:
            continue
    urls: dict[str, str] = {}
    for value in headers.get_all("Project-URL", []) if headers else []:
        label, _, url = str(value).partition(",")
        urls[label.strip()] = url.strip()
    homepage = headers.get("Home-page") if headers else None
    if not homepage:
        for label, url in urls.items():
            if label.lower().replace("-", "").replace(" ", "") in {"homepage", "home", "source"}:
                homepage = url
                break
    author = (headers.get("Author") or headers.get("Author-email")) if headers else None
    license_text = (
        (headers.get("License-Expression") or headers.get("License")) if headers else None
    )
    editable_root: Path | None = None
    try:
        direct = json.loads((metadata_dir / "direct_url.json").read_text("utf-8"))
        if direct.get("dir_info", {}).get("editable") and direct.get("url", "").startswith("file:"):
            from urllib.parse import unquote, urlparse

            editable_root = Path(unquote(urlparse(direct["url"]).path))
    except (OSError, ValueError, AttributeError):
        pass
    return DistributionInfo(
        name=str(headers.get("Name") or metadata_dir.name.split("-")[0]) if headers else "",
        version=str(headers.get("Version")) if headers and headers.get("Version") else None,
        summary=str(headers.get("Summary")) if headers and headers.get("Summary") else None,
        author=str(author) if author else None,
        license=str(license_text).splitlines()[0] if license_text else None,
        homepage=str(homepage) if homepage else None,
        urls=urls,
        editable_root=editable_root,
    )


class DiscoveredPlugin:
    """One version of one plugin, as found on disk: its manifest and where it came from.

    Nothing here has imported the plugin. Descriptive fields fall back to the
    distribution's metadata where the manifest leaves them out.
    """

    __slots__ = (
        "_distribution",
        "_known",
        "_manifest",
        "_manifest_path",
        "_manifest_text",
        "_version",
        "name",
        "source",
    )

    def __init__(
        self,
        name: str,
        version: Version | str,
        source: PluginSource,
        manifest_path: Path | str,
        *,
        manifest: Manifest | None = None,
        manifest_text: str | None = None,
    ) -> None:
        if manifest is None and manifest_text is None:
            raise TypeError("a DiscoveredPlugin needs its manifest or the manifest's text")
        self.name = name
        self._version = version
        self.source = source
        self._manifest_path = os.fspath(manifest_path)
        self._manifest = manifest
        self._manifest_text = manifest_text
        self._distribution: DistributionInfo | Literal[False] | None = False
        #: What a host's warm start already knows of the validated manifest, so it need
        #: not parse it before use: (the tools declared, whether it needs eager activation).
        self._known: tuple[tuple[str, ...], bool] | None = None

    @property
    def version(self) -> Version:
        """The plugin's version (the distribution's, which the manifest must agree with)."""
        if isinstance(self._version, str):
            self._version = parse_version(self._version)
        return self._version

    def __repr__(self) -> str:
        return f"<DiscoveredPlugin {self.name} {self.version} from {self.source}>"

    @property
    def manifest_path(self) -> Path:
        """The ``plugin.toml`` this record was read from."""
        return Path(self._manifest_path)

    @property
    def manifest(self) -> Manifest:
        """The validated manifest (parsed on first use when it came from the cache)."""
        if self._manifest is None:
            assert self._manifest_text is not None
            self._manifest = parse_manifest(self._manifest_text, self._manifest_path, required=())
        return self._manifest

    @property
    def distribution(self) -> DistributionInfo | None:
        """The distribution's metadata, read on first use; ``None`` for directory plugins."""
        if self._distribution is False:
            if self.source.kind is SourceKind.DISTRIBUTION:
                self._distribution = read_distribution_info(self.source.location)
            else:
                self._distribution = None
        return self._distribution

    def _fill(self, own: str | None, attribute: str) -> str | None:
        if own:
            return own
        info = self.distribution
        return getattr(info, attribute) if info is not None else None

    @property
    def description(self) -> str | None:
        return self._fill(self.manifest.description, "summary")

    @property
    def author(self) -> str | None:
        return self._fill(self.manifest.author, "author")

    @property
    def license(self) -> str | None:
        return self._fill(self.manifest.license, "license")

    @property
    def homepage(self) -> str | None:
        return self._fill(self.manifest.homepage, "homepage")

    @property
    def package_dir(self) -> Path:
        """The folder holding the manifest: the plugin's own files live here."""
        return Path(os.path.dirname(self._manifest_path))

    @property
    def package_folder(self) -> str:
        """``package_dir`` as a string (what the loader needs, without building a Path)."""
        return os.path.dirname(self._manifest_path)

    def to_row(self) -> tuple[str, ...]:
        """The cacheable form: strings only, the manifest as the TOML text it was read from."""
        manifest_text = self._manifest_text
        if manifest_text is None:
            raise ValueError(f"{self!r} was not read from a file and cannot be cached")
        source = self.source
        return (
            self.name,
            str(self._version),
            source.kind.value,
            source.entry,
            source._location,
            source._import_root,
            source.distribution or "",
            source.entry_point_name or "",
            self._manifest_path,
            manifest_text,
        )

    @classmethod
    def from_row(cls, row: Sequence[str]) -> DiscoveredPlugin:
        # The warm path of discovery builds one of these per installed plugin: fill the
        # slots directly, skipping __init__'s argument handling (a third of the cost).
        name, version, kind, entry, location, root, dist, point, manifest_path, manifest = row
        source = PluginSource.__new__(PluginSource)
        source.kind = _KINDS[kind]
        source.entry = entry
        source._location = location
        source._import_root = root
        source.distribution = dist or None
        source.entry_point_name = point or None
        source.target = None
        plugin = cls.__new__(cls)
        plugin.name = name
        plugin._version = version
        plugin.source = source
        plugin._manifest_path = manifest_path
        plugin._manifest = None
        plugin._manifest_text = manifest
        plugin._distribution = False
        plugin._known = None
        return plugin


class CachedPlugins:
    """The plugins of a warm discovery, built on first use (``DiscoveryResult.plugins``).

    The cache keeps every record in one marshalled blob; loading the cache file leaves it
    on disk, so a warm discovery costs the same whatever the number of plugins. The first
    read of ``plugins`` decodes the blob and builds every ``DiscoveredPlugin`` at once.
    Should the blob not decode, ``rescan`` (set by ``discover_plugins``) finds the
    plugins afresh instead.
    """

    __slots__ = ("_blob", "_count", "_items", "_lock", "rescan", "token")

    def __init__(
        self,
        blob: bytes | Callable[[], bytes],
        count: int,
        rescan: Callable[[], Sequence[DiscoveredPlugin]] | None = None,
        *,
        token: str | None = None,
    ) -> None:
        #: Names the cache file's content (a new one each time it is written), so what
        #: was worked out from these plugins can be cached under it.
        self.token = token
        self._blob: bytes | Callable[[], bytes] | None = blob
        self._count = count
        self._items: tuple[DiscoveredPlugin, ...] | None = None
        self._lock = threading.Lock()
        self.rescan = rescan

    @classmethod
    def of(cls, plugins: Sequence[DiscoveredPlugin], token: str) -> CachedPlugins:
        """Plugins already built, as the cache stored them under ``token``."""
        built = cls(b"", len(plugins), token=token)
        built._items = tuple(plugins)
        built._blob = None
        return built

    def _materialize(self) -> tuple[DiscoveredPlugin, ...]:
        items = self._items
        if items is not None:
            return items
        with self._lock:
            if self._items is None:
                self._items = self._decode()
                self._blob = None
            return self._items

    def _decode(self) -> tuple[DiscoveredPlugin, ...]:
        blob = self._blob
        assert blob is not None
        try:
            data = blob if isinstance(blob, bytes) else blob()
            items = tuple(map(DiscoveredPlugin.from_row, marshal.loads(data)))
            if len(items) != self._count:
                raise ValueError(f"{len(items)} records where the cache promised {self._count}")
        except (EOFError, KeyError, OSError, TypeError, ValueError):
            if self.rescan is None:
                raise
            items = tuple(self.rescan())
            self.token = None
        return items


class DiscoveryResult:
    """Every plugin found, every problem met, and whether the cache answered.

    Immutable. For a warm discovery the plugin records stay encoded until ``plugins`` is
    first read, which builds them all; ``plugins`` is always a tuple.
    """

    __slots__ = ("_plugins", "_source", "diagnostics", "from_cache")

    _plugins: tuple[DiscoveredPlugin, ...] | None
    _source: CachedPlugins | None
    diagnostics: tuple[Diagnostic, ...]
    from_cache: bool

    def __init__(
        self,
        plugins: Sequence[DiscoveredPlugin] | CachedPlugins,
        diagnostics: tuple[Diagnostic, ...],
        from_cache: bool = False,
    ) -> None:
        setter = object.__setattr__
        if isinstance(plugins, CachedPlugins):
            setter(self, "_source", plugins)
            setter(self, "_plugins", None)
        else:
            setter(self, "_source", None)
            setter(self, "_plugins", tuple(plugins))
        setter(self, "diagnostics", diagnostics)
        setter(self, "from_cache", from_cache)

    @property
    def plugins(self) -> tuple[DiscoveredPlugin, ...]:
        """Every plugin version found (built on first use when the cache answered)."""
        plugins: tuple[DiscoveredPlugin, ...] | None = self._plugins
        if plugins is None:
            assert self._source is not None
            plugins = self._source._materialize()
            object.__setattr__(self, "_plugins", plugins)
        return plugins

    @property
    def token(self) -> str | None:
        """Names the cache file's content when the cache answered or was written, else
        ``None``: what is worked out from these plugins can be cached under it."""
        return self._source.token if self._source is not None else None

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def _fields(self) -> tuple[object, ...]:
        return (self.plugins, self.diagnostics, self.from_cache)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, DiscoveryResult)
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"DiscoveryResult(plugins={self.plugins!r}, diagnostics={self.diagnostics!r}, "
            f"from_cache={self.from_cache!r})"
        )

    def versions(self) -> dict[str, list[DiscoveredPlugin]]:
        """Plugins by name, each list newest version first."""
        grouped: dict[str, list[DiscoveredPlugin]] = {}
        for plugin in self.plugins:
            grouped.setdefault(plugin.name, []).append(plugin)
        for candidates in grouped.values():
            if len(candidates) > 1:  # one version needs no sorting, nor its version parsed
                candidates.sort(key=lambda plugin: plugin.version, reverse=True)
        return grouped

    @property
    def names(self) -> list[str]:
        """The distinct plugin names found, sorted."""
        return sorted({plugin.name for plugin in self.plugins})
