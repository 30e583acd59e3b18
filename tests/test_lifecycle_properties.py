"""Random lifecycle sequences keep the registries consistent with the plugin states.

A hypothesis state machine drives a real PluginHost (directory plugins on disk, a
dependency chain ``base <- mid <- top``, ``base <- side``, and an independent ``solo``)
through enable / disable / activate / deactivate / reload, some plugins broken from the
start and sources broken and fixed on disk in between. After every step: no registration
without an ACTIVE owner, every ACTIVE plugin has exactly what its code registers and runs
the module imported for it, a DISABLED plugin has nothing, and no plugin is ACTIVE
without its dependencies. Illegal requests raise ``IllegalTransition`` and change
nothing; a failed reload rolls back to the old version, which keeps serving.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from clawhost import HostConfig, Message, PluginHost, PluginState
from clawhost.errors import (
    ClawhostError,
    IllegalTransition,
    PluginFailed,
    PluginNotFound,
    ReloadError,
    ResolutionError,
    ToolError,
)
from clawhost.runtime.context import Registrations

from ._site import directory_plugin

S = PluginState


# -- the plugins ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One plugin of the world: what it requires and what its good code registers."""

    name: str
    requires: tuple[str, ...] = ()
    #: (kind, name, the ``ctx`` call registering it) of one capability besides the tool
    extra: tuple[str, str, str] | None = None

    @property
    def tool(self) -> str:
        return f"{self.name}_tool"

    def registrations(self) -> Registrations:
        """What the good code registers (the events: one handler, one entry)."""
        kind, name, _ = self.extra if self.extra else ("", "", "")
        return Registrations(
            tools=(self.tool,),
            channels=(name,) if kind == "channels" else (),
            pipeline_stages=(name,) if kind == "pipeline_stages" else (),
            providers=(name,) if kind == "providers" else (),
            events=("on_message_received",),
        )

    def sections(self) -> dict[str, str]:
        capabilities = f'[plugin.capabilities]\ntools = ["{self.tool}"]\n'
        if self.extra:
            kind, name, _ = self.extra
            capabilities += f'{kind} = ["{name}"]\n'
        sections = {"caps": capabilities}
        if self.requires:
            body = "".join(f'{dep} = "^1"\n' for dep in self.requires)
            sections["deps"] = f"[plugin.dependencies]\n{body}"
        return sections

    def source(self, kind: str, gen: int) -> str:
        """The module's source: good (answering ``name:gen``) or broken in one way."""
        if kind == "syntax":
            return f'KIND = "syntax"\nGEN = {gen}\n\ndef broken(:\n    pass\n'
        lines = [
            "from clawhost import hookimpl, tool",
            "",
            f"KIND = {kind!r}",
            f"GEN = {gen}",
            "SEEN = []",
            "",
            "",
            "@tool",
            f"def {self.tool}() -> str:",
            '    """Say which plugin, and which generation of its code, answered."""',
            f'    return "{self.name}:{gen}"',
            "",
            "",
            "@tool",
            "def sneaky() -> str:",
            '    """A tool the manifest does not declare."""',
            '    return "sneaky"',
            "",
            "",
            "def _seen(message):",
            "    SEEN.append(message)",
            "",
            "",
            "@hookimpl",
            "def activate(ctx):",
            f"    ctx.register_tool({self.tool})",
            "    ctx.on_message_received(_seen)",
        ]
        if self.extra:
            lines.append(f"    {self.extra[2]}")
        if kind == "activate_raises":
            lines.append(f'    raise RuntimeError("{self.name} v{gen} is broken")')
        elif kind == "undeclared":
            lines.append("    ctx.register_tool(sneaky)")
        else:
            assert kind == "good", kind
        return "\n".join(lines) + "\n"


PROVIDER = 'ctx.register_provider("base_provider", lambda: GEN)'
STAGE = 'ctx.register_pipeline_stage("top_stage", lambda message: message)'
CHANNEL = 'ctx.register_channel_factory("solo_channel", lambda config: config)'
SPECS = {
    spec.name: spec
    for spec in (
        Spec("base", extra=("providers", "base_provider", PROVIDER)),
        Spec("mid", ("base",)),
        Spec("top", ("mid",), extra=("pipeline_stages", "top_stage", STAGE)),
        Spec("side", ("base",)),
        Spec("solo", extra=("channels", "solo_channel", CHANNEL)),
    )
}
NAMES = sorted(SPECS)
BREAKAGES = ["activate_raises", "syntax", "undeclared"]
TRANSITIONAL = (S.ACTIVATING, S.DEACTIVATING)


def dependents_of(name: str) -> set[str]:
    """Every plugin requiring ``name``, directly or not."""
    found: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        for other, spec in SPECS.items():
            if current in spec.requires and other not in found:
                found.add(other)
                pending.append(other)
    return found


@dataclass(frozen=True)
class Snapshot:
    """Everything a step may change: states, failures, registrations, loaded code."""

    states: dict[str, PluginState]
    failures: dict[str, tuple[str, str] | None]
    registered: dict[str, Registrations]
    tools: tuple[str, ...]
    declared: tuple[tuple[str, str, bool], ...]
    modules: dict[str, int | None]

    @property
    def active(self) -> set[str]:
        return {name for name, state in self.states.items() if state is S.ACTIVE}


# -- the machine ------------------------------------------------------------------------------


class LifecycleMachine(RuleBasedStateMachine):
    """A host over the plugins on disk, and a model of what is on disk and what is imported.

    ``disk[name]`` is the source on disk (kind, generation); ``loaded[name]`` the source of
    the module in ``sys.modules`` (None before its first import). Every host operation is
    watched: a module may only appear by importing what is on disk, be replaced only by a
    successful reload of its plugin, and never vanish.
    """

    def __init__(self) -> None:
        super().__init__()
        self._stack = ExitStack()
        try:
            self._set_up()
        except BaseException:
            self._stack.close()
            raise

    def _set_up(self) -> None:
        root = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="clawhost-")))
        self.plugins_dir = root / "plugins"
        self.files: dict[str, Path] = {}
        self.disk: dict[str, tuple[str, int]] = {}
        self.loaded: dict[str, tuple[str, int] | None] = dict.fromkeys(NAMES)
        self.generations = 0
        self._stamp = int(time.time())
        for name, spec in SPECS.items():
            folder = directory_plugin(
                self.plugins_dir, name, spec.source("good", 0), sections=spec.sections()
            )
            (self.files[name],) = folder.glob("*.py")
            self.write(name, "good", 0)
        self.portal: BlockingPortal = self._stack.enter_context(start_blocking_portal())
        self._stack.callback(self._forget_imports)
        config = HostConfig.from_mapping(
            {"plugins": {"sandbox": {"max_cpu_time_secs": 10.0}}}, base_dir=root
        )

        def new_host() -> PluginHost:  # built on the event loop's thread
            return PluginHost(
                config=config, dirs=[self.plugins_dir], path=[], cache=False, lazy=False
            )

        self.host = self.portal.call(new_host)
        self._stack.callback(self.portal.call, self.host.stop)

    def _forget_imports(self) -> None:
        """Leave sys.modules and sys.path as they were (each machine has its own modules)."""
        for path in self.files.values():
            sys.modules.pop(path.stem, None)
        prefix = os.fspath(self.plugins_dir)
        sys.path[:] = [entry for entry in sys.path if not entry.startswith(prefix)]
        for entry in [entry for entry in sys.path_importer_cache if entry.startswith(prefix)]:
            del sys.path_importer_cache[entry]

    @initialize(
        broken=st.dictionaries(st.sampled_from(NAMES), st.sampled_from(BREAKAGES), max_size=2)
    )
    def start(self, broken: dict[str, str]) -> None:
        """Start the host, some plugins broken from the start: they and their dependents
        fail, everything else is active."""
        for name, kind in sorted(broken.items()):
            self.write(name, kind, 0)
        error = self.run("start", None, frozenset(NAMES), self.host.start)
        assert error is None, error

        def comes_up(name: str) -> bool:
            return self.disk[name][0] == "good" and all(map(comes_up, SPECS[name].requires))

        expected = {name for name in NAMES if comes_up(name)}
        after = self.snapshot()
        assert after.active == expected, after.states
        assert all(after.states[name] is S.FAILED for name in set(NAMES) - expected)

    def teardown(self) -> None:
        self.close(check=True)

    def close(self, *, check: bool) -> None:
        """Stop the host (checking it leaves nothing behind) and release everything."""
        try:
            if check:
                self.portal.call(self.host.stop)
                after = self.snapshot()
                assert after.active == set(), after.states
                assert all(r.is_empty() for r in after.registered.values()), after.registered
                assert after.tools == ()
                assert self.host.events.events() == []
        finally:
            self._stack.close()

    # -- helpers ------------------------------------------------------------------------------

    def state(self, name: str) -> PluginState:
        return self.host.plugins[name].state

    def module(self, name: str) -> ModuleType | None:
        module = sys.modules.get(self.files[name].stem)
        return module if isinstance(module, ModuleType) else None

    def attempt(
        self,
        function: Callable[[str], Awaitable[object]],
        name: str,
        fresh: frozenset[str] = frozenset(),
    ) -> ClawhostError | None:
        """Run a host operation on a plugin (see ``run``), counting its outcomes as
        hypothesis events (``--hypothesis-show-statistics``)."""
        record = self.host.plugins.get(name)
        label = f"{function.__name__}({record.state.name if record else name})"
        error = self.run(function.__name__, name, fresh, function, name)
        if currently_in_test_context():
            event(f"{label} -> {type(error).__name__ if error else 'ok'}")
        return error

    def run(
        self,
        operation: str,
        name: str | None,
        fresh: frozenset[str],
        function: Callable[..., Awaitable[object]],
        *args: Any,
    ) -> ClawhostError | None:
        """Run a host coroutine and return the clawhost error it raised (anything else
        fails the test), checking what it did to the plugins' modules: only a successful
        reload, or loading a plugin afresh (``fresh``), may replace one."""
        before = {plugin: self.module(plugin) for plugin in NAMES}
        error: ClawhostError | None = None
        try:
            self.portal.call(function, *args)
        except ClawhostError as raised:
            error = raised
        for plugin, old in before.items():
            new = self.module(plugin)
            if new is old:
                continue
            where = f"{operation}({name or ''}) -> {error!r}"
            reloaded = operation == "reload" and plugin == name and error is None
            if new is None:  # forgotten: by a reload that does not activate, after a
                # failed activation (so that a fix is imported next time), or for good
                # (disabled: a closed or disabling host leaves no module behind)
                state = self.host.plugins[plugin].state
                assert (reloaded and state is S.RESOLVED) or state in (S.FAILED, S.DISABLED), (
                    f"{where} dropped the module of {plugin}"
                )
                self.loaded[plugin] = None
                continue
            replaced = reloaded or plugin in fresh
            assert old is None or replaced, f"{where} replaced the module of {plugin}"
            found = (getattr(new, "KIND", None), getattr(new, "GEN", None))
            assert found == self.disk[plugin], f"{where} imported {found} of {plugin}, not disk"
            self.loaded[plugin] = self.disk[plugin]
        return error

    def snapshot(self) -> Snapshot:
        records = self.host.plugins
        return Snapshot(
            states={name: record.state for name, record in records.items()},
            failures={
                name: (record.failure.stage, record.failure.reason) if record.failure else None
                for name, record in records.items()
            },
            registered={name: self.host.context.registrations(name) for name in records},
            tools=tuple(self.host.tools.names()),
            declared=tuple((i.name, i.plugin, i.registered) for i in self.host.tools.list()),
            modules={
                name: id(module) if (module := self.module(name)) is not None else None
                for name in NAMES
            },
        )

    def good_code(self, name: str, *, fresh: bool) -> bool | None:
        """Whether an activation of ``name`` runs good code: the module imported already,
        else the source on disk. None if that is unclear: when a plugin is loaded ``fresh``
        (enable) and its module and its source disagree, it may take either."""
        on_disk = self.disk[name][0] == "good"
        loaded = self.loaded[name]
        if loaded is None:
            return on_disk
        imported = loaded[0] == "good"
        return None if fresh and imported != on_disk else imported

    def comes_up(self, name: str, retried: frozenset[str] = frozenset()) -> bool | None:
        """Whether activating ``name`` (its dependencies first) must succeed (True), must
        fail (False), or may do either (None). ``retried`` are the plugins the operation
        loads again although they failed or are disabled."""
        state = self.state(name)
        if state is S.ACTIVE:
            return True
        if state not in (S.RESOLVED, S.INACTIVE) and name not in retried:
            return False
        outcomes = [self.good_code(name, fresh=name in retried)]
        outcomes += [self.comes_up(dep, retried) for dep in SPECS[name].requires]
        if False in outcomes:
            return False
        return None if None in outcomes else True

    def failed_for_want_of_a_dependency(self, name: str) -> bool:
        """What ``enable`` retries: a plugin that failed resolution or activation because
        of a dependency."""
        failure = self.host.plugins[name].failure
        return (
            self.state(name) is S.FAILED
            and failure is not None
            and failure.stage in ("resolve", "activate")
            and isinstance(failure.error, ResolutionError)
        )

    def write(self, name: str, kind: str, gen: int) -> None:
        """Rewrite a plugin's module source, with a new whole-second mtime so that cached
        bytecode can never look fresh."""
        self.files[name].write_text(SPECS[name].source(kind, gen), "utf-8")
        self.disk[name] = (kind, gen)
        self._stamp += 2
        os.utime(self.files[name], (self._stamp, self._stamp))

    def invoke(self, tool: str) -> Any:
        return self.portal.call(self.host.tools.invoke, tool)

    def check_answers(self, name: str) -> None:
        loaded = self.loaded[name]
        assert loaded is not None
        assert self.invoke(SPECS[name].tool) == f"{name}:{loaded[1]}"

    # -- rules --------------------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def activate(self, name: str) -> None:
        before = self.snapshot()
        if before.states[name] in (S.ACTIVE, S.FAILED, S.DISABLED):
            error = self.attempt(self.host.activate, name)
            assert isinstance(error, IllegalTransition), error
            assert self.snapshot() == before
            return
        expected = self.comes_up(name)
        error = self.attempt(self.host.activate, name)
        after = self.snapshot()
        assert before.active <= after.active  # activating never deactivates anything
        if expected:
            assert error is None, error
            assert after.states[name] is S.ACTIVE
            self.check_answers(name)
        elif expected is False:
            assert isinstance(error, PluginFailed), error
            assert after.states[name] is S.FAILED

    @rule(name=st.sampled_from(NAMES))
    def deactivate(self, name: str) -> None:
        before = self.snapshot()
        error = self.attempt(self.host.deactivate, name)
        after = self.snapshot()
        if before.states[name] is not S.ACTIVE:
            assert isinstance(error, IllegalTransition), error
            assert after == before
            return
        assert error is None, error
        assert after.states[name] is S.INACTIVE
        for other in NAMES:
            if other in dependents_of(name):
                assert after.states[other] is not S.ACTIVE, other
            elif other != name:  # nothing else moves
                assert after.states[other] is before.states[other], other

    @rule(name=st.sampled_from(NAMES))
    def disable(self, name: str) -> None:
        before = self.snapshot()
        error = self.attempt(self.host.disable, name)
        after = self.snapshot()
        assert error is None, error
        if before.states[name] is S.DISABLED:
            assert after == before
            return
        assert after.states[name] is S.DISABLED
        dependents = dependents_of(name)
        for other in NAMES:
            if other in dependents:
                assert after.states[other] in (S.FAILED, S.DISABLED), (other, after.states)
            elif other != name:
                assert (other in after.active) == (other in before.active), other
                assert after.registered[other] == before.registered[other], other

    @rule(name=st.sampled_from(NAMES))
    def enable(self, name: str) -> None:
        before = self.snapshot()
        if before.states[name] is not S.DISABLED:
            assert self.attempt(self.host.enable, name) is None
            assert self.snapshot() == before
            return
        retried = frozenset(
            {name} | {other for other in NAMES if self.failed_for_want_of_a_dependency(other)}
        )
        expected = self.comes_up(name, retried)
        revived = {
            other for other in dependents_of(name) & retried if self.comes_up(other, retried)
        }
        error = self.attempt(self.host.enable, name, fresh=retried)
        after = self.snapshot()
        assert before.active <= after.active
        assert after.states[name] is not S.DISABLED
        if expected:
            assert error is None, error
            assert after.states[name] is S.ACTIVE
            assert revived <= after.active, (revived, after.states)  # they failed without it
        elif expected is False:
            assert isinstance(error, PluginFailed), error
            assert after.states[name] is S.FAILED

    @rule(name=st.sampled_from(NAMES))
    def reload(self, name: str) -> None:
        before = self.snapshot()
        if before.states[name] is S.DISABLED:
            error = self.attempt(self.host.reload, name)
            assert isinstance(error, IllegalTransition), error
            assert self.snapshot() == before
            return
        kind = self.disk[name][0]
        was_active = before.states[name] is S.ACTIVE
        activates = was_active or before.states[name] is S.FAILED
        dependencies_up = all(self.comes_up(dep) for dep in SPECS[name].requires)
        error = self.attempt(self.host.reload, name)
        after = self.snapshot()
        if error is None and not activates:  # deactivated or never active: stays so, and
            assert after.states[name] is S.RESOLVED  # imports the new code when activated
            assert self.loaded[name] is None
            assert after.active == before.active, (before.states, after.states)
            return
        if error is None:
            assert kind == "good", f"a reload of {kind} code succeeded"
            assert self.loaded[name] == self.disk[name], "the reload did not import the source"
            assert after.states[name] is S.ACTIVE
            assert before.active <= after.active, (before.states, after.states)
            self.check_answers(name)
            return
        assert isinstance(error, ReloadError), error
        # Rolled back: the same plugins active, registering the same, from the same code.
        assert after.active == before.active, (before.states, after.states)
        assert after.registered == before.registered
        # The same code stays imported (a dependency the reload brought up and back down
        # may have been imported for the first time: run() checked it is what is on disk).
        kept = {plugin: module for plugin, module in before.modules.items() if module is not None}
        assert {plugin: after.modules[plugin] for plugin in kept} == kept
        if kind == "good":  # only a dependency that cannot come up may stop good code
            assert not was_active, error
            assert not dependencies_up, (error, before.states)
        if was_active:  # the old version keeps serving
            self.check_answers(name)

    # The rules above try every plugin, legal or not; these aim at the moves that matter.

    def _in(self, *states: PluginState) -> list[str]:
        return [name for name in NAMES if self.state(name) in states]

    @precondition(lambda self: self._in(S.ACTIVE))
    @rule(data=st.data())
    def deactivate_an_active_plugin(self, data: st.DataObject) -> None:
        self.deactivate(data.draw(st.sampled_from(self._in(S.ACTIVE)), label="name"))

    @precondition(lambda self: self._in(S.RESOLVED, S.INACTIVE))
    @rule(data=st.data())
    def activate_an_inactive_plugin(self, data: st.DataObject) -> None:
        self.activate(data.draw(st.sampled_from(self._in(S.RESOLVED, S.INACTIVE)), label="name"))

    @precondition(lambda self: self._in(S.RESOLVED, S.INACTIVE, S.FAILED))
    @rule(data=st.data())
    def reload_a_plugin_that_is_not_active(self, data: st.DataObject) -> None:
        names = self._in(S.RESOLVED, S.INACTIVE, S.FAILED)
        self.reload(data.draw(st.sampled_from(names), label="name"))

    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(BREAKAGES))
    def break_plugin(self, name: str, kind: str) -> None:
        before = self.snapshot()
        self.generations += 1
        self.write(name, kind, self.generations)
        assert self.snapshot() == before  # nothing changes until a reload

    @rule(name=st.sampled_from(NAMES))
    def fix_plugin(self, name: str) -> None:
        before = self.snapshot()
        self.generations += 1
        self.write(name, "good", self.generations)
        assert self.snapshot() == before

    @rule(operation=st.sampled_from(["activate", "deactivate", "reload", "enable", "disable"]))
    def unknown_plugin(self, operation: str) -> None:
        before = self.snapshot()
        error = self.attempt(getattr(self.host, operation), "ghost")
        assert isinstance(error, PluginNotFound), error
        assert self.snapshot() == before

    @rule()
    def call_tools(self) -> None:
        before = self.snapshot()
        for tool in self.host.tools.names():
            owner = self.host.tools.owner_of(tool)
            assert owner is not None
            assert self.state(owner) is S.ACTIVE, (tool, owner, self.state(owner))
        for name in NAMES:
            if before.states[name] is S.ACTIVE:
                self.check_answers(name)
            else:  # no lazy activation here: its tool is refused, and nothing changes
                with pytest.raises((ToolError, PluginFailed)):
                    self.invoke(SPECS[name].tool)
        base = self.loaded["base"]
        if before.states["base"] is S.ACTIVE and base is not None:
            assert self.host.providers.get("base_provider")() == base[1]
        report = self.portal.call(self.host.events.dispatch, "on_message_received", Message("hi"))
        assert report.ok, report.failures
        assert report.handlers == len(before.active)
        assert self.snapshot() == before

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def no_plugin_is_left_between_states(self) -> None:
        stuck = {n: r.state for n, r in self.host.plugins.items() if r.state in TRANSITIONAL}
        assert not stuck, stuck

    @invariant()
    def every_registration_has_an_active_owner(self) -> None:
        context = self.host.context
        owners: list[tuple[str, str, str | None]] = [
            (kind, entry, registry.owner_of(entry))
            for kind, registry in (
                ("tool", context.tools),
                ("channel", context.channels),
                ("pipeline stage", context.pipeline),
                ("provider", context.providers),
            )
            for entry in registry.names()
        ]
        owners += [
            ("handler", hook, owner)
            for hook in context.events.events()
            for owner in context.events.handlers(hook)
        ]
        for kind, entry, owner in owners:
            record = self.host.plugins.get(owner) if owner is not None else None
            state = record.state if record is not None else None
            assert state is S.ACTIVE, f"{kind} {entry!r} is registered by {owner!r} ({state})"

    @invariant()
    def active_plugins_have_exactly_their_registrations(self) -> None:
        for name, record in self.host.plugins.items():
            if record.state is S.ACTIVE:
                registered = self.host.context.registrations(name)
                assert registered == SPECS[name].registrations(), (name, registered)

    @invariant()
    def disabled_plugins_have_nothing_registered_or_declared(self) -> None:
        for name, record in self.host.plugins.items():
            if record.state is S.DISABLED:
                registered = self.host.context.registrations(name)
                assert registered.is_empty(), (name, registered)
                assert self.host.tools.declared_owner(SPECS[name].tool) is None, name

    @invariant()
    def active_plugins_have_active_dependencies(self) -> None:
        for name, record in self.host.plugins.items():
            if record.state is S.ACTIVE:
                for dep in SPECS[name].requires:
                    state = self.state(dep)
                    assert state is S.ACTIVE, (
                        f"{name} is ACTIVE but its dependency {dep} is {state}"
                    )

    @invariant()
    def active_plugins_run_the_imported_code(self) -> None:
        for name, record in self.host.plugins.items():
            module = self.module(name)
            loaded = self.loaded[name]
            found = (getattr(module, "KIND", None), getattr(module, "GEN", None))
            assert found == (loaded or (None, None)), (name, found, loaded)
            if record.state is S.ACTIVE:
                assert record.target is module, (name, record.target, module)
                assert found[0] == "good", (name, found)


LifecycleMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
TestLifecycleSequences = LifecycleMachine.TestCase


# -- each invariant can fail ------------------------------------------------------------------


@contextmanager
def started(broken: dict[str, str] | None = None) -> Iterator[LifecycleMachine]:
    """A machine whose host is started, closed without the teardown's checks."""
    built = LifecycleMachine()
    try:
        built.start(broken or {})
        yield built
    finally:
        built.close(check=False)


def _stray_provider(m: LifecycleMachine) -> None:
    m.portal.call(m.host.deactivate, "solo")
    m.host.providers._add("solo", "stray", object())


def _lost_handler(m: LifecycleMachine) -> None:
    m.host.events._remove_owner("base")


def _disabled_channel(m: LifecycleMachine) -> None:
    m.portal.call(m.host.disable, "solo")
    m.host.channels._add("solo", "solo_channel", dict)


def _dependency_gone(m: LifecycleMachine) -> None:
    m.host._records["base"].state = S.INACTIVE


def _stale_code(m: LifecycleMachine) -> None:
    m.host._records["solo"].target = SimpleNamespace(KIND="good", GEN=0)


def _stuck(m: LifecycleMachine) -> None:
    m.host._records["side"].state = S.DEACTIVATING


@pytest.mark.parametrize(
    ("corrupt", "invariant_name"),
    [
        (_stray_provider, "every_registration_has_an_active_owner"),
        (_lost_handler, "active_plugins_have_exactly_their_registrations"),
        (_disabled_channel, "disabled_plugins_have_nothing_registered_or_declared"),
        (_dependency_gone, "active_plugins_have_active_dependencies"),
        (_stale_code, "active_plugins_run_the_imported_code"),
        (_stuck, "no_plugin_is_left_between_states"),
    ],
)
def test_each_invariant_catches_what_it_guards(
    corrupt: Callable[[LifecycleMachine], None], invariant_name: str
) -> None:
    with started() as m:
        check: Callable[[], None] = getattr(m, invariant_name)
        check()  # holds on a healthy host
        corrupt(m)
        with pytest.raises(AssertionError):
            check()
        for record in m.host._records.values():  # let stop() deactivate what it must
            if record.state in (S.INACTIVE, S.DEACTIVATING) and record.target is not None:
                record.state = S.ACTIVE


# -- product bugs the machine found, reduced -----------------------------------------------------


def test_a_reload_never_activates_a_plugin_without_its_dependencies() -> None:
    """``reload`` of an inactive plugin activates it (``_reload._swap`` calls
    ``_activate_one``) without activating its inactive dependency first."""
    with started() as m:
        m.portal.call(m.host.deactivate, "base")  # mid, top and side go first
        assert m.state("mid") is S.INACTIVE

        error = m.attempt(m.host.reload, "mid")

        assert error is None or isinstance(error, ReloadError), error
        states = {name: m.state(name) for name in ("base", "mid")}
        assert states["mid"] is not S.ACTIVE or states["base"] is S.ACTIVE, states


def test_a_failed_plugin_fixed_and_loaded_again_runs_the_fixed_code() -> None:
    """What ``IllegalTransition`` tells to do about a FAILED plugin ("fix it and load it
    again (host.load)") runs the old module again: its failed activation left it in
    ``sys.modules``, and activating imports it from there."""
    with started({"solo": "activate_raises"}) as m:
        with pytest.raises(IllegalTransition, match=r"fix it and load it again \(host.load\)"):
            m.portal.call(m.host.activate, "solo")
        m.write("solo", "good", 1)

        m.portal.call(m.host.load, "solo")
        with contextlib.suppress(PluginFailed):
            m.portal.call(m.host.activate, "solo")

        failure = m.host.plugins["solo"].failure
        assert m.state("solo") is S.ACTIVE, failure.reason if failure else None
        assert m.invoke("solo_tool") == "solo:1"
