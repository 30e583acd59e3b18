"""The plugin author's kit: ``clawhost.testing`` and the pytest plugin."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import clawhost.testing
from clawhost import PluginContext, PluginState, hookimpl, tool
from clawhost.testing import HookRecorder, check_plugin, make_test_context, make_test_host

from ._cli import GEOCODING

pytest_plugins = ["pytester"]


class Greeter:
    """A small well-behaved plugin."""

    def __init__(self) -> None:
        self.greeting = "Hello"

    @tool
    def greet(self, name: str = "world") -> str:
        """Greet someone."""
        return f"{self.greeting}, {name}!"

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        self.greeting = ctx.config.get("greeting") or "Hello"
        ctx.register_tool(self.greet)

    @hookimpl
    def deactivate(self, ctx: PluginContext) -> None:
        self.greeting = "Hello"


GREETER_MANIFEST: dict[str, Any] = {
    "capabilities": {"tools": ["greet"]},
    "config": {"greeting": {"type": "string", "default": "Hello"}},
}


def test_every_public_name_is_documented() -> None:
    for name in clawhost.testing.__all__:
        assert getattr(clawhost.testing, name).__doc__, name


# -- HookRecorder -----------------------------------------------------------------------------


async def test_the_recorder_sees_lifecycle_hooks_and_tool_calls_in_order() -> None:
    host = make_test_host(("greeter", Greeter(), GREETER_MANIFEST))
    recorder = HookRecorder().attach(host)

    async with host:
        await host.tools.invoke("greet", {"name": "Ada"})

    assert recorder.operations("greeter") == ["import", "activate", "tool greet", "deactivate"]
    call = recorder.tool_calls("greet")[0]
    assert (call.kwargs, call.result, call.ok) == ({"name": "Ada"}, "Hello, Ada!", True)
    assert call.duration >= 0


async def test_the_recorder_records_a_failing_call_with_its_error() -> None:
    class Failing:
        @hookimpl
        def activate(self, ctx: PluginContext) -> None:
            raise RuntimeError("no")

    host = make_test_host(("failing", Failing()))
    recorder = HookRecorder().attach(host)

    async with host:
        pass

    (failure,) = recorder.failures("failing")
    assert failure.operation == "activate"
    assert isinstance(failure.error, RuntimeError)


async def test_recorder_assertions_say_what_was_recorded() -> None:
    host = make_test_host(("greeter", Greeter(), GREETER_MANIFEST))
    recorder = HookRecorder().attach(host)
    async with host:
        pass

    recorder.assert_called("greeter", "activate", times=1)
    recorder.assert_order("greeter", "import", "deactivate")
    recorder.assert_not_called("greeter", "health check")
    with pytest.raises(AssertionError, match=r"'health check'.*got 0; recorded: greeter:import"):
        recorder.assert_called("greeter", "health check")
    with pytest.raises(AssertionError, match="deactivate -> activate in order"):
        recorder.assert_order("greeter", "deactivate", "activate")


async def test_a_detached_recorder_records_nothing_more() -> None:
    host = make_test_host(("greeter", Greeter(), GREETER_MANIFEST))
    with HookRecorder().attach(host) as recorder:
        await host.start()
    await host.stop()

    assert recorder.operations() == ["import", "activate"]


# -- test hosts -------------------------------------------------------------------------------


async def test_a_test_host_passes_plugin_config() -> None:
    host = make_test_host(
        ("greeter", Greeter(), GREETER_MANIFEST), config={"greeter": {"greeting": "Hi"}}
    )

    async with host:
        assert await host.tools.invoke("greet", {"name": "Bo"}) == "Hi, Bo!"


async def test_a_test_host_enforces_the_manifest_it_was_given() -> None:
    host = make_test_host(("greeter", Greeter(), {"capabilities": {"tools": ["other"]}}))

    async with host:
        record = host.plugins["greeter"]
        assert record.state is PluginState.FAILED
        assert record.failure is not None
        assert "which its manifest does not declare" in record.failure.reason


async def test_a_test_host_loads_a_project_from_its_source_tree() -> None:
    host = make_test_host(GEOCODING)

    async with host:
        assert await host.tools.invoke("geocode", {"place": "Paris"}) == {
            "name": "Paris",
            "latitude": 48.8566,
            "longitude": 2.3522,
            "country": "FR",
        }


def test_a_test_context_registers_for_one_plugin() -> None:
    context = make_test_context()
    Greeter().activate(context.plugin_context("greeter"))

    assert context.registrations("greeter").tools == ("greet",)


def test_a_string_is_not_taken_for_a_plugin_object() -> None:
    with pytest.raises(TypeError, match=r"pass a pathlib\.Path"):
        make_test_host("greeter")


# -- check_plugin -----------------------------------------------------------------------------


async def test_check_plugin_passes_a_conforming_object() -> None:
    report = await check_plugin(Greeter(), name="greeter", manifest=GREETER_MANIFEST)

    assert report.ok
    assert [step.name for step in report.steps] == [
        "resolve",
        "activate",
        "registrations",
        "health check",
        "deactivate",
        "leftovers",
    ]
    assert report.registered["tools"] == ["greet"]
    assert "greeter: activate" in report.operations


class Sloppy:
    """Declares two tools, registers one, is unhealthy and fails to deactivate."""

    @tool
    def one(self) -> str:
        """One."""
        return "1"

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        ctx.register_tool(self.one)

    @hookimpl
    def health_check(self, ctx: PluginContext) -> str:
        return "the cache is cold"

    @hookimpl
    def deactivate(self, ctx: PluginContext) -> None:
        raise OSError("socket already closed")


async def test_check_plugin_lists_every_finding_in_one_assertion() -> None:
    with pytest.raises(AssertionError) as caught:
        await check_plugin(
            Sloppy(), name="sloppy", manifest={"capabilities": {"tools": ["one", "two"]}}
        )

    message = str(caught.value)
    assert message.startswith("plugin 'sloppy' v0.1.0 does not conform:")
    assert "[error] registrations: declared tools not registered: two" in message
    assert "[error] health check: unhealthy: the cache is cold" in message
    assert "[error] deactivate: deactivate: OSError: socket already closed" in message


async def test_check_plugin_reports_a_plugin_that_cannot_activate() -> None:
    class Broken:
        @hookimpl
        def activate(self, ctx: PluginContext) -> None:
            raise KeyError("api_key")

    report = await check_plugin(Broken(), name="broken", raise_on_failure=False)

    assert not report.ok
    assert [(f.step, f.message) for f in report.errors] == [("activate", "KeyError: 'api_key'")]


async def test_check_plugin_without_a_manifest_only_lists_registrations() -> None:
    report = await check_plugin(Greeter(), name="greeter")

    assert report.ok
    assert report.declared == {"tools": [], "channels": [], "pipeline_stages": [], "providers": []}


async def test_check_plugin_warns_about_a_thread_left_running() -> None:
    stop = threading.Event()

    class Leaky:
        @hookimpl
        def activate(self, ctx: PluginContext) -> None:
            threading.Thread(target=stop.wait, name="leaky-poller", daemon=True).start()

    try:
        report = await check_plugin(Leaky(), name="leaky", raise_on_failure=False)
    finally:
        stop.set()

    assert report.ok  # a warning: the thread may still end by itself
    assert [f.message for f in report.findings] == [
        "threads still running after deactivation: leaky-poller"
    ]


async def test_check_plugin_checks_a_project_folder() -> None:
    report = await check_plugin(GEOCODING)

    assert report.ok, report
    assert report.version == "1.5.2"
    assert report.registered["providers"] == ["geocoder"]


async def test_check_plugin_checks_an_installed_plugin_with_its_dependencies(
    installed_examples: Path,
) -> None:
    report = await check_plugin(
        "weather",
        path=[str(installed_examples)],
        config={"api_key": "k", "base_url": "http://127.0.0.1:9"},
        health=False,
    )

    assert report.ok, report
    assert "geocoding: activate" in report.operations
    assert report.operations[-1] == "geocoding: deactivate"


async def test_check_plugin_says_when_an_installed_plugin_is_not_found(tmp_path: Path) -> None:
    report = await check_plugin("nope", path=[str(tmp_path)], raise_on_failure=False)

    assert [f.message for f in report.errors] == ["plugin 'nope' not found (found: none)"]


# -- the pytest plugin ------------------------------------------------------------------------

PLUGIN_MODULE = '''
from clawhost import hookimpl, tool

EVENTS = []


class Echo:
    @tool
    def echo(self, text: str) -> str:
        """Echo text back."""
        return text

    @hookimpl
    def activate(self, ctx):
        EVENTS.append("activate")
        ctx.register_tool(self.echo)

    @hookimpl
    def deactivate(self, ctx):
        EVENTS.append("deactivate")
'''


@pytest.fixture
def author(pytester: pytest.Pytester) -> pytest.Pytester:
    """A plugin author's project: a plugin module beside the tests, no configuration."""
    pytester.makepyfile(echo_plugin=PLUGIN_MODULE)
    pytester.syspathinsert()
    return pytester


def test_the_fixtures_work_without_configuration(author: pytest.Pytester) -> None:
    author.makepyfile(
        test_echo=textwrap.dedent(
            """
            from echo_plugin import Echo

            MANIFEST = {"capabilities": {"tools": ["echo"]}}

            async def test_host(clawhost_host):
                host = await clawhost_host(("echo", Echo(), MANIFEST))
                assert await host.tools.invoke("echo", {"text": "hi"}) == "hi"

            async def test_recorder(clawhost_host, hook_recorder):
                await clawhost_host(("echo", Echo()))
                hook_recorder.assert_order("echo", "import", "activate")

            async def test_context(clawhost_context):
                Echo().activate(clawhost_context.plugin_context("echo"))
                assert clawhost_context.tools.has("echo")

            async def test_check(clawhost_check):
                report = await clawhost_check(Echo(), name="echo", manifest=MANIFEST)
                assert report.ok

            def test_plain_tests_are_left_alone():
                assert True
            """
        )
    )

    result = author.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=5)


def test_hosts_from_the_factory_are_stopped_after_the_test(author: pytest.Pytester) -> None:
    author.makepyfile(
        test_stop=textwrap.dedent(
            """
            import echo_plugin

            async def test_one(clawhost_host):
                await clawhost_host(("echo", echo_plugin.Echo()))
                assert echo_plugin.EVENTS == ["activate"]

            def test_two():
                assert echo_plugin.EVENTS == ["activate", "deactivate"]

            async def test_unstarted(clawhost_host):
                host = await clawhost_host(("echo", echo_plugin.Echo()), start=False)
                assert not host.plugins
            """
        )
    )

    result = author.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=3)


def test_a_failed_conformance_check_lists_the_findings(author: pytest.Pytester) -> None:
    author.makepyfile(
        test_bad=textwrap.dedent(
            """
            from echo_plugin import Echo

            async def test_check(clawhost_check):
                await clawhost_check(
                    Echo(), name="echo", manifest={"capabilities": {"tools": ["echo", "shout"]}}
                )
            """
        )
    )

    result = author.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*declared tools not registered: shout*"])


def test_a_test_using_the_fixtures_through_its_own_fixture_runs_too(
    author: pytest.Pytester,
) -> None:
    author.makepyfile(
        test_indirect=textwrap.dedent(
            """
            import pytest
            from echo_plugin import Echo

            @pytest.fixture
            async def host(clawhost_host):
                return await clawhost_host(("echo", Echo()))

            async def test_echo(host):
                assert await host.tools.invoke("echo", {"text": "hey"}) == "hey"
            """
        )
    )

    result = author.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=1)


async def test_a_project_is_imported_from_its_source_tree_even_when_a_copy_is_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    from clawhost import PluginHost

    # an installed copy of the same package, imported before the host runs
    elsewhere = types.ModuleType("clawdesk_plugin_geocoding")
    elsewhere.__file__ = str(tmp_path / "site-packages" / "clawdesk_plugin_geocoding.py")
    for name in [n for n in sys.modules if n.startswith("clawdesk_plugin_geocoding")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "clawdesk_plugin_geocoding", elsewhere)
    host = PluginHost.test_instance()
    [candidate] = host.add_project(GEOCODING)
    assert str(candidate.source) == f"project {GEOCODING}"
    async with host:
        assert host.plugins["geocoding"].state is PluginState.ACTIVE
        place = await host.tools.invoke("geocode", {"place": "Paris"})
        assert place["country"] == "FR"
        module = sys.modules["clawdesk_plugin_geocoding"]
        assert module is not elsewhere
        assert Path(module.__file__ or "").is_relative_to(GEOCODING / "src")
