"""The per-plugin state machine: every state, and the one table of allowed transitions.

DISCOVERED ─► LOADED ─► RESOLVED ─► ACTIVATING ─► ACTIVE ─► DEACTIVATING ─► INACTIVE
     └──────────┴───────────┴────────────┴──────────────► FAILED(stage, reason)
                              DISABLED (config says enabled = false)
"""

from __future__ import annotations

import enum

from clawhost.errors import IllegalTransition

__all__ = ["PluginState", "check_transition"]


class PluginState(enum.StrEnum):
    """Where one plugin is in its lifecycle."""

    DISCOVERED = "discovered"  #: found on disk; nothing checked beyond its manifest's form
    LOADED = "loaded"  #: candidates checked: host version, permissions; code not imported
    RESOLVED = "resolved"  #: one version chosen; its dependencies are resolved too
    ACTIVATING = "activating"  #: imported; its activate hook is running
    ACTIVE = "active"  #: activated; what it registered is in the HostContext
    DEACTIVATING = "deactivating"  #: its deactivate hook is running
    INACTIVE = "inactive"  #: deactivated; nothing of it is registered; may activate again
    FAILED = "failed"  #: a stage failed; the record says which and why
    DISABLED = "disabled"  #: the host config says enabled = false; never loaded

    @property
    def is_active(self) -> bool:
        """Whether this is ``ACTIVE``."""
        return self is PluginState.ACTIVE


S = PluginState

#: state -> the states it may move to. Anything else is an IllegalTransition.
TRANSITIONS: dict[PluginState, frozenset[PluginState]] = {
    S.DISCOVERED: frozenset({S.LOADED, S.FAILED, S.DISABLED}),
    S.LOADED: frozenset({S.RESOLVED, S.LOADED, S.FAILED, S.DISABLED}),
    # A resolved plugin may be resolved again (new candidates) or fail a re-resolution.
    S.RESOLVED: frozenset({S.ACTIVATING, S.RESOLVED, S.LOADED, S.FAILED, S.DISABLED}),
    S.ACTIVATING: frozenset({S.ACTIVE, S.FAILED}),
    S.ACTIVE: frozenset({S.DEACTIVATING}),
    # Deactivation always ends INACTIVE: registrations are removed even if the hook raised.
    S.DEACTIVATING: frozenset({S.INACTIVE}),
    S.INACTIVE: frozenset({S.ACTIVATING, S.RESOLVED, S.LOADED, S.FAILED, S.DISABLED}),
    # A failed plugin is retried by loading it again (after a fix, or on hot reload).
    S.FAILED: frozenset({S.DISCOVERED, S.LOADED, S.FAILED, S.DISABLED}),
    S.DISABLED: frozenset({S.DISCOVERED}),
}

_HINTS: dict[tuple[PluginState, PluginState], str] = {
    (S.ACTIVE, S.ACTIVATING): "it is already active",
    (S.ACTIVATING, S.ACTIVATING): "it is already being activated",
    (S.INACTIVE, S.DEACTIVATING): "it is not active",
    (S.RESOLVED, S.DEACTIVATING): "it is not active",
    (S.LOADED, S.DEACTIVATING): "it is not active",
    (S.DISCOVERED, S.DEACTIVATING): "it is not active",
    (S.DISCOVERED, S.ACTIVATING): "load and resolve it first (host.load, host.resolve)",
    (S.LOADED, S.ACTIVATING): "resolve it first (host.resolve)",
    (S.FAILED, S.ACTIVATING): "it failed earlier; fix it and load it again (host.load)",
    (S.DISABLED, S.ACTIVATING): "it is disabled in the host config",
    (S.DISABLED, S.LOADED): "it is disabled in the host config",
    (S.ACTIVE, S.LOADED): "deactivate it first",
    (S.ACTIVE, S.RESOLVED): "deactivate it first",
}


def check_transition(plugin: str, current: PluginState, target: PluginState) -> None:
    """Raise ``IllegalTransition`` (with what to do instead) unless the table allows it."""
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(
            plugin, current.name, target.name, _HINTS.get((current, target), "")
        )
