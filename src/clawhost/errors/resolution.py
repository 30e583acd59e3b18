"""Errors of resolution: a plugin that cannot be part of a consistent set."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ClawhostError


@dataclass(frozen=True, slots=True)
class RequirementLink:
    """One requirement in a chain: ``requirer`` (at ``requirer_version``) needs ``dependency``
    in ``requirement``. ``requirer`` is ``None`` for a requirement made by the host or the
    user (``plugins install``)."""

    requirer: str | None
    requirer_version: str | None
    dependency: str
    requirement: str

    def __str__(self) -> str:
        who = "the host" if self.requirer is None else f"{self.requirer} v{self.requirer_version}"
        return f"{who} requires {self.dependency} {self.requirement}"


class ResolutionError(ClawhostError):
    """``plugin`` cannot be part of a consistent set of plugins; subclasses say why."""

    plugin: str

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(message)


class InvalidRequirement(ResolutionError, ValueError):
    """A version requirement that cannot be parsed, naming the plugin and the field."""

    def __init__(self, plugin: str, field: str, value: str, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(plugin, f"plugin {plugin!r}: {field} = {value!r} is invalid: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.field, self.value, self.reason))


class MissingDependency(ResolutionError):
    """``plugin`` requires ``dependency``, which is not installed (or is disabled)."""

    def __init__(
        self, plugin: str, dependency: str, requirement: str, disabled: bool = False
    ) -> None:
        self.dependency = dependency
        self.requirement = requirement
        self.disabled = disabled
        why = "is disabled" if disabled else "is not installed"
        super().__init__(plugin, f"{plugin} requires {dependency} {requirement}, which {why}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.dependency, self.requirement, self.disabled))


class VersionConflict(ResolutionError):
    """No version of ``dependency`` satisfies every requirement on it.

    ``chain`` holds the requirements involved, ``available`` the versions on offer, and
    ``suggestions`` what a person can do about it. ``unusable`` pairs each version on offer
    that would satisfy the chain but cannot be used with the reason why (its own
    ``min_clawdesk_version``, its own dependencies); such versions are not in ``available``.
    """

    # Pickling passes every field positionally (see __reduce__).
    def __init__(  # noqa: PLR0917
        self,
        plugin: str,
        dependency: str,
        chain: tuple[RequirementLink, ...],
        available: tuple[str, ...],
        suggestions: tuple[str, ...] = (),
        unusable: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.dependency = dependency
        self.chain = chain
        self.available = available
        self.suggestions = suggestions
        self.unusable = unusable
        super().__init__(plugin, self.render())

    def summary(self) -> str:
        """The conflict on one line, for logs."""
        needs = "; ".join(str(link) for link in self.chain)
        offered = ", ".join(self.available) or "none"
        return f"dependency conflict: {needs} (available {self.dependency}: {offered})"

    def render(self) -> str:
        """The explanation, as the CLI prints it."""
        lines = ["Dependency conflict detected"]
        lines.extend(f"  {link}" for link in self.chain)
        offered = ", ".join(self.available) if self.available else "none"
        lines.append(f"  available {self.dependency} versions: {offered}")
        lines.extend(
            f"  {self.dependency} {version} cannot be used: {reason}"
            for version, reason in self.unusable
        )
        lines.append("These version requirements are incompatible.")
        if self.suggestions:
            lines.append("Suggestions:")
            lines.extend(f"  {index}. {text}" for index, text in enumerate(self.suggestions, 1))
        return "\n".join(lines)

    def __reduce__(self) -> tuple[object, ...]:
        return (
            type(self),
            (
                self.plugin,
                self.dependency,
                self.chain,
                self.available,
                self.suggestions,
                self.unusable,
            ),
        )


class DependencyCycle(ResolutionError):
    """Plugins that require each other; ``cycle`` lists them, first repeated last."""

    def __init__(self, plugin: str, cycle: tuple[str, ...]) -> None:
        self.cycle = cycle
        super().__init__(plugin, f"dependency cycle: {' -> '.join(cycle)}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.cycle))


class HostTooOld(ResolutionError):
    """The plugin's ``min_clawdesk_version`` is newer than the host."""

    def __init__(self, plugin: str, version: str, required: str, host_version: str) -> None:
        self.version = version
        self.required = required
        self.host_version = host_version
        super().__init__(
            plugin,
            f"{plugin} v{version} needs clawdesk >= {required}, but this host is "
            f"{host_version}: upgrade the host or use an older {plugin}",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.version, self.required, self.host_version))


class DependencyFailed(ResolutionError):
    """A dependency of ``plugin`` failed (to resolve, load or activate), so it cannot run."""

    def __init__(
        self, plugin: str, dependency: str, reason: str | None = None, stage: str | None = None
    ) -> None:
        self.dependency = dependency
        self.reason = reason
        #: The stage at which the dependency failed (load, resolve, activate, run), if known.
        self.stage = stage
        message = f"dependency {dependency} failed" + (f" at stage {stage}" if stage else "")
        super().__init__(plugin, f"{message}: {reason}" if reason else message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.dependency, self.reason, self.stage))
