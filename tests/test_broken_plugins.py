"""The broken-plugin zoo: every purpose-built broken plugin under ``tests/broken/`` fails
alone, with an error that names it, while a healthy plugin beside it keeps serving.

Each case is a folder holding the plugin (a directory plugin, several, or a real
distribution with a ``pyproject.toml``, built into a wheel and installed by pip) and an
``expect.toml`` saying which failure class it belongs to, what the host promises, at which
stage it must fail, and what the host must say about it. Adding a case is adding a folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest
from pydantic import BaseModel, ConfigDict, Field

from clawhost import (
    HostConfig,
    PluginHost,
    PluginState,
    disable_signal_interrupts,
    enable_signal_interrupts,
)
from clawhost.errors import ClawhostError, ReloadError

from ._site import directory_plugin
from .conftest import pip

BROKEN = Path(__file__).parent / "broken"
S = PluginState
DEADLINE = 0.5

#: The failure classes of the reliability issue that are plugins (install and
#: concurrency are tested in tests/test_reliability.py and tests/test_cli_install.py).
CLASSES = (
    "manifest",
    "entry points",
    "dependencies",
    "lifecycle",
    "registrations",
    "config",
    "hot reload",
    "permissions",
)

Stage = Literal["discover", "load", "resolve", "activate", "deactivate", "health", "call", "reload"]


class Make(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pad_bytes: int = 0
    nest_depth: int = 0
    symlinks: dict[str, str] = {}


class Expect(BaseModel):
    """One case's ``expect.toml``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    class_: str = Field(alias="class")
    promise: str
    stage: Stage
    state: Literal["failed", "active"] = "failed"
    plugins: list[str] = []
    messages: list[str] = []
    log_messages: list[str] = []
    absent: list[str] = []
    call: str | None = None
    signal_interrupts: bool = False
    after_deactivate_wait: float = 0.0
    host: dict[str, Any] = {}
    make: Make = Make()


class Case:
    def __init__(self, folder: Path) -> None:
        import tomllib

        self.folder = folder
        self.name = folder.name
        self.expect = Expect.model_validate(tomllib.loads((folder / "expect.toml").read_text()))
        self.plugins = self.expect.plugins or [self.name]
        self.is_distribution = (folder / "pyproject.toml").is_file()

    def __repr__(self) -> str:
        return self.name

    def plugin_folders(self) -> list[Path]:
        if self.is_distribution:
            return []
        if (self.folder / "plugin.toml").is_file():
            return [self.folder]
        return sorted(path.parent for path in self.folder.glob("*/plugin.toml"))


CASES = [Case(path.parent) for path in sorted(BROKEN.glob("*/expect.toml"))]
DIRECTORY_CASES = [case for case in CASES if not case.is_distribution]
DISTRIBUTION_CASES = [case for case in CASES if case.is_distribution]

CANARY = """
from clawhost import hookimpl, tool

HEARD = []

@tool
def canary_tool() -> str:
    \"\"\"Still here.\"\"\"
    return "tweet"

@hookimpl
def activate(ctx):
    ctx.register_tool(canary_tool)
    ctx.on_message_received(HEARD.append)
"""


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def broken_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every broken distribution built into a real wheel and installed by pip, each into a
    target directory of its own (so a case sees only its own distribution)."""
    wheels = tmp_path_factory.mktemp("broken-wheels")
    pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        wheels,
        *(case.folder for case in DISTRIBUTION_CASES),
    )
    sites: dict[str, Path] = {}
    installs = []
    for case in DISTRIBUTION_CASES:
        (wheel,) = wheels.glob(f"clawdesk_plugin_{case.name.replace('-', '_')}-*.whl")
        target = tmp_path_factory.mktemp(f"site-{case.name}")
        sites[case.name] = target
        installs.append(
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"),
                    *("--no-deps", "--no-index", "--target", str(target), str(wheel)),
                ],
                env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
            )
        )
    for install in installs:
        assert install.wait() == 0
    return sites


@pytest.fixture(autouse=True)
def _forget_broken_modules() -> Iterator[None]:
    """Each test imports the cases afresh, and leaves no broken site on ``sys.path`` (where
    importing a distribution's plugin put it) for later tests' hosts to discover."""
    path = list(sys.path)
    yield
    for name in [name for name in sys.modules if name.startswith(("broken_", "dirplugin_"))]:
        del sys.modules[name]
    sys.path[:] = path


def lay_out(case: Case, plugins: Path) -> list[Path]:
    """Copy a directory case into ``plugins``; returns the copied plugin folders."""
    copies = []
    for folder in case.plugin_folders():
        copy = plugins / (case.name if folder == case.folder else folder.name)
        shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("expect.toml", "reload"))
        make = case.expect.make
        manifest = copy / "plugin.toml"
        if make.pad_bytes:
            with manifest.open("a") as file:
                file.write("# " + "x" * make.pad_bytes + "\n")
        if make.nest_depth:
            with manifest.open("a") as file:
                file.write("\n[nested]\ndeep = " + "[" * make.nest_depth + "]" * make.nest_depth)
        for link, target in make.symlinks.items():
            (copy / link).symlink_to(target)
        copies.append(copy)
    return copies


def host_for(tmp_path: Path, cases: list[Case], sites: dict[str, Path], *extra: Path) -> PluginHost:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    directory_plugin(
        plugins,
        "canary",
        CANARY,
        sections={"caps": '[plugin.capabilities]\ntools = ["canary_tool"]'},
    )
    table: dict[str, Any] = {"sandbox": {"max_cpu_time_secs": DEADLINE}}
    if extra:  # the example plugins
        table["weather"] = {
            "config": {"api_key": "k"},
            "sandbox": {
                "net_allowed": ["api.openweathermap.org:443", "127.0.0.1:*", "localhost:*"]
            },
        }
    for case in cases:
        lay_out(case, plugins)
        table.update(case.expect.host)
    path = [str(sites[case.name]) for case in cases if case.is_distribution]
    return PluginHost(
        config=HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path),
        dirs=[plugins],
        path=[*path, *map(str, extra)],
        cache=False,
    )


def said_about(host: PluginHost, name: str) -> str:
    """Everything the host records about plugin ``name``: its failure and diagnostics."""
    record = host.plugins.get(name)
    lines = [str(d) for d in host.diagnostics if d.plugin == name]
    if record is not None:
        if record.failure is not None:
            lines.append(f"{record.failure.stage}: {record.failure.reason}")
        lines.extend(str(d) for d in record.diagnostics)
    return "\n".join(lines)


def diagnostics_from(host: PluginHost, folder: Path) -> str:
    """The diagnostics whose source lies in ``folder`` (a plugin with no usable name)."""
    return "\n".join(
        str(d) for d in host.diagnostics if str(folder) in d.source or str(folder) in str(d.file)
    )


async def canary_still_serves(host: PluginHost) -> None:
    assert host.plugins["canary"].state is S.ACTIVE
    assert await host.tools.invoke("canary_tool") == "tweet"
    report = await host.events.dispatch("on_message_received", message="hi")
    assert "canary" not in [failure.plugin for failure in report.failures]


def assert_consistent(host: PluginHost) -> None:
    """No registration is owned by a plugin that is not ACTIVE."""
    context = host.context
    for registry in (context.tools, context.channels, context.pipeline, context.providers):
        for item in registry.names():
            owner = registry.owner_of(item)
            assert owner is not None, item
            assert host.plugins[owner].state is S.ACTIVE, (item, owner)
    for event in context.events.events():
        for owner in context.events.handlers(event):
            assert host.plugins[owner].state is S.ACTIVE, (event, owner)


# -- one case at a time -----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=repr)
async def test_a_broken_plugin_fails_alone_and_says_why(
    case: Case,
    tmp_path: Path,
    broken_sites: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    expect = case.expect
    host = host_for(tmp_path, [case], broken_sites)
    if expect.signal_interrupts:
        enable_signal_interrupts()
    try:
        said = await run_case(case, host, tmp_path)
    finally:
        if expect.signal_interrupts:
            disable_signal_interrupts()
    for message in expect.messages:
        assert message in said, f"{case.name}: {message!r} not in:\n{said}"
    for message in expect.log_messages:
        assert message in caplog.text, f"{case.name}: {message!r} not in the log"
    everything = "\n".join([said, caplog.text, *(str(d) for d in host.diagnostics)])
    for secret in expect.absent:
        assert secret not in everything, f"{case.name}: {secret!r} leaked"
    assert not any(not host.context.registrations(name).is_empty() for name in host.plugins)


async def run_case(case: Case, host: PluginHost, tmp_path: Path) -> str:
    """Start the host with the case beside the canary, drive the case's stage, and return
    what the host said about it."""
    expect = case.expect
    name = case.plugins[-1]
    with anyio.fail_after(30):
        async with host:
            await canary_still_serves(host)
            assert_consistent(host)
            said = "\n".join(said_about(host, plugin) for plugin in case.plugins)
            if expect.stage == "discover":
                said += "\n" + diagnostics_from(host, tmp_path / "plugins" / case.name)
                for plugin in case.plugins:
                    record = host.plugins.get(plugin)
                    assert record is None or record.state is S.FAILED, (plugin, record)
                assert said.strip(), f"{case.name}: nothing was reported"
            elif expect.stage in ("load", "resolve", "activate"):
                record = host.plugins[name]
                wanted = S.FAILED if expect.state == "failed" else S.ACTIVE
                assert record.state is wanted, (record, said)
                if wanted is S.FAILED:
                    assert record.failure is not None
                    assert record.failure.stage == expect.stage, record.failure
            else:
                assert host.plugins[name].state is S.ACTIVE, said_about(host, name)
                said += "\n" + await drive(case, host, name)
            await canary_still_serves(host)
            assert_consistent(host)
    return said


async def drive(case: Case, host: PluginHost, name: str) -> str:
    """The stages that need the plugin active first."""
    expect = case.expect
    if expect.stage == "deactivate":
        started = time.monotonic()
        await host.deactivate(name)
        assert time.monotonic() - started < DEADLINE * 4
        assert host.plugins[name].state is S.INACTIVE
        await anyio.sleep(expect.after_deactivate_wait)
        assert host.context.registrations(name).is_empty()
        return said_about(host, name)
    if expect.stage == "health":
        report = await host.health_check(name, limit=DEADLINE)
        assert not report.healthy
        return f"{report.reason}"
    if expect.stage == "call":
        assert expect.call is not None
        with pytest.raises(ClawhostError) as caught:
            await host.tools.invoke(expect.call)
        chain = [caught.value, caught.value.__cause__]
        assert host.plugins[name].state is S.ACTIVE  # a refused call does not fail the plugin
        return "\n".join(f"{type(error).__name__}: {error}" for error in chain if error)
    assert expect.stage == "reload"
    assert expect.call is not None
    before = await host.tools.invoke(expect.call)
    (folder,) = case.plugin_folders()
    copy = host.plugins[name].plugin
    assert copy is not None
    assert copy.package_dir is not None
    for new in (folder / "reload").iterdir():
        target = Path(copy.package_dir) / new.name
        target.write_bytes(new.read_bytes())
        os.utime(target, (time.time() + 5, time.time() + 5))
    with pytest.raises(ReloadError) as caught:
        await host.reload(name)
    assert host.plugins[name].state is S.ACTIVE
    assert await host.tools.invoke(expect.call) == before  # the old version still answers
    return str(caught.value)


# -- all of them at once ----------------------------------------------------------------------


async def test_every_broken_plugin_at_once_leaves_the_good_ones_serving(
    tmp_path: Path, broken_sites: dict[str, Path], installed_examples: Path
) -> None:
    host = host_for(
        tmp_path,
        [case for case in CASES if not case.expect.signal_interrupts],
        broken_sites,
        installed_examples,
    )
    with anyio.fail_after(60):
        async with host:
            await canary_still_serves(host)
            assert_consistent(host)
            for good in ("weather", "geocoding", "rulebot"):
                assert host.plugins[good].state is S.ACTIVE, said_about(host, good)
            place = await host.tools.invoke("geocode", {"place": "Paris"})
            assert place["country"] == "FR"
            for case in CASES:
                if case.expect.signal_interrupts:
                    continue
                wanted = (
                    S.ACTIVE
                    if case.expect.stage in ("deactivate", "health", "call", "reload")
                    or case.expect.state == "active"
                    else S.FAILED
                )
                for plugin in case.plugins if wanted is S.FAILED else case.plugins[-1:]:
                    record = host.plugins.get(plugin)
                    if record is None:
                        assert case.expect.stage == "discover", plugin
                        continue
                    assert record.state is wanted, (plugin, said_about(host, plugin))
    assert_consistent(host)
    assert all(host.context.registrations(name).is_empty() for name in host.plugins)


def test_every_failure_class_has_cases() -> None:
    counts = {name: sum(case.expect.class_ == name for case in CASES) for name in CLASSES}
    assert all(counts.values()), counts
    assert {case.expect.class_ for case in CASES} <= set(CLASSES)
