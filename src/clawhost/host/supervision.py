"""Supervision of plugins in worker processes: a worker that dies fails its plugin, and a
plugin configured to ``restart`` is started again later, with a backoff.

A worker's end is noticed two ways: a call meets it (it crashed mid-call, or the host
killed it for overrunning its deadline), or a thread waiting on the process sees it exit
between calls. Either way ``WorkerPlugin`` tells the host once, and ``worker_died`` runs
in the background:

1. the plugin's active dependents are deactivated first (they may hold its providers);
2. the plugin is rolled back like any failed activation (its worker is reaped, its
   proxies removed) and marked FAILED at stage ``run`` with how the worker ended;
3. with ``restart = true`` in its sandbox settings, ``restart_later`` waits
   ``restart_backoff_secs``, doubling each time up to ``restart_backoff_max_secs``, and
   activates it again in a new worker (then the dependents it took down), giving up after
   ``max_restarts`` restarts in a row. A worker that stays up for
   ``restart_backoff_max_secs`` resets the count.

Reload, disable and ``stop`` cancel a pending restart: each decides the plugin's fate
itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio

from clawhost.core.backoff import Backoff, RestartPolicy
from clawhost.core.state import PluginState

if TYPE_CHECKING:
    from clawhost.host.internals import HostInternals
    from clawhost.runtime.records import PluginRecord
    from clawhost.worker.isolation import WorkerPlugin

__all__ = ["cancel_restart", "restart_policy", "worker_died"]

logger = logging.getLogger("clawhost.isolation")

S = PluginState


def restart_policy(host: HostInternals, name: str) -> RestartPolicy | None:
    """The plugin's restart policy, or ``None`` when it is not restarted."""
    sandbox = host.config.sandbox_for(name)
    if not sandbox.restart:
        return None
    return RestartPolicy(
        sandbox.restart_backoff_secs, sandbox.restart_backoff_max_secs, sandbox.max_restarts
    )


def cancel_restart(host: HostInternals, name: str) -> None:
    """Forget the plugin's pending restart and its restart count (reload, disable)."""
    host._background.cancel(("restart", name))
    host._backoffs.pop(name, None)
    record = host._records.get(name)
    if record is not None:
        record.restart_at = None


async def worker_died(
    host: HostInternals, record: PluginRecord, worker: WorkerPlugin, error: BaseException | None
) -> None:
    """Fail ``record``'s plugin because its worker ended, then schedule its restart."""
    async with host._reload_lock:
        if record.state is not S.ACTIVE or record.target is not worker:
            return  # already deactivated, reloaded or failed: nothing of this worker is left
        if error is None:  # it died between calls: reap it and learn how
            error = await worker.death()
        reason = f"its worker process ended: {_first_line(error)}"
        plan = host.plan
        dependents = [
            name
            for name in (plan.dependents(record.name) if plan is not None else ())
            if host._records[name].state is S.ACTIVE
        ]
        for name in reversed(dependents):
            logger.warning(
                "Plugin %r: deactivated, because %r it depends on failed", name, record.name
            )
            await host._deactivate_one(host._records[name])
        async with record.lock:
            if record.state is not S.ACTIVE or record.target is not worker:
                return
            with anyio.CancelScope(shield=True):
                await host._roll_back(record)
            record.move(S.DEACTIVATING)
            record.move(S.INACTIVE)
            record.fail("run", reason, error)
        policy = restart_policy(host, record.name)
        backoff = host._backoffs.get(record.name)
        if policy is not None:
            if backoff is None or backoff.policy != policy:
                backoff = host._backoffs[record.name] = Backoff(policy)
            host._background.start_soon(
                ("restart", record.name), restart_later, host, record, backoff, tuple(dependents)
            )
    await host.events.dispatch("on_plugin_deactivated", plugin=record.name)


async def restart_later(
    host: HostInternals, record: PluginRecord, backoff: Backoff, dependents: tuple[str, ...]
) -> None:
    """Restart the FAILED plugin after its backoff, until it runs or the tries run out."""
    name = record.name
    while True:
        delay = backoff.failed()
        if delay is None:
            record.restart_at = None
            message = f"not restarted again: {backoff.attempts} restart(s) in a row failed"
            logger.error("Plugin %r: %s", name, message)
            if record.failure is not None:
                failure = record.failure
                record.failure = replace(failure, reason=f"{failure.reason}; {message}")
            return
        record.restart_at = time.time() + delay
        logger.warning(
            "Plugin %r: starting it again in %gs (restart %d of at most %d)",
            name,
            delay,
            backoff.attempts,
            backoff.policy.max_tries,
        )
        await anyio.sleep(delay)
        async with host._reload_lock:
            record.restart_at = None
            if record.state is not S.FAILED:
                return  # reloaded, enabled or disabled meanwhile
            record.restarts += 1
            record.move(S.LOADED)
            record.move(S.RESOLVED)
            await host._activate_with_dependencies(record, chain=())
            if _state(record) is S.ACTIVE:
                backoff.started()
                logger.warning("Plugin %r: restarted (pid %s)", name, _pid(record))
                for dependent in dependents:
                    other = host._records.get(dependent)
                    if other is not None and other.state is S.INACTIVE:
                        await host._activate_with_dependencies(other, chain=())
                return


def _state(record: PluginRecord) -> PluginState:
    """The record's state now (an await may have changed it)."""
    return record.state


def _pid(record: PluginRecord) -> object:
    return getattr(record.target, "pid", None)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
