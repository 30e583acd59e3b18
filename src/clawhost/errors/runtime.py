"""Errors of the running host: the lifecycle, registrations, tools and hot reload."""

from __future__ import annotations

from .base import ClawhostError, Problem

# -- lifecycle --------------------------------------------------------------------------------


class LifecycleError(ClawhostError):
    """The lifecycle was asked to do something it cannot do."""


class PluginNotFound(LifecycleError, LookupError):
    """No plugin of that name is known to the host."""

    def __init__(self, plugin: str, known: tuple[str, ...] = ()) -> None:
        self.plugin = plugin
        self.known = known
        hint = f"; known plugins: {', '.join(known)}" if known else ""
        super().__init__(f"plugin not found: {plugin!r}{hint}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.known))


class IllegalTransition(LifecycleError):
    """A state change the lifecycle does not allow, with what to do instead."""

    def __init__(self, plugin: str, current: str, target: str, hint: str = "") -> None:
        self.plugin = plugin
        self.current = current
        self.target = target
        self.hint = hint
        message = f"plugin {plugin!r} cannot go from {current} to {target}"
        super().__init__(f"{message}: {hint}" if hint else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.current, self.target, self.hint))


class PluginFailed(LifecycleError):
    """A lifecycle stage failed for one plugin: ``stage`` and ``reason`` say which and why.

    The original exception, when there is one, is ``__cause__``.
    """

    def __init__(self, plugin: str, stage: str, reason: str) -> None:
        self.plugin = plugin
        self.stage = stage
        self.reason = reason
        super().__init__(f"plugin {plugin!r} failed to {stage}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.stage, self.reason))


# -- registrations ----------------------------------------------------------------------------


class RegistrationError(ClawhostError, ValueError):
    """Something a plugin tried to register was refused."""


class UndeclaredCapability(RegistrationError):
    """A plugin registered a capability its manifest does not declare."""

    def __init__(self, plugin: str, kind: str, name: str, declared: tuple[str, ...]) -> None:
        self.plugin = plugin
        self.kind = kind
        self.name = name
        self.declared = declared
        listed = ", ".join(declared) if declared else "none"
        super().__init__(
            f"plugin {plugin!r} registered {kind} {name!r}, which its manifest does not declare "
            f"under [plugin.capabilities] {kind}s (declared: {listed})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.kind, self.name, self.declared))


class UndeclaredSurface(RegistrationError):
    """A plugin offered a gateway surface (an HTTP app) its manifest does not declare."""

    def __init__(self, plugin: str, surface: str, section: str) -> None:
        self.plugin = plugin
        self.surface = surface
        self.section = section
        super().__init__(
            f"plugin {plugin!r} registered {surface}, which its manifest does not declare: "
            f"add {section} (manifest_version = 2) to its plugin.toml"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.surface, self.section))


class RegistrationConflict(RegistrationError):
    """Two plugins claim one name; the first registration stands."""

    def __init__(self, kind: str, name: str, owner: str, claimant: str) -> None:
        self.kind = kind
        self.name = name
        self.owner = owner
        self.claimant = claimant
        super().__init__(
            f"plugin {claimant!r} cannot register {kind} {name!r}: plugin {owner!r} already did"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.kind, self.name, self.owner, self.claimant))


class ContextClosed(RegistrationError):
    """A plugin registered something through a context the host has closed: after its
    deactivation (or a failed activation), from a thread or timer it left running."""

    def __init__(self, plugin: str, kind: str, name: str) -> None:
        self.plugin = plugin
        self.kind = kind
        self.name = name
        super().__init__(
            f"plugin {plugin!r} registered {kind} {name!r} after it was deactivated; "
            "its context is closed (stop background work in a deactivate hook or cleanup)"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.kind, self.name))


class NotRegistered(ClawhostError, LookupError):
    """Nothing of that kind is registered under that name (a channel, provider or stage)."""

    def __init__(self, kind: str, name: str, known: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        hint = f"; registered: {', '.join(known)}" if known else ""
        super().__init__(f"no {kind} named {name!r}{hint}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.kind, self.name, self.known))


# -- tools ------------------------------------------------------------------------------------


class ToolError(ClawhostError):
    """Using a tool failed."""


class ToolNotFound(ToolError, LookupError):
    """No tool of that name is registered or declared."""

    def __init__(self, tool: str, known: tuple[str, ...] = ()) -> None:
        self.tool = tool
        self.known = known
        hint = f"; known tools: {', '.join(known)}" if known else ""
        super().__init__(f"tool not found: {tool!r}{hint}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.tool, self.known))


class ToolArgumentsInvalid(ToolError, ValueError):
    """The arguments do not match the tool's input schema; every problem is listed."""

    def __init__(self, tool: str, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.tool = tool
        self.problems = tuple(problems)
        lines = [f"invalid arguments for tool {tool!r}"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.tool, self.problems))


class ToolFailed(ToolError):
    """The tool's own code raised; the exception it raised is ``__cause__``."""

    def __init__(self, tool: str, plugin: str, reason: str) -> None:
        self.tool = tool
        self.plugin = plugin
        self.reason = reason
        super().__init__(f"tool {tool!r} (plugin {plugin!r}) failed: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.tool, self.plugin, self.reason))


# -- hot reload -------------------------------------------------------------------------------


class ReloadError(ClawhostError):
    """A hot reload failed at ``stage``; the old version was kept and still serves."""

    def __init__(self, plugin: str, stage: str, reason: str) -> None:
        self.plugin = plugin
        self.stage = stage
        self.reason = reason
        super().__init__(f"reload of plugin {plugin!r} failed to {stage}: {reason}; rolled back")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.stage, self.reason))
