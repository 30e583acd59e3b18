"""The sandbox's part of the host configuration: ``[plugins.sandbox]`` and its overrides.

``SandboxConfig`` holds one plugin's limits and grants (``[plugins.sandbox]`` merged with
``[plugins.<name>.sandbox]``, a ``SandboxOverrides``); the field types shared by every
table of ``config.toml`` (paths made absolute, ``host:port`` patterns, seconds) live here
too. ``clawhost.config.host`` builds the whole ``HostConfig`` from them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
)

from clawhost.core.netrules import NetworkRule
from clawhost.discovery.manifest import NETWORK_PATTERN

__all__ = [
    "BadHostPattern",
    "ConfigPath",
    "HostList",
    "Isolation",
    "PathList",
    "PositiveInt",
    "SandboxConfig",
    "SandboxOverrides",
    "Seconds",
    "Section",
]


def _non_empty_path(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("an empty path")
    return value


def _absolute(value: Path, info: ValidationInfo) -> Path:
    # The loader passes the config file's folder; a model built in code resolves against
    # the working directory, as any relative path in Python would.
    context = info.context if isinstance(info.context, dict) else {}
    base = Path(context.get("base_dir") or Path.cwd())
    # normpath, not resolve(): symlinks are the sandbox's business, and the path may not
    # exist yet (a data directory created on first use).
    return Path(os.path.normpath(base / value.expanduser()))


class BadHostPattern(ValueError):
    """A ``net_allowed`` entry that is not a ``host:port`` pattern; says why."""


def _host_pattern(value: str) -> str:
    try:
        NetworkRule.parse(value)
    except ValueError as exc:
        # The reason without the value: it may have come from a secret variable.
        reason = str(exc).removeprefix(f"{value!r}: ").removeprefix(f"{value!r} ")
        raise BadHostPattern(reason) from None
    if re.fullmatch(NETWORK_PATTERN, value) is None:
        raise BadHostPattern("a host may hold only letters, digits, '.' and '-'")
    return value


# TOML is typed, so the models are strict ("4" is not an integer); a few fields relax it
# where the input is legitimately of another type (TOML arrays arrive as lists, paths as
# strings).
ConfigPath = Annotated[
    Path, Strict(False), BeforeValidator(_non_empty_path), AfterValidator(_absolute)
]
PathList = Annotated[tuple[ConfigPath, ...], Strict(False)]
HostList = Annotated[tuple[Annotated[str, AfterValidator(_host_pattern)], ...], Strict(False)]
Seconds = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(ge=1)]
#: Where a plugin's code runs: in the host's process, or in a worker process of its own.
Isolation = Literal["in-process", "process"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SandboxConfig(Section):
    """The limits and grants of one plugin (``[plugins.sandbox]``, merged with overrides).

    ``max_memory_mb`` is enforced only with ``isolation = "process"`` (``RLIMIT_AS`` on the
    plugin's worker process); in-process, the host only warns when it is set.

    ``max_cpu_time_secs`` is a CPU-time budget per call: ``RLIMIT_CPU`` on a worker process,
    and in-process (where a call's CPU time cannot be measured) a wall-clock deadline.
    ``max_wall_time_secs`` is the wall-clock deadline of every call; unset, it is
    ``max_cpu_time_secs``. See ``call_deadline``.
    """

    max_memory_mb: PositiveInt | None = None
    max_cpu_time_secs: Seconds = 30.0
    max_wall_time_secs: Seconds | None = None
    fs_allowed: PathList = ()
    net_allowed: HostList = ()
    allow_subprocess: bool = False
    max_concurrency: PositiveInt = 4
    isolation: Isolation = "in-process"
    #: With ``isolation = "process"``: start a plugin whose worker died again, waiting
    #: ``restart_backoff_secs`` (doubling up to ``restart_backoff_max_secs``) before each
    #: try, at most ``max_restarts`` times in a row.
    restart: bool = False
    restart_backoff_secs: Seconds = 5.0
    restart_backoff_max_secs: Seconds = 300.0
    max_restarts: PositiveInt = 10

    def call_deadline(self) -> float:
        """The wall-clock deadline of one call into plugin code, in seconds.

        In a worker process (``isolation = "process"``) CPU time is limited separately
        (``RLIMIT_CPU``), so the deadline is ``max_wall_time_secs``, or
        ``max_cpu_time_secs`` when that is unset. In-process a call's CPU time cannot be
        measured, so the CPU budget is enforced as wall time too: the smaller of the two.
        """
        wall = self.max_wall_time_secs
        if self.isolation == "process":
            return wall if wall is not None else self.max_cpu_time_secs
        return self.max_cpu_time_secs if wall is None else min(self.max_cpu_time_secs, wall)


class SandboxOverrides(Section):
    """``[plugins.<name>.sandbox]``: only the keys given replace ``[plugins.sandbox]``.

    A list given here replaces the default list; it does not extend it.
    """

    max_memory_mb: PositiveInt | None = None
    max_cpu_time_secs: Seconds | None = None
    max_wall_time_secs: Seconds | None = None
    fs_allowed: PathList | None = None
    net_allowed: HostList | None = None
    allow_subprocess: bool | None = None
    max_concurrency: PositiveInt | None = None
    isolation: Isolation | None = None
    restart: bool | None = None
    restart_backoff_secs: Seconds | None = None
    restart_backoff_max_secs: Seconds | None = None
    max_restarts: PositiveInt | None = None

    def apply_to(self, defaults: SandboxConfig) -> SandboxConfig:
        """``defaults`` with every key given here replaced."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        update = {name: value for name, value in given.items() if value is not None}
        return defaults.model_copy(update=update) if update else defaults
