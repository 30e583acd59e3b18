"""Errors of plugin projects and installation (``plugins test``, ``plugins install``)."""

from __future__ import annotations

from pathlib import Path

from .base import ClawhostError, Problem
from .resolution import ResolutionError


class InvalidPluginProject(ClawhostError, ValueError):
    """A folder that is not a plugin project (``plugins test``, ``clawhost.testing``).

    A project is a folder with a ``pyproject.toml`` whose ``clawdesk.plugins`` entry point
    names a package holding ``plugin.toml``, or a directory plugin (``plugin.toml`` with
    ``entry``). ``problems`` says what is missing, each naming the file and the field.
    """

    def __init__(self, path: Path | str, problems: tuple[Problem, ...] | list[Problem]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        lines = [f"{self.path} is not a plugin project"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.problems))


class InstallError(ClawhostError):
    """``clawhost plugins install``, ``update`` or ``uninstall`` stopped before a change."""


class InvalidPluginSpec(InstallError, ValueError):
    """What to install is not a plugin name, a path, an archive or a git URL.

    Refused before anything runs: ``spec`` is what was given and ``reason`` why it cannot
    be used (it would be read as an option, it is not a valid requirement, ...).
    """

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"cannot install {spec!r}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.spec, self.reason))


class UnsafeArchive(InstallError, ValueError):
    """A member of ``archive`` would be written outside the folder it is unpacked into.

    ``member`` is its name in the archive and ``reason`` what is wrong with it (an absolute
    path, a ``..`` component, a link pointing out, a device file).
    """

    def __init__(self, archive: Path | str, member: str, reason: str) -> None:
        self.archive = Path(archive)
        self.member = member
        self.reason = reason
        super().__init__(f"refusing {self.archive.name}: member {member!r} {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.archive, self.member, self.reason))


class InstallConflict(InstallError):
    """Installing ``plugin`` (``version``) would leave plugins unresolvable.

    ``failures`` maps each plugin that would fail to why (a ``ResolutionError``: usually a
    ``VersionConflict``, whose ``render()`` explains it with suggestions). ``explanation``,
    when given, is the message (the CLI's explanation of every failure, with suggestions).
    """

    def __init__(
        self,
        plugin: str,
        version: str,
        failures: dict[str, ResolutionError],
        explanation: str | None = None,
    ) -> None:
        self.plugin = plugin
        self.version = version
        self.failures = dict(failures)
        self.explanation = explanation
        names = ", ".join(sorted(self.failures))
        super().__init__(explanation or f"installing {plugin} v{version} would break: {names}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plugin, self.version, self.failures, self.explanation))


class InstallerFailed(InstallError):
    """pip, uv or git exited with ``returncode``; ``output`` holds the end of what it said."""

    def __init__(self, command: tuple[str, ...], returncode: int, output: str = "") -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.output = output
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "")
        tool = " ".join(self.command[:3]) if self.command else "installer"
        detail = f": {last.strip()}" if last else ""
        super().__init__(f"{tool} exited with status {returncode}{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.command, self.returncode, self.output))
