"""What a reload and a rescan did: the records applications receive."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ReloadEvent", "RescanReport"]


@dataclass(frozen=True, slots=True)
class ReloadEvent:
    """What one reload did; applications receive it through ``PluginHost.on_reload``."""

    plugin: str
    ok: bool
    old_version: str | None
    new_version: str | None
    duration: float
    #: Calls that waited at the gate during the reload, and the longest wait, in seconds.
    held_calls: int
    longest_hold: float
    #: When the reload failed: the stage and the reason (it was rolled back).
    stage: str | None = None
    reason: str | None = None
    dependents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RescanReport:
    """What one rescan found: plugin names added, removed and changed (reloaded)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    #: Name -> why a new or changed plugin is not active (stage: reason).
    problems: dict[str, str] = field(default_factory=dict)
