"""Errors of the sandbox: permissions refused or denied, calls that overran."""

from __future__ import annotations

from .base import ClawhostError


class PermissionsRefused(ClawhostError, PermissionError):
    """A plugin's manifest asks for more than the host config grants; it is not loaded.

    ``refused`` lists each permission asked for and not granted, and why, naming the
    table and key consulted, e.g.
    ``"network api.example.com:443: not in [plugins.sandbox] net_allowed"``. ``command``
    is the ``clawhost plugins grant NAME PERMISSION...`` command that grants what a config
    can grant (``None``: nothing refused can be granted), which the message ends with;
    ``file`` is the config file the grants were read from, when there is one.
    """

    def __init__(
        self,
        plugin: str,
        refused: tuple[str, ...],
        command: str | None = None,
        file: str | None = None,
        complete: bool = True,
    ) -> None:
        self.plugin = plugin
        self.refused = refused
        self.command = command
        self.file = file
        self.complete = complete
        grants = f"{file} does not grant" if file else "the host does not grant"
        message = f"plugin {plugin!r} asks for permissions {grants}: " + "; ".join(refused)
        if command:
            head = "To grant it" if complete else "To grant what a config can grant"
            message += f"\n{head}: {command}"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (self.plugin, self.refused, self.command, self.file, self.complete),
        )


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
