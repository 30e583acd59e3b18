"""Hot reload: swap a plugin's code in a running host without failing a call.

The transaction, for a changed plugin P (and the active plugins that depend on it):

1. hold new calls to P and its dependents (they wait at the plugins' call gates);
2. let the calls in flight finish, up to ``PluginHost.drain_timeout``;
3. deactivate the dependents, then P (reverse activation order);
4. drop P's modules from ``sys.modules`` and their bytecode caches;
5. re-read P's manifest, re-import it, re-resolve (every other plugin keeps its version);
6. activate the new P, then its dependents (against the new P);
7. release the held calls, which now reach the new code.

If any step fails (a syntax error, an activate that raises, a manifest that no longer
resolves), the old modules go back into ``sys.modules``, the old version is activated
again with its dependents, the held calls are released to it, and ``ReloadError`` says
why. A plugin that was FAILED is simply tried again from fresh code.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from clawhost.core.importpath import release
from clawhost.core.state import PluginState
from clawhost.errors import IllegalTransition, ReloadError
from clawhost.reload.modules import (
    drop_modules,
    forget_bytecode,
    plugin_modules,
    plugin_root,
    restore_modules,
)
from clawhost.reload.reports import ReloadEvent

if TYPE_CHECKING:
    from clawhost.discovery.discovered import DiscoveryResult
    from clawhost.host.internals import HostInternals
    from clawhost.runtime.records import PluginRecord

__all__ = ["reload_plugin"]

logger = logging.getLogger("clawhost.reload")
S = PluginState


async def reload_plugin(host: HostInternals, name: str) -> ReloadEvent:
    """Run the reload transaction for ``name``; raise ``ReloadError`` after a rollback."""
    record = host._record(name)
    if record.state is S.DISABLED:
        raise IllegalTransition(name, "DISABLED", "LOADED", "it is disabled; enable it first")
    if record.state in (S.ACTIVATING, S.DEACTIVATING):
        async with record.lock:  # a reload during a (lazy) activation waits for its end
            pass
    started = time.perf_counter()
    plan = host.plan
    dependents = tuple(
        other
        for other in (plan.dependents(name) if plan is not None else ())
        if host._records[other].state is S.ACTIVE
    )
    chain = (name, *dependents)
    records = [host._records[item] for item in chain]
    old_version = str(record.version) if record.version else None
    was_active = record.state is S.ACTIVE
    was_failed = record.state is S.FAILED
    logger.info("Plugin %r changed, reloading...", name)
    guard = host._guard
    guard.reloading.update(chain)
    for item in records:
        item.gate.longest_hold = 0.0
    try:
        if was_active and host.config.sandbox_for(name).isolation == "process":
            failure = await _trial(host, record)
            if failure is not None:  # the old worker never stopped serving
                event = _event(name, records, started, old_version, None, dependents, failure)
                logger.error(
                    "Plugin %r reload failed at %s: %s", name, failure.stage, failure.reason
                )
                await host._notify_reload(event)
                raise ReloadError(name, failure.stage, failure.reason) from failure.__cause__
        for item in records:
            await _close(item, host.drain_timeout)
        snapshot = _Snapshot.take(host, records)
        try:
            new_version = await _swap(host, record, dependents, was_active, was_failed)
        except _Failed as failure:
            await _roll_back(host, snapshot, failure)
            event = _event(name, records, started, old_version, None, dependents, failure)
            await host._notify_reload(event)
            raise ReloadError(name, failure.stage, failure.reason) from failure.__cause__
    finally:
        for item in records:
            item.gate.open()
        guard.reloading.difference_update(chain)
    event = _event(name, records, started, old_version, new_version, dependents, None)
    logger.info(
        "Plugin %r reloaded successfully (v%s, %.1f ms)", name, new_version, event.duration * 1e3
    )
    await host._notify_reload(event)
    return event


def _manifest_failure(found: DiscoveryResult, path: str) -> _Failed | None:
    """The edited manifest at ``path`` no longer parses: a failure at the load stage."""
    for diagnostic in found.diagnostics:
        if diagnostic.severity == "error" and str(diagnostic.file) == path:
            problems = "; ".join(str(problem) for problem in diagnostic.problems)
            return _Failed("load", f"{path}: {diagnostic.message}: {problems}".rstrip(": "))
    return None


async def _trial(host: HostInternals, record: PluginRecord) -> _Failed | None:
    """Try the code on disk in a worker of its own (process isolation): the failure, if
    it does not start."""
    from clawhost.worker.isolation import trial_isolated

    plugin = record.plugin
    assert plugin is not None
    path = str(plugin.manifest_path)
    found = host.discover()
    failure = _manifest_failure(found, path)
    if failure is not None:
        return failure
    candidate = next((item for item in found.plugins if str(item.manifest_path) == path), plugin)
    try:
        await trial_isolated(
            record,
            candidate,
            sandbox=host.config.sandbox_for(record.name),
            enforce_capabilities=host._enforces_capabilities(record.name, candidate),
            host=host._context,
        )
    except Exception as exc:
        failure = _Failed("activate", f"{type(exc).__name__}: {exc}")
        failure.__cause__ = exc
        return failure
    return None


async def _close(record: PluginRecord, drain_timeout: float) -> None:
    if not await record.gate.close(drain_timeout):
        logger.warning(
            "Plugin %r: %d call(s) still running after %gs; reloading anyway",
            record.name,
            record.gate.inflight,
            drain_timeout,
        )


class _Failed(Exception):
    def __init__(self, stage: str, reason: str) -> None:
        self.stage = stage
        self.reason = reason
        super().__init__(f"{stage}: {reason}")


@dataclass
class _Snapshot:
    selected: dict[str, Any]
    states: dict[str, PluginState]
    modules: dict[str, ModuleType]
    root: Path | None
    resolution: Any
    candidates: list[Any]
    active: frozenset[str]  # every plugin active before the reload

    @classmethod
    def take(cls, host: HostInternals, records: list[PluginRecord]) -> _Snapshot:
        main = records[0]
        plugin = main.plugin
        return cls(
            selected={item.name: item.selected for item in records},
            states={item.name: item.state for item in records},
            modules=plugin_modules(main),
            root=plugin_root(plugin) if plugin is not None else None,
            resolution=host._resolution,
            candidates=list(main.candidates),
            active=frozenset(
                name for name, record in host._records.items() if record.state is S.ACTIVE
            ),
        )


async def _swap(
    host: HostInternals,
    record: PluginRecord,
    dependents: tuple[str, ...],
    was_active: bool,
    was_failed: bool,
) -> str:
    name = record.name
    for dependent in reversed(dependents):
        await host._deactivate_one(host._records[dependent])
    if was_active:
        await host._deactivate_one(record)
    plugin = record.plugin
    root = plugin_root(plugin) if plugin is not None else None
    old_modules = plugin_modules(record)
    drop_modules(old_modules)
    forget_bytecode(old_modules.values(), root)
    release(record)  # the import below holds the plugin's folder again
    importlib.invalidate_caches()
    record.modules = frozenset()
    # Re-read the manifest: discovery sees the change (the cache checks file stamps).
    found = host.discover()
    failure = _manifest_failure(found, str(plugin.manifest_path)) if plugin is not None else None
    if failure is not None:
        raise failure
    host._load(record)
    if record.state is S.FAILED:
        raise _Failed("load", record.failure.reason if record.failure else "cannot load")
    pins = {
        other: str(host._records[other].selected.version)  # type: ignore[union-attr]
        for other in dependents
        if host._records[other].selected is not None
    }
    await host.resolve(extra_pins=pins)
    if record.state is not S.RESOLVED or record.selected is None:
        reason = record.failure.reason if record.failure else f"ended {record.state.name}"
        raise _Failed("resolve", reason)
    new_version = str(record.selected.version)
    if not was_active and not was_failed:  # deactivated or never activated: stays so
        return new_version  # the new code is imported when it is next activated
    logger.info("Loading %r v%s", name, new_version)
    await host._activate_with_dependencies(record, chain=())
    if _state(record) is not S.ACTIVE:
        reason = record.failure.reason if record.failure else "did not activate"
        raise _Failed("activate", reason)
    for dependent in dependents:
        other = host._records[dependent]
        await host._activate_one(other)
        if other.state is not S.ACTIVE:
            reason = other.failure.reason if other.failure else "did not activate"
            raise _Failed(
                "activate", f"dependent {dependent} failed against v{new_version}: {reason}"
            )
    return new_version


async def _roll_back(host: HostInternals, snapshot: _Snapshot, failure: _Failed) -> None:
    """Bring the old version back: old modules, old selection, activated again."""
    names = list(snapshot.states)
    logger.error(
        "Plugin %r reload failed at %s: %s; rolling back", names[0], failure.stage, failure.reason
    )
    for name in reversed(names):
        record = host._records[name]
        if record.state is S.ACTIVE:
            await host._deactivate_one(record)
    plan = host.plan  # dependencies the reload activated go back down too
    order = [item for level in plan.levels for item in level] if plan is not None else []
    for name in reversed(order):
        record = host._records[name]
        if record.state is S.ACTIVE and name not in snapshot.active:
            await host._deactivate_one(record)
    restore_modules(snapshot.modules, snapshot.root)
    importlib.invalidate_caches()
    host._resolution = snapshot.resolution
    main = host._records[names[0]]
    main.candidates = snapshot.candidates
    host._eligible[main.name] = list(snapshot.candidates)
    for name in names:
        record = host._records[name]
        if snapshot.states[name] is not S.ACTIVE:
            continue
        record.selected = snapshot.selected[name]
        record.modules = frozenset(snapshot.modules) if name == names[0] else record.modules
        if record.state is S.FAILED:
            record.move(S.LOADED)
        if record.state in (S.LOADED, S.INACTIVE):
            record.move(S.RESOLVED)
        await host._activate_one(record)
        if record.state is not S.ACTIVE:
            logger.error("Plugin %r could not be restored after the failed reload", name)
        else:
            logger.info("Plugin %r rolled back to v%s", name, record.version)


def _state(record: PluginRecord) -> PluginState:
    """The record's state now (the awaits before reading it may have changed it)."""
    return record.state


def _event(  # noqa: PLR0917 - private, called twice
    name: str,
    records: list[PluginRecord],
    started: float,
    old_version: str | None,
    new_version: str | None,
    dependents: tuple[str, ...],
    failure: _Failed | None,
) -> ReloadEvent:
    return ReloadEvent(
        plugin=name,
        ok=failure is None,
        old_version=old_version,
        new_version=new_version,
        duration=time.perf_counter() - started,
        held_calls=sum(item.gate.held_total for item in records),
        longest_hold=max((item.gate.longest_hold for item in records), default=0.0),
        stage=failure.stage if failure else None,
        reason=failure.reason if failure else None,
        dependents=dependents,
    )
