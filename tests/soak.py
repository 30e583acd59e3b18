"""The soak test: a host under continuous concurrent tool calls and events while plugins
are reloaded, disabled, re-enabled, deactivated and made to fail.

Run it for as long as you like (``nox -s soak`` runs five minutes)::

    python -m tests.soak --seconds 300 --json soak.json

``tests/test_soak.py`` runs a short version in every test run. The report counts calls
made, calls that failed for a reason the chaos explains (the plugin was disabled, the tool
raises by design) and calls that failed when they should not have; reloads done and rolled
back; and the registry consistency checks: no registration without an ACTIVE owner, and no
registration left once the host has stopped. The targets are zero unexpected failures and
zero leaked registrations.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel

from clawhost import HostConfig, PluginHost, PluginState
from clawhost.errors import (
    ClawhostError,
    IllegalTransition,
    PluginFailed,
    ReloadError,
    ToolFailed,
    ToolNotFound,
)

S = PluginState

#: The plugins that come and go; "base" also takes "mid" (its dependent) with it.
STEADY = ("alpha", "beta", "gamma")
FLAKY = "flaky"

PLUGIN = '''
import anyio
from clawhost import hookimpl, tool

MARK = {mark}


@tool
async def {tool}(x: int) -> int:
    """Add this version's mark to x."""
    await anyio.sleep(0)
    return x + MARK


@tool
def {tool}_sync(x: int) -> int:
    """The same, as a sync tool (runs in a worker thread)."""
    return x + MARK


def heard(message):
    return None


def stage(message):
    return message


@hookimpl
def activate(ctx):
    ctx.register_tool({tool})
    ctx.register_tool({tool}_sync)
    ctx.on_message_received(heard)
    ctx.register_pipeline_stage("{tool}_stage", stage)
'''

FLAKY_CODE = '''
from clawhost import hookimpl, tool

MARK = {mark}


@tool
def flaky_tool(x: int) -> int:
    """Fail on multiples of seven, by design."""
    if x % 7 == 0:
        raise ValueError(f"{{x}} is a multiple of seven")
    return x + MARK


@hookimpl
def activate(ctx):
    ctx.register_tool(flaky_tool)
'''

BROKEN_FLAKY = """
from clawhost import hookimpl


@hookimpl
def activate(ctx):
    raise RuntimeError("this version is broken")
"""


def manifest(name: str, tools: list[str], stages: list[str], depends: str | None = None) -> str:
    text = f'[plugin]\nname = "{name}"\nversion = "1.0.0"\nentry = "soak_{name}"\n'
    text += f"\n[plugin.capabilities]\ntools = {json.dumps(tools)}\n"
    if stages:
        text += f"pipeline_stages = {json.dumps(stages)}\n"
    if depends:
        text += f'\n[plugin.dependencies]\n{depends} = ">=1"\n'
    return text


@dataclass
class Report:
    seconds: float = 0.0
    calls: int = 0
    calls_ok: int = 0
    calls_failed_expected: int = 0
    calls_failed_unexpected: int = 0
    stale_results: int = 0
    events: int = 0
    handler_failures_unexpected: int = 0
    reloads: int = 0
    reloads_rolled_back: int = 0
    disables: int = 0
    enables: int = 0
    deactivations: int = 0
    activations: int = 0
    arrivals: int = 0
    departures: int = 0
    consistency_checks: int = 0
    consistency_violations: int = 0
    leaked_registrations: int = 0
    operations: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.calls_failed_unexpected == 0
            and self.stale_results == 0
            and self.handler_failures_unexpected == 0
            and self.consistency_violations == 0
            and self.leaked_registrations == 0
            and self.calls_ok > 0
        )

    def problem(self, text: str) -> None:
        if len(self.first_errors) < 20:
            self.first_errors.append(text)


class Soak:
    """One soak run in a folder of directory plugins."""

    def __init__(self, root: Path, *, seed: int, callers: int) -> None:
        self.root = root
        self.random = random.Random(seed)
        self.callers = callers
        self.report = Report()
        self.marks: dict[str, int] = {}
        #: the mark a call must see at least (raised once a reload has returned)
        self.committed: dict[str, int] = {}
        #: per plugin: how many chaos operations touching its availability have begun
        self.epoch: Counter[str] = Counter()
        self.available: dict[str, bool] = {}
        self.plugins = root / "plugins"
        for index, name in enumerate((*STEADY, "base", "mid")):
            self._write(name, 1000 * (index + 1))
        self._write(FLAKY, 9000)

    # -- the plugins on disk ----------------------------------------------------------------

    def _tool(self, name: str) -> str:
        return "flaky_tool" if name == FLAKY else f"{name}_tool"

    def _write(self, name: str, mark: int, *, broken: bool = False) -> None:
        folder = self.plugins / name
        folder.mkdir(parents=True, exist_ok=True)
        tool = self._tool(name)
        if name == FLAKY:
            tools, stages = [tool], []
            code = BROKEN_FLAKY if broken else FLAKY_CODE.format(mark=mark)
        else:
            tools, stages = [tool, f"{tool}_sync"], [f"{tool}_stage"]
            code = PLUGIN.format(mark=mark, tool=tool)
        depends = "base" if name == "mid" else None
        (folder / "plugin.toml").write_text(manifest(name, tools, stages, depends), "utf-8")
        module = folder / f"soak_{name}.py"
        module.write_text(textwrap.dedent(code), "utf-8")
        stamp = time.time() + len(self.marks) + 1  # always a new stamp, even within a second
        os.utime(module, (stamp, stamp))
        if not broken:
            self.marks[name] = mark
            self.committed.setdefault(name, mark)
        self.available.setdefault(name, True)

    # -- checks -----------------------------------------------------------------------------

    def check(self, host: PluginHost) -> None:
        """No registration without an ACTIVE owner; every ACTIVE plugin has its tools."""
        report = self.report
        report.consistency_checks += 1
        context = host.context
        owners: list[tuple[str, str | None]] = []
        for registry in (context.tools, context.channels, context.pipeline, context.providers):
            owners.extend((item, registry.owner_of(item)) for item in registry.names())
        for event in context.events.events():
            owners.extend((event, owner) for owner in context.events.handlers(event))
        for item, owner in owners:
            record = host.plugins.get(owner) if owner else None
            if record is None or record.state is not S.ACTIVE:
                report.consistency_violations += 1
                report.problem(f"{item!r} registered by {owner!r}, which is not ACTIVE")
        for name, record in host.plugins.items():
            if record.state is S.ACTIVE and self._tool(name) not in context.tools:
                report.consistency_violations += 1
                report.problem(f"{name} is ACTIVE without its tool")

    # -- the load ---------------------------------------------------------------------------

    async def caller(self, host: PluginHost, stop: anyio.Event) -> None:
        names = [*STEADY, "base", "mid", FLAKY]
        report = self.report
        while not stop.is_set():
            name = self.random.choice(names)
            tool = self._tool(name)
            if name != FLAKY and self.random.random() < 0.3:
                tool += "_sync"
            x = self.random.randrange(1, 10_000)
            epoch, was_available = self.epoch[name], self.available[name]
            floor = self.committed[name]
            report.calls += 1
            try:
                result = await host.tools.invoke(tool, {"x": x})
            except (ToolNotFound, PluginFailed, ToolFailed) as exc:
                disturbed = not was_available or epoch != self.epoch[name]
                by_design = isinstance(exc, ToolFailed) and name == FLAKY and x % 7 == 0
                if disturbed or by_design:
                    report.calls_failed_expected += 1
                else:
                    report.calls_failed_unexpected += 1
                    report.problem(f"{tool}({x}): {type(exc).__name__}: {exc}")
            except ClawhostError as exc:
                report.calls_failed_unexpected += 1
                report.problem(f"{tool}({x}): {type(exc).__name__}: {exc}")
            else:
                report.calls_ok += 1
                if result - x < floor:
                    report.stale_results += 1
                    report.problem(f"{tool}({x}) answered with mark {result - x} < {floor}")
            await anyio.lowlevel.checkpoint()

    async def dispatcher(self, host: PluginHost, stop: anyio.Event) -> None:
        report = self.report
        while not stop.is_set():
            epochs = dict(self.epoch)
            dispatched = await host.events.dispatch("on_message_received", message="soak")
            processed = await host.pipeline.process({"text": "soak"})
            report.events += 1
            failures = [(failure.plugin, repr(failure.error)) for failure in dispatched.failures]
            if processed.message is None:  # a stage dropped it: stages here never do
                stage = processed.dropped_by or "?"
                failures.append((stage.removesuffix("_tool_stage"), repr(processed.error)))
            for plugin, error in failures:
                if self.epoch[plugin] == epochs.get(plugin, 0) and self.available.get(plugin):
                    report.handler_failures_unexpected += 1
                    report.problem(f"handler of {plugin}: {error}")
            await anyio.sleep(0.001)

    # -- the chaos --------------------------------------------------------------------------

    async def chaos(self, host: PluginHost, stop: anyio.Event) -> None:
        report = self.report
        operations: Counter[str] = Counter()
        while not stop.is_set():
            operation = self.random.choice(
                ["reload", "reload", "disable", "deactivate", "break", "reload_base", "guest"]
            )
            operations[operation] += 1
            if operation in ("reload", "reload_base"):
                name = "base" if operation == "reload_base" else self.random.choice(STEADY)
                await self._reload(host, name)
            elif operation == "break":
                await self._break_flaky(host)
            elif operation == "guest":
                await self._guest(host)
            else:
                name = self.random.choice([*STEADY, "base"])
                await self._off_and_on(host, name, disable=operation == "disable")
            self.check(host)
            await anyio.sleep(self.random.uniform(0.01, 0.05))
        report.operations = dict(operations)

    async def _reload(self, host: PluginHost, name: str) -> None:
        mark = self.marks[name] + 1
        self._write(name, mark)
        await host.reload(name)  # calls are held, not failed: the epoch does not move
        self.committed[name] = mark
        self.report.reloads += 1

    async def _break_flaky(self, host: PluginHost) -> None:
        old = self.marks[FLAKY]
        self._write(FLAKY, old, broken=True)
        try:
            await host.reload(FLAKY)
        except ReloadError:
            self.report.reloads_rolled_back += 1
        else:
            self.report.problem("a broken version of flaky reloaded without error")
            self.report.calls_failed_unexpected += 1
        self._write(FLAKY, old + 1)  # fixed again
        await host.reload(FLAKY)
        self.committed[FLAKY] = old + 1
        self.report.reloads += 1

    async def _guest(self, host: PluginHost) -> None:
        """A plugin folder dropped in and taken out again while the load runs: no call to
        another plugin may notice."""
        name = f"guest{self.report.arrivals + 1}"
        folder = self.plugins / name
        folder.mkdir()
        tool = f"{name}_tool"
        (folder / "plugin.toml").write_text(manifest(name, [tool, f"{tool}_sync"], []), "utf-8")
        code = PLUGIN.format(mark=1, tool=tool).replace("ctx.register_pipeline_stage", "# ")
        (folder / f"soak_{name}.py").write_text(textwrap.dedent(code), "utf-8")
        report = await host.rescan()
        if report.added != (name,) or host.plugins[name].state is not S.ACTIVE:
            self.report.problem(f"{name} did not arrive: {report}")
            self.report.consistency_violations += 1
        elif await host.tools.invoke(tool, {"x": 1}) != 2:
            self.report.problem(f"{name} answered wrong")
            self.report.consistency_violations += 1
        self.report.arrivals += 1
        self.check(host)
        shutil.rmtree(folder)
        report = await host.rescan()
        if report.removed != (name,) or name in host.plugins or tool in host.tools.names():
            self.report.problem(f"{name} did not leave: {report}")
            self.report.consistency_violations += 1
        self.report.departures += 1

    async def _off_and_on(self, host: PluginHost, name: str, *, disable: bool) -> None:
        touched = [name, "mid"] if name == "base" else [name]
        for item in touched:
            self.available[item] = False
            self.epoch[item] += 1
        try:
            if disable:
                await host.disable(name)
                self.report.disables += 1
            elif host.plugins[name].state is S.ACTIVE:
                await host.deactivate(name)
                self.report.deactivations += 1
            self.check(host)
            await anyio.sleep(self.random.uniform(0.01, 0.05))  # calls meet it switched off
            if disable:
                await host.enable(name)
                self.report.enables += 1
            for item in touched:
                if host.plugins[item].state is not S.ACTIVE:
                    await host.activate(item)
                    self.report.activations += 1
        except IllegalTransition as exc:
            self.report.problem(f"chaos on {name}: {exc}")
            self.report.consistency_violations += 1
        finally:
            for item in touched:
                self.epoch[item] += 1
                self.available[item] = host.plugins[item].state is S.ACTIVE

    # -- the run ----------------------------------------------------------------------------

    async def run(self, seconds: float) -> Report:
        config = HostConfig.from_mapping(
            {"plugins": {"sandbox": {"max_cpu_time_secs": 5.0, "max_concurrency": 8}}},
            base_dir=self.root,
        )
        host = PluginHost(config=config, dirs=[self.plugins], path=[], cache=False)
        started = time.perf_counter()
        async with host:
            self.check(host)
            stop = anyio.Event()
            async with anyio.create_task_group() as group:
                for _ in range(self.callers):
                    group.start_soon(self.caller, host, stop)
                group.start_soon(self.dispatcher, host, stop)
                group.start_soon(self.chaos, host, stop)
                await anyio.sleep(seconds)
                stop.set()
            self.check(host)
        self.report.seconds = round(time.perf_counter() - started, 2)
        self.report.leaked_registrations = sum(
            len(items)
            for name in host.plugins
            for items in host.context.registrations(name).as_dict().values()
        )
        return self.report


def soak(seconds: float, *, seed: int = 0, callers: int = 8) -> Report:
    """Run one soak for ``seconds`` in a throw-away folder and return its report."""
    with tempfile.TemporaryDirectory(prefix="clawhost-soak-") as folder:
        runner = Soak(Path(folder), seed=seed, callers=callers)
        try:
            return anyio.run(runner.run, seconds)
        finally:
            for name in [name for name in sys.modules if name.startswith("soak_")]:
                del sys.modules[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--callers", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the report here")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the chaos makes plugins fail on purpose
    report = soak(options.seconds, seed=options.seed, callers=options.callers)
    data = {**asdict(report), "ok": report.ok}
    text = json.dumps(data, indent=2)
    print(text)
    if options.json:
        options.json.parent.mkdir(parents=True, exist_ok=True)
        options.json.write_text(text + "\n", "utf-8")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
