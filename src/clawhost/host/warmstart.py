"""A host's warm start: the outcome of load and resolve, remembered for unchanged inputs.

The first ``resolve()`` of a host validates every candidate's manifest, grants its
permissions and resolves the graph. When that went cleanly (every plugin resolved or
disabled, not one diagnostic) and discovery was answered from its cache, the outcome is
stored beside the discovery cache: each plugin's chosen version, the tools its manifest
declares and whether it must be activated eagerly, the tool registry's declarations and
the activation plan.

It is keyed by everything the outcome depends on: the discovery cache's content (a token
written with it, new each time discovery is written, which happens whenever a plugin is
installed, removed or edited), the whole host configuration, the host version and the
clawhost version. A fresh host whose discovery matches the key gets its records built on
first use (``pending_records``; ``WarmStart.fill``), and its first ``resolve()``
moves every plugin to RESOLVED from the stored outcome, without parsing a manifest,
granting a permission or even decoding the discovered plugins: the tools are declared in
one step, and a record (with the discovered versions, decoded once for all) is built
when something reads it. The manifests are parsed and the permissions granted when a
plugin is activated, as they are for any plugin; with the same inputs they give the same
answer they gave the first time. Any other resolve (a reload, a rescan, ``enable``) takes
the full path, and so does every start with the cache off.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from clawhost._version import __version__
from clawhost.core.state import PluginState, check_transition
from clawhost.resolution.plan import ActivationPlan
from clawhost.resolution.resolve import Resolution
from clawhost.runtime.records import (
    PluginRecord,
    complete_record,
    is_pending,
    needs_eager_activation,
    pending_records,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clawhost.config.host import HostConfig
    from clawhost.discovery.cache import DiscoveryCache
    from clawhost.discovery.discovered import DiscoveredPlugin, DiscoveryResult
    from clawhost.runtime.registry import ToolRegistry


class HostStages(Protocol):
    """What of a host (``clawhost.host.stages.HostStages``) a warm start reads and sets."""

    config: HostConfig
    host_version: str
    _cache: DiscoveryCache | bool
    _group: str
    _path: Sequence[str] | None
    _dirs: list[Path]
    _memory: list[DiscoveredPlugin]
    _discovery: DiscoveryResult | None
    _discovery_token: str | None
    _records: dict[str, PluginRecord]
    _eligible: dict[str, list[DiscoveredPlugin]]

    @property
    def tools(self) -> ToolRegistry: ...


__all__ = ["WarmStart", "prepare", "remember"]

logger = logging.getLogger("clawhost.cache")

FORMAT = 2
S = PluginState
_NONE: frozenset[str] = frozenset()


def _locate(host: HostStages) -> tuple[Path, tuple[Any, ...]] | None:
    """The file holding this host's warm start, and the key it must carry; ``None`` when
    discovery was not answered from the cache (or the host has in-memory plugins)."""
    from clawhost.discovery.discover import _cache_from

    token = host._discovery_token
    discovery = host._discovery
    if token is None or discovery is None or discovery.diagnostics or host._memory:
        return None
    store = _cache_from(host._cache)
    if store is None:
        return None
    key = (
        FORMAT,
        __version__,
        token,
        host.host_version,
        host._group,
        host.config.model_dump_json(),
    )
    # One file per host setting (search path, plugin directories, group, configuration):
    # a new discovery replaces it; hosts set up differently do not take turns.
    search = list(sys.path if host._path is None else host._path)
    where = repr((search, [str(folder) for folder in host._dirs], key[4:]))
    name = hashlib.blake2b(where.encode(), digest_size=10).hexdigest()
    return store.directory / f"start-{name}.bin", key


def prepare(host: HostStages) -> WarmStart | None:
    """The stored warm start of a host that has no records yet, if its key matches the
    host's discovery and settings; else ``None``."""
    located = _locate(host)
    if located is None:
        return None
    file, key = located
    try:
        document = marshal.loads(file.read_bytes())
        stored = document[0]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, TypeError, IndexError) as exc:
        logger.debug("ignoring unreadable warm start %s: %s", file, exc)
        return None
    if stored != key or len(document) != 8:  # the fields remember() writes
        return None
    assert host._discovery is not None  # _locate checked
    return WarmStart(host.tools, host._discovery, document, file)


class WarmStart:
    """A matching warm start: the records it builds on first use, and the first resolve."""

    def __init__(
        self, tools: ToolRegistry, discovery: DiscoveryResult, document: Any, file: Path
    ) -> None:
        _, names, rows, eager, declared, declared_by, levels, requirements = document
        self.file = file
        #: The plugins' names, in the order of the records.
        self.names: list[str] = names
        #: Those that must be active from the start even with lazy activation.
        self.eager: frozenset[str] = frozenset(eager)
        #: Whether the first resolve was answered from here (records built from now on
        #: are RESOLVED).
        self.resolved = False
        #: The records built so far (the others are pending).
        self.filled: list[PluginRecord] = []
        self._tools = tools
        self._discovery = discovery
        self._rows_blob: bytes | None = rows
        self._rows: dict[str, Any] = {}
        self._versions: dict[str, list[DiscoveredPlugin]] | None = None
        self._declared: tuple[dict[str, str], dict[str, list[str]]] = (declared, declared_by)
        self._levels: tuple[tuple[str, ...], ...] = levels
        self._requirements: dict[str, tuple[str, ...]] = requirements
        self._elapsed = 0.0
        self._lock = threading.RLock()

    def records(self) -> dict[str, PluginRecord]:
        """One pending record per plugin, by name."""
        return pending_records(self.names, self.fill)

    def fill(self, record: PluginRecord) -> None:
        """Build a pending record: what discovery would have made of it, and RESOLVED
        to its remembered version once the first resolve was answered from here."""
        with self._lock:
            if not is_pending(record):
                return  # another thread built it meanwhile
            if self._versions is None:
                # Every discovered plugin, decoded once for all (the cache's blob).
                self._versions = self._discovery.versions()
            if self._rows_blob is not None:
                self._rows = {row[0]: row for row in marshal.loads(self._rows_blob)}
                self._rows_blob = None
            name = record.name
            _, disabled, version, declared, eager = self._rows[name]
            fresh = PluginRecord(name, self._versions.get(name, []), enabled=not disabled)
            if self.resolved and not disabled:
                self._resolve(fresh, version, declared, eager)
            complete_record(record, vars(fresh))
            self.filled.append(record)

    def _resolve(
        self, record: PluginRecord, version: str, declared: tuple[str, ...], eager: bool
    ) -> None:
        candidates = record.candidates
        match = (
            candidates
            if len(candidates) == 1
            else [candidate for candidate in candidates if str(candidate.version) == version]
        )
        if not match:
            # Only when the discovery cache's records did not decode and discovery ran
            # again, finding other versions: the key matched, the content did not.
            self._tools.undeclare(record.name)
            record.fail("resolve", f"version {version} is no longer discovered; rescan()")
            return
        candidate = match[0]
        candidate._known = (tuple(declared), eager)
        # DISCOVERED -> LOADED -> RESOLVED, as a full resolve moves it; every candidate
        # stays eligible (no ``_eligible`` entry means all of them).
        check_transition(record.name, record.state, S.LOADED)
        record.state = S.RESOLVED
        record.failure = None
        record.selected = candidate
        record.timings["load"] = 0.0
        record.timings["resolve"] = self._elapsed

    def resolve(self, records: Mapping[str, PluginRecord]) -> Resolution | None:
        """Answer a host's first resolve: every enabled plugin RESOLVED (records built
        later are built so), its tools declared, the plan as remembered. ``None`` (nothing
        changed) when a record built meanwhile is not as remembered (a plugin disabled
        or enabled since)."""
        started = time.perf_counter()
        with self._lock:
            for record in self.filled:
                disabled = self._rows[record.name][1]
                if record.diagnostics or record.state is not (
                    S.DISABLED if disabled else S.DISCOVERED
                ):
                    return None
            try:
                self._tools.restore_declarations(*self._declared)
            except RuntimeError:  # something declared tools already: one by one, then
                for owner, names in self._declared[1].items():
                    self._tools.declare(owner, tuple(names))
            plan = ActivationPlan(self._levels, _Requirements(self._requirements))
            self._elapsed = time.perf_counter() - started
            self.resolved = True
            for record in self.filled:  # built before the resolve: DISCOVERED or DISABLED
                if record.state is S.DISCOVERED:
                    _, _, version, declared, eager = self._rows[record.name]
                    self._resolve(record, version, declared, eager)
        logger.debug("load and resolve answered from the warm start %s", self.file)
        return Resolution(
            selected=_Selected(records, plan.order), plan=plan, failures=MappingProxyType({})
        )


class _Requirements(Mapping[str, frozenset[str]]):
    """An activation plan's requirements, each turned into a frozenset when read."""

    def __init__(self, raw: dict[str, tuple[str, ...]]) -> None:
        self._raw = raw
        self._made: dict[str, frozenset[str]] = {}

    def __getitem__(self, name: str) -> frozenset[str]:
        made = self._made.get(name)
        if made is None:
            deps = self._raw[name]
            made = self._made[name] = frozenset(deps) if deps else _NONE
        return made

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, name: object) -> bool:
        return name in self._raw


class _Selected(Mapping[str, "DiscoveredPlugin"]):
    """A warm resolution's chosen versions: each read from its record (built on use)."""

    def __init__(self, records: Mapping[str, PluginRecord], order: tuple[str, ...]) -> None:
        self._records = records
        self._order = order
        self._names: frozenset[str] | None = None

    def __getitem__(self, name: str) -> DiscoveredPlugin:
        if name not in self:
            raise KeyError(name)
        record = self._records[name]
        if record.selected is None:
            raise KeyError(name)
        return record.selected

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        if self._names is None:
            self._names = frozenset(self._order)
        return name in self._names


def remember(host: HostStages, resolution: Resolution) -> bool:
    """Store the outcome of a host's first resolve when it went cleanly; returns whether
    it was stored."""
    if resolution.failures:
        return False
    located = _locate(host)
    if located is None:
        return False
    file, key = located
    rows: list[tuple[str, bool, str, tuple[str, ...], bool]] = []
    eager: list[str] = []
    for name, record in host._records.items():
        if record.diagnostics:
            return False
        if record.state is S.DISABLED:
            rows.append((name, True, "", (), False))
            continue
        selected = record.selected
        if record.state is not S.RESOLVED or selected is None:
            return False
        declared = tuple(selected.manifest.capabilities.tools)
        needs = needs_eager_activation(record)
        rows.append((name, False, str(selected.version), declared, needs))
        if needs:
            eager.append(name)
    plan = resolution.plan
    requirements = {name: tuple(sorted(deps)) for name, deps in plan.requirements.items()}
    declared_tools, declared_by = host.tools.declarations()
    document = (
        key,
        list(host._records),
        marshal.dumps(rows),  # decoded when the first record is built
        eager,
        declared_tools,
        declared_by,
        tuple(map(tuple, plan.levels)),
        requirements,
    )
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=file.parent, prefix=".start-")
        with os.fdopen(descriptor, "wb") as handle:
            marshal.dump(document, handle)
        os.replace(temporary, file)
    except OSError as exc:
        logger.debug("could not write warm start %s: %s", file, exc)
        return False
    return True
