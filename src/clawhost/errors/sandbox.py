"""Errors of the sandbox: permissions refused or denied, calls that overran."""

from __future__ import annotations

from .base import ClawhostError


class PermissionsRefused(ClawhostError, PermissionError):
    """A plugin's manifest asks for more than the host config grants; it is not loaded.

    ``refused`` lists each permission asked for and not granted, and why, e.g.
    ``"network api.example.com:443: not in [plugins.sandbox] net_allowed"``.
    """

    def __init__(self, plugin: str, refused: tuple[str, ...]) -> None:
        self.plugin = plugin
        self.refused = refused
        super().__init__(
            f"plugin {plugin!r} asks for permissions the host does not grant: " + "; ".join(refused)
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.refused))


class PermissionDenied(ClawhostError, PermissionError):
    """Plugin code tried to use a resource it has no permission for.

    ``kind`` is ``filesystem``, ``network`` or ``subprocess``; ``resource`` is what it
    tried to touch (a resolved path, ``host:port``, a command).
    """

    def __init__(self, plugin: str, kind: str, resource: str, detail: str | None = None) -> None:
        self.plugin = plugin
        self.kind = kind
        self.resource = resource
        self.detail = detail
        message = f"plugin {plugin!r} may not use {kind} resource {resource}"
        super().__init__(f"{message} ({detail})" if detail else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.kind, self.resource, self.detail))


class PluginTimeout(ClawhostError, TimeoutError):
    """A call into plugin code did not finish within its limit.

    ``interrupted`` tells whether the plugin's code was actually stopped; when Python
    cannot interrupt it (blocked inside C code in a thread), the call fails anyway and the
    code finishes in the background.
    """

    def __init__(self, plugin: str, operation: str, limit: float, interrupted: bool = True) -> None:
        self.plugin = plugin
        self.operation = operation
        self.limit = limit
        self.interrupted = interrupted
        tail = "" if interrupted else " (it could not be interrupted and runs on in the background)"
        super().__init__(f"plugin {plugin!r}: {operation} did not finish within {limit:g}s{tail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.operation, self.limit, self.interrupted))
