"""The plugins' HTTP apps, as a host context records them (``ctx.mount_http``).

The gateway's HTTP surface (``clawhost.surfaces.http``) serves them; this module is the
part the runtime needs, so that a context does not depend on the surface.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["PLUGIN_NAME", "PREFIX", "ASGIApp", "HttpRoutes", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application: ``async def app(scope, receive, send)``.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: What a plugin name looks like (the manifest's rule); nothing else can be mounted.
PLUGIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
PREFIX = "/plugins/"


class HttpRoutes:
    """The plugins' HTTP apps: at most one per plugin, served under ``/plugins/<name>/``."""

    def __init__(self) -> None:
        self._apps: dict[str, ASGIApp] = {}

    def mount(self, owner: str, app: ASGIApp) -> None:
        """Serve ``app`` under ``/plugins/<owner>/``.

        ``ValueError`` if ``owner`` is not a plugin name or already has an app mounted;
        ``TypeError`` if ``app`` is not callable.
        """
        if not isinstance(owner, str) or not PLUGIN_NAME.fullmatch(owner):
            raise ValueError(
                f"cannot mount an HTTP app for {owner!r}: not a plugin name "
                "(lowercase letters, digits, '-' and '_', starting with a letter or digit)"
            )
        if not callable(app):
            raise TypeError(f"the HTTP app of plugin {owner!r} is not an ASGI callable: {app!r}")
        if owner in self._apps:
            raise ValueError(f"plugin {owner!r} already has an HTTP app at {PREFIX}{owner}/")
        self._apps[owner] = app

    def remove_owner(self, owner: str) -> tuple[str, ...]:
        """Unmount ``owner``'s app, if it has one; the prefix it was served at, if any."""
        return (f"{PREFIX}{owner}/",) if self._apps.pop(owner, None) is not None else ()

    def get(self, owner: str) -> ASGIApp | None:
        """``owner``'s app, or ``None``."""
        return self._apps.get(owner)

    def owners(self) -> list[str]:
        """The plugins with an app mounted, sorted."""
        return sorted(self._apps)
