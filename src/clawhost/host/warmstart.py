"""A host's warm start: the outcome of load and resolve, remembered for unchanged inputs.

The first ``resolve()`` of a host validates every candidate's manifest, grants its
permissions and resolves the graph. When that went cleanly (every plugin resolved or
disabled, not one diagnostic) and discovery was answered from its cache, the outcome is
stored beside the discovery cache: each plugin's chosen version, the tools its manifest
declares and whether it must be activated eagerly, and the activation plan.

It is keyed by everything the outcome depends on: the discovery cache's content (a token
written with it, new each time discovery is written, which happens whenever a plugin is
installed, removed or edited), the whole host configuration, the host version and the
clawhost version. A later first ``resolve()`` with the same key moves every plugin to
RESOLVED from the stored outcome, without parsing a manifest or granting a permission.
The manifests are parsed and the permissions granted when a plugin is activated, as they
are for any plugin; with the same inputs they give the same answer they gave the first
time. Any other resolve (a reload, a rescan, ``enable``) takes the full path, and so does
every start with the cache off.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import tempfile
import time
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from clawhost._version import __version__
from clawhost.core.state import PluginState, check_transition
from clawhost.resolution.plan import ActivationPlan
from clawhost.resolution.resolve import Resolution
from clawhost.runtime.records import needs_eager_activation

if TYPE_CHECKING:
    from collections.abc import Sequence

    from clawhost.config.host import HostConfig
    from clawhost.discovery.cache import DiscoveryCache
    from clawhost.discovery.discovered import DiscoveredPlugin, DiscoveryResult
    from clawhost.runtime.records import PluginRecord
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


__all__ = ["recall", "remember"]

logger = logging.getLogger("clawhost.cache")

FORMAT = 1
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


def recall(host: HostStages) -> Resolution | None:
    """Resolve every plugin from the stored outcome, if its key matches; else ``None``
    (nothing changed). Call only for a host's first resolve."""
    started = time.perf_counter()
    located = _locate(host)
    if located is None:
        return None
    file, key = located
    try:
        stored, rows, levels, requirements = marshal.loads(file.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, TypeError) as exc:
        logger.debug("ignoring unreadable warm start %s: %s", file, exc)
        return None
    records = host._records
    if stored != key or len(rows) != len(records):
        return None
    chosen: dict[str, Any] = {}
    for name, disabled, version, _tools, _eager in rows:
        record = records.get(name)
        if record is None or record.diagnostics:
            return None
        if record.state is not (S.DISABLED if disabled else S.DISCOVERED):
            return None
        if disabled:
            continue
        candidates = record.candidates
        if len(candidates) == 1:
            chosen[name] = candidates[0]
            continue
        match = [candidate for candidate in candidates if str(candidate.version) == version]
        if not match:
            return None
        chosen[name] = match[0]
    plan = ActivationPlan(
        tuple(map(tuple, levels)),
        MappingProxyType({name: frozenset(deps) if deps else _NONE for name, deps in requirements}),
    )
    if set(plan.order) != set(chosen):
        return None
    declare = host.tools.declare
    elapsed = time.perf_counter() - started
    for name, disabled, _version, declared, eager in rows:
        if disabled:
            continue
        record, candidate = records[name], chosen[name]
        candidate._known = known = (tuple(declared), eager)
        # DISCOVERED -> LOADED -> RESOLVED, as a full resolve moves it; every candidate
        # stays eligible (no ``_eligible`` entry means all of them).
        check_transition(name, record.state, S.LOADED)
        record.state = S.RESOLVED
        record.failure = None
        record.selected = candidate
        record.timings["load"] = 0.0
        record.timings["resolve"] = elapsed
        declare(name, known[0])
    logger.debug("load and resolve answered from the warm start %s", file)
    return Resolution(
        selected=MappingProxyType({name: chosen[name] for name in plan.order}),
        plan=plan,
        failures=MappingProxyType({}),
    )


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
        rows.append((name, False, str(selected.version), declared, needs_eager_activation(record)))
    plan = resolution.plan
    requirements = [(name, tuple(sorted(deps))) for name, deps in plan.requirements.items()]
    document = (key, rows, [list(level) for level in plan.levels], requirements)
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
