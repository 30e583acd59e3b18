"""A plugin's shape: which kinds of capability it offers, and whether it only listens.

The kinds are ``tools``, ``channels``, ``pipeline_stages`` and ``providers`` (the
manifest's ``[plugin.capabilities]``) and ``http`` (a ``[plugin.http]`` section). A plugin
offering exactly one kind is a ``capability`` plugin, several kinds a ``hybrid``. A plugin
offering none is ``hook-only`` when it is known to have subscribed to events (event
hookimpls or ``ctx.on``), else ``none``.

The manifest alone gives the shape without importing the plugin. Event hooks are not
declared there, so from the manifest alone a hook-only plugin reads as ``none``: only the
registrations of an active plugin tell the two apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from clawhost.discovery.manifest import Manifest
    from clawhost.runtime.context import Registrations

__all__ = ["KINDS", "Shape", "classify"]

Shape = Literal["capability", "hybrid", "hook-only", "none"]

#: Every kind of capability, in the order ``classify`` reports them (sorted by name).
KINDS = ("channels", "http", "pipeline_stages", "providers", "tools")

_NAMED_KINDS = ("channels", "pipeline_stages", "providers", "tools")


def classify(
    manifest: Manifest | None, registrations: Registrations | None = None
) -> tuple[Shape, tuple[str, ...]]:
    """The shape of a plugin and the kinds it offers, sorted (names from ``KINDS``).

    ``manifest`` gives the declared kinds (``None``: nothing declared is known).
    ``registrations`` is what the plugin registered while active, or ``None`` when that is
    not known; its kinds join the declared ones, and its events make a plugin that offers
    no kind ``hook-only``. Events never count as a kind.
    """
    kinds: set[str] = set()
    if manifest is not None:
        capabilities = manifest.capabilities
        kinds.update(kind for kind in _NAMED_KINDS if getattr(capabilities, kind))
        if manifest.http is not None:
            kinds.add("http")
    if registrations is not None:
        kinds.update(kind for kind in _NAMED_KINDS if getattr(registrations, kind))
        if registrations.http:
            kinds.add("http")
    found = tuple(sorted(kinds))
    if len(found) == 1:
        return "capability", found
    if found:
        return "hybrid", found
    if registrations is not None and registrations.events:
        return "hook-only", found
    return "none", found
