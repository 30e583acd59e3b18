"""Plugins that appear or go while the host runs: a folder dropped into a plugin
directory or deleted, a distribution pip-installed, upgraded or uninstalled.

``rescan(host)`` discovers again and compares with what the host knows:

* a new plugin is loaded, resolved and activated (unless activation is lazy and it only
  offers tools), with the plugins that failed for want of it; or it is reported FAILED
  with the reason;
* a removed plugin is deactivated (its active dependents first), its registrations and
  modules go, and it is forgotten; its dependents fail with ``MissingDependency``;
* a plugin whose installed versions changed (an upgrade) is hot-reloaded.

Each of these is logged in one line on ``clawhost.reload``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from clawhost.core.state import PluginState
from clawhost.errors import ReloadError
from clawhost.reload.modules import forget_modules
from clawhost.reload.reports import RescanReport
from clawhost.runtime.records import needs_eager_activation, retry_resolution_failures

if TYPE_CHECKING:
    from clawhost.host.internals import HostInternals
    from clawhost.runtime.records import PluginRecord

__all__ = ["RescanReport", "rescan"]

logger = logging.getLogger("clawhost.reload")
S = PluginState


def _versions(record: PluginRecord) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(c.version), str(c.source.location)) for c in record.candidates))


async def rescan(host: HostInternals) -> RescanReport:
    """Discover again; bring up what was added, take down what was removed, reload what
    changed. Never raises for one plugin's failure: it is in the report and the log."""
    async with host._reload_lock:
        before = {
            name: _versions(record)
            for name, record in host._records.items()
            if record.plugin is not None and record.plugin.source.target is None
        }
        found = host.discover()
        present = set(found.versions())
        removed = sorted(name for name in before if name not in present)  # not in-memory ones
        added = sorted(name for name in host._records if name not in before and name in present)
        changed = sorted(
            name
            for name in present
            if name in before and _versions(host._records[name]) != before[name]
        )
        for name in removed:
            await _remove(host, name)
        problems: dict[str, str] = {}
        if added or removed:
            retried = [host._records[name] for name in added]
            retried += retry_resolution_failures(host._records, exclude=set(added))
            await host.resolve()
            for record in retried:
                if record.state is S.RESOLVED and (not host.lazy or needs_eager_activation(record)):
                    await host._activate_with_dependencies(record, chain=())
            for name in added:
                problem = _report_added(host._records[name])
                if problem is not None:
                    problems[name] = problem
    for name in changed:  # outside the lock: a reload takes it
        record = host._records[name]
        if record.state in (S.ACTIVE, S.FAILED):
            try:
                await host.reload(name)
            except ReloadError as exc:
                problems[name] = f"{exc.stage}: {exc.reason}"
        else:
            logger.info("Plugin %r changed on disk; its new version is used when activated", name)
    return RescanReport(tuple(added), tuple(removed), tuple(changed), problems)


def _report_added(record: PluginRecord) -> str | None:
    """Log what became of a new plugin; why it is not usable, if it is not."""
    chosen = record.selected or (record.candidates[0] if record.candidates else None)
    version = f"v{chosen.version} from {chosen.source.location}" if chosen else "no version"
    failure = record.failure
    if record.state is S.FAILED and failure is not None:
        logger.error(
            "Plugin %r added (%s) but failed at stage %s: %s",
            record.name,
            version,
            failure.stage,
            failure.reason,
        )
        return f"{failure.stage}: {failure.reason}"
    status = "active" if record.state is S.ACTIVE else record.state.name.lower()
    logger.info("Plugin %r added (%s): %s", record.name, version, status)
    return None


async def _remove(host: HostInternals, name: str) -> None:
    """Take a plugin that is no longer installed down and forget it."""
    record = host._records[name]
    version = record.version
    if record.state in (S.ACTIVATING, S.DEACTIVATING):
        async with record.lock:  # let a (lazy) activation under way end first
            pass
    dependents: list[str] = []
    if record.state is S.ACTIVE:
        plan = host.plan
        dependents = [
            other
            for other in (plan.dependents(name) if plan is not None else ())
            if host._records[other].state is S.ACTIVE
        ]
        await host.deactivate(name)
    forget_modules(record, bytecode=False)
    host.tools.undeclare(name)
    host._eligible.pop(name, None)
    for key in [key for key in host._grants if key[0] == name]:
        del host._grants[key]
    del host._records[name]
    logger.info(
        "Plugin %r removed (was v%s): %s%s",
        name,
        version or "?",
        "deactivated" if version else "forgotten",
        f"; its dependents were deactivated: {', '.join(dependents)}" if dependents else "",
    )
