"""The lifecycle: load → resolve → activate → deactivate, one plugin failing alone."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, HostContext, PluginContext, PluginHost, PluginState, hookimpl, tool
from clawhost.errors import IllegalTransition, PluginFailed, PluginNotFound, UndeclaredCapability

from ._site import directory_plugin

S = PluginState


def make_host(
    tmp_path: Path,
    *,
    path: tuple[Path, ...] = (),
    sandbox: dict[str, Any] | None = None,
    plugins: dict[str, Any] | None = None,
    lazy: bool = False,
) -> PluginHost:
    table: dict[str, Any] = {
        "sandbox": {"max_cpu_time_secs": 2.0, **(sandbox or {})},
        **(plugins or {}),
    }
    config = HostConfig.from_mapping({"plugins": table}, base_dir=tmp_path)
    return PluginHost(
        config=config,
        dirs=[tmp_path / "plugins"],
        path=[str(p) for p in path],
        cache=False,
        lazy=lazy,
    )


def tools_section(*names: str) -> dict[str, str]:
    listed = ", ".join(f'"{name}"' for name in names)
    return {"caps": f"[plugin.capabilities]\ntools = [{listed}]"}


def depends(**requirements: str) -> dict[str, str]:
    body = "\n".join(f'{name} = "{req}"' for name, req in requirements.items())
    return {"deps": f"[plugin.dependencies]\n{body}"}


GOOD = """
from clawhost import hookimpl, tool

@tool
def {tool}() -> str:
    \"\"\"Say which plugin answered.\"\"\"
    return "{name}"

@hookimpl
def activate(ctx):
    ctx.register_tool({tool})
"""


def good_plugin(root: Path, name: str, tool_name: str | None = None, **options: Any) -> Path:
    tool_name = tool_name or f"{name.replace('-', '_')}_tool"
    sections = {**tools_section(tool_name), **options.pop("sections", {})}
    return directory_plugin(
        root, name, GOOD.format(tool=tool_name, name=name), sections=sections, **options
    )


# -- the product guide's integration test, in spirit ------------------------------------------


class MyPlugin:
    @tool
    def my_tool(self) -> str:
        """A tool."""
        return "ok"

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        ctx.register_tool(self.my_tool)


async def test_load_resolve_activate_registers_and_deactivate_removes() -> None:
    host = PluginHost.test_instance(("my-plugin", MyPlugin()))

    await host.load("my-plugin")
    await host.resolve()
    ctx = HostContext.test_context()
    await host.activate("my-plugin", ctx)

    assert ctx.tool_registry.has("my_tool")
    assert await ctx.tools.invoke("my_tool") == "ok"

    await host.deactivate("my-plugin")

    assert not ctx.tool_registry.has("my_tool")
    assert host.plugins["my-plugin"].state is S.INACTIVE


# -- real plugins: the example wheels ----------------------------------------------------------


async def test_the_installed_examples_activate_in_dependency_order(
    installed_examples: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = make_host(
        tmp_path,
        path=(installed_examples,),
        sandbox={"net_allowed": ["api.openweathermap.org:443", "127.0.0.1:*", "localhost:*"]},
        plugins={"weather": {"config": {"api_key": "k"}}},
    )

    with caplog.at_level(logging.INFO, logger="clawhost.lifecycle"):
        async with host:
            assert host.plugins["geocoding"].state is S.ACTIVE
            assert host.plugins["weather"].state is S.ACTIVE
            assert sorted(host.tools.names()) == ["geocode", "get_forecast", "get_weather"]
            assert host.plan.levels == (("geocoding", "rulebot"), ("weather",))
            assert await host.tools.invoke("geocode", {"place": "Paris"}) == {
                "name": "Paris",
                "latitude": 48.8566,
                "longitude": 2.3522,
                "country": "FR",
            }

    activations = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("Activating")
    ]
    ordered = [line for line in activations if "rulebot" not in line]  # same level as geocoding
    assert ordered == ["Activating 'geocoding' v1.5.2", "Activating 'weather' v1.2.0"]
    assert host.tools.names() == []
    assert all(record.state is S.INACTIVE for record in host.plugins.values())


# -- failures stay with their plugin ----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("raise RuntimeError('activate broke')", "RuntimeError: activate broke"),
        ("import sys; sys.exit(3)", "called sys.exit(3)"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ],
)
async def test_a_plugin_whose_activate_fails_fails_alone(
    tmp_path: Path, body: str, reason: str
) -> None:
    plugins = tmp_path / "plugins"
    directory_plugin(
        plugins,
        "broken",
        f"""
        from clawhost import hookimpl, tool

        @tool
        def half_done() -> str:
            return "registered before the failure"

        @hookimpl
        def activate(ctx):
            ctx.register_tool(half_done)
            {body}
        """,
        sections=tools_section("half_done"),
    )
    good_plugin(plugins, "fine")
    good_plugin(plugins, "needs-broken", sections=depends(broken=">=1.0"))
    host = make_host(tmp_path)

    async with host:
        broken, dependent, fine = (host.plugins[n] for n in ("broken", "needs-broken", "fine"))
        assert broken.state is S.FAILED
        assert broken.failure is not None
        assert broken.failure.stage == "activate"
        assert reason in broken.failure.reason
        assert not host.tools.has("half_done")  # its partial registration was rolled back
        assert dependent.state is S.FAILED
        assert dependent.failure is not None
        assert "dependency broken failed" in dependent.failure.reason
        assert fine.state is S.ACTIVE
        assert await host.tools.invoke("fine_tool") == "fine"


async def test_a_plugin_whose_activate_hangs_times_out_alone(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    directory_plugin(
        plugins,
        "sleeper",
        """
        import anyio
        from clawhost import hookimpl

        @hookimpl
        async def activate(ctx):
            await anyio.sleep(60)
        """,
    )
    good_plugin(plugins, "fine")
    host = make_host(tmp_path, sandbox={"max_cpu_time_secs": 0.3})

    with anyio.fail_after(10):
        async with host:
            sleeper = host.plugins["sleeper"]
            assert sleeper.state is S.FAILED
            assert sleeper.failure is not None
            assert "did not finish within 0.3s" in sleeper.failure.reason
            assert host.plugins["fine"].state is S.ACTIVE


async def test_a_plugin_whose_import_raises_fails_at_activation(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    directory_plugin(plugins, "bad-import", "raise ImportError('missing native library')\n")

    async with make_host(tmp_path) as host:
        failure = host.plugins["bad-import"].failure
        assert failure is not None
        assert failure.stage == "activate"
        assert "missing native library" in failure.reason


async def test_an_entry_naming_a_missing_object_fails_clearly(tmp_path: Path) -> None:
    directory_plugin(tmp_path / "plugins", "no-object", "x = 1\n", entry_object="Plugin")

    async with make_host(tmp_path) as host:
        failure = host.plugins["no-object"].failure
        assert failure is not None
        assert "has no attribute 'Plugin'" in failure.reason


async def test_a_misspelled_hook_is_refused_not_ignored(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "typo",
        "from clawhost import hookimpl\n\n@hookimpl\ndef activte(ctx):\n    pass\n",
    )

    async with make_host(tmp_path) as host:
        failure = host.plugins["typo"].failure
        assert failure is not None
        assert "unknown hook 'activte'" in failure.reason


async def test_a_hook_with_the_wrong_argument_names_is_refused(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "wrong-args",
        "from clawhost import hookimpl\n\n@hookimpl\ndef activate(context):\n    pass\n",
    )

    async with make_host(tmp_path) as host:
        failure = host.plugins["wrong-args"].failure
        assert failure is not None
        assert "context" in failure.reason


async def test_registering_an_undeclared_capability_fails_the_plugin(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "sneaky",
        """
        from clawhost import hookimpl

        @hookimpl
        def activate(ctx):
            ctx.register_provider("secret_llm", object())
        """,
    )

    async with make_host(tmp_path) as host:
        record = host.plugins["sneaky"]
        assert record.state is S.FAILED
        assert record.failure is not None
        assert isinstance(record.failure.error, UndeclaredCapability)


async def test_a_declared_capability_never_registered_is_a_diagnostic(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "forgetful",
        "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    pass\n",
        sections=tools_section("promised"),
    )

    async with make_host(tmp_path) as host:
        record = host.plugins["forgetful"]
        assert record.state is S.ACTIVE
        assert [d.message for d in record.diagnostics] == [
            "declared but not registered: tool 'promised'"
        ]


async def test_two_plugins_claiming_one_tool_is_a_reported_conflict(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    good_plugin(plugins, "first", tool_name="shared")
    good_plugin(plugins, "second", tool_name="shared")

    async with make_host(tmp_path) as host:
        states = {name: host.plugins[name].state for name in ("first", "second")}
        assert sorted(states.values()) == sorted([S.ACTIVE, S.FAILED])
        loser = next(name for name, state in states.items() if state is S.FAILED)
        failure = host.plugins[loser].failure
        assert failure is not None
        assert "already did" in failure.reason
        assert await host.tools.invoke("shared") != loser


# -- deactivation leaves nothing behind -------------------------------------------------------


async def test_deactivate_removes_everything_even_when_the_hook_raises(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "messy",
        """
        from clawhost import hookimpl, tool

        @tool
        def mess() -> int:
            return 1

        @hookimpl
        def activate(ctx):
            ctx.register_tool(mess)
            ctx.register_provider("llm", object())
            ctx.register_pipeline_stage("filter", lambda m: m)
            ctx.register_channel_factory("chat", lambda config: None)
            ctx.on_message_received(lambda m: None)

        @hookimpl
        def deactivate(ctx):
            raise RuntimeError("forgot to clean up, then crashed")
        """,
        sections={
            "caps": """
            [plugin.capabilities]
            tools = ["mess"]
            providers = ["llm"]
            pipeline_stages = ["filter"]
            channels = ["chat"]
            """
        },
    )
    host = make_host(tmp_path)
    await host.start()
    assert not host.context.registrations("messy").is_empty()

    await host.deactivate("messy")

    assert host.context.registrations("messy").is_empty()
    record = host.plugins["messy"]
    assert record.state is S.INACTIVE
    assert "forgot to clean up, then crashed" in record.diagnostics[-1].message


async def test_deactivating_a_dependency_first_deactivates_its_dependents(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    good_plugin(plugins, "base")
    good_plugin(plugins, "middle", sections=depends(base="^1"))
    good_plugin(plugins, "top", sections=depends(middle="^1"))
    host = make_host(tmp_path)
    await host.start()

    await host.deactivate("base")

    assert {name: host.plugins[name].state for name in ("base", "middle", "top")} == {
        "base": S.INACTIVE,
        "middle": S.INACTIVE,
        "top": S.INACTIVE,
    }
    await host.activate("top")  # dependencies come back first
    assert all(host.plugins[name].state is S.ACTIVE for name in ("base", "middle", "top"))
    await host.stop()


# -- illegal transitions --------------------------------------------------------------------


async def test_activating_an_active_plugin_is_an_illegal_transition(tmp_path: Path) -> None:
    good_plugin(tmp_path / "plugins", "once")
    async with make_host(tmp_path) as host:
        with pytest.raises(IllegalTransition) as caught:
            await host.activate("once")

    assert caught.value.current == "ACTIVE"
    assert "already active" in str(caught.value)


async def test_deactivating_an_inactive_plugin_is_an_illegal_transition(tmp_path: Path) -> None:
    good_plugin(tmp_path / "plugins", "idle")
    host = make_host(tmp_path)
    await host.resolve()

    with pytest.raises(IllegalTransition, match="it is not active"):
        await host.deactivate("idle")


async def test_activating_a_plugin_whose_dependency_failed_says_so(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    directory_plugin(
        plugins, "base", "from clawhost import hookimpl\n\n@hookimpl\ndef activate(ctx):\n    1/0\n"
    )
    good_plugin(plugins, "child", sections=depends(base="*"))
    host = make_host(tmp_path)
    await host.resolve()

    with pytest.raises(PluginFailed) as caught:
        await host.activate("child")

    assert caught.value.plugin == "child"
    assert "dependency base failed" in caught.value.reason
    assert "ZeroDivisionError" in caught.value.reason


async def test_an_unknown_plugin_name_lists_the_known_ones(tmp_path: Path) -> None:
    good_plugin(tmp_path / "plugins", "known")
    host = make_host(tmp_path)

    with pytest.raises(PluginNotFound) as caught:
        await host.activate("unknown")

    assert caught.value.known == ("known",)


# -- concurrency and laziness ---------------------------------------------------------------


async def test_independent_plugins_of_one_level_activate_concurrently(tmp_path: Path) -> None:
    # Each plugin waits for the other to have started: only concurrent activation finishes.
    barrier_module = tmp_path / "rendezvous.py"
    barrier_module.write_text("import anyio\narrived = []\nboth = None\n")
    sys.path.insert(0, str(tmp_path))
    try:
        code = """
        import anyio, rendezvous
        from clawhost import hookimpl

        @hookimpl
        async def activate(ctx):
            if rendezvous.both is None:
                rendezvous.both = anyio.Event()
            rendezvous.arrived.append(ctx.name)
            if len(rendezvous.arrived) == 2:
                rendezvous.both.set()
            await rendezvous.both.wait()
        """
        directory_plugin(tmp_path / "plugins", "left", code)
        directory_plugin(tmp_path / "plugins", "right", code)
        async with make_host(tmp_path, sandbox={"max_cpu_time_secs": 5}) as host:
            assert host.plan.levels == (("left", "right"),)
            assert host.plugins["left"].state is S.ACTIVE
            assert host.plugins["right"].state is S.ACTIVE
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("rendezvous", None)


async def test_lazy_tools_are_listed_before_their_plugin_is_imported(tmp_path: Path) -> None:
    good_plugin(tmp_path / "plugins", "lazybones", tool_name="snooze", module="lazy_module_listing")

    async with make_host(tmp_path, lazy=True) as host:
        (info,) = host.tools.list()
        assert (info.name, info.plugin, info.registered) == ("snooze", "lazybones", False)
        assert host.plugins["lazybones"].state is S.RESOLVED
        assert "lazy_module_listing" not in sys.modules

        assert await host.tools.invoke("snooze") == "lazybones"

        assert host.plugins["lazybones"].state is S.ACTIVE
        assert host.tools.list()[0].registered


async def test_concurrent_first_calls_activate_a_lazy_plugin_once(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "counted",
        """
        import anyio
        from clawhost import hookimpl, tool

        activations = []

        @tool
        def which() -> int:
            return len(activations)

        @hookimpl
        async def activate(ctx):
            activations.append(1)
            await anyio.sleep(0.2)  # slow, so every first call arrives during activation
            ctx.register_tool(which)
        """,
        sections=tools_section("which"),
    )
    results: list[int] = []

    async with make_host(tmp_path, lazy=True) as host:

        async def call() -> None:
            results.append(await host.tools.invoke("which"))

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(call)

    assert results == [1] * 20


# -- health ----------------------------------------------------------------------------------


HEALTH = """
import anyio
from clawhost import hookimpl

@hookimpl
async def health_check(ctx):
    {body}
"""


@pytest.mark.parametrize(
    ("body", "healthy", "reason"),
    [
        ("return None", True, None),
        ("return True", True, None),
        ("return False", False, "reported unhealthy"),
        ("return 'API key invalid'", False, "API key invalid"),
        ("raise ConnectionError('api down')", False, "ConnectionError: api down"),
        ("await anyio.sleep(10)", False, "health check did not finish within 0.2s"),
    ],
)
async def test_health_checks_report_and_time_out(
    tmp_path: Path, body: str, healthy: bool, reason: str | None
) -> None:
    directory_plugin(tmp_path / "plugins", "checked", HEALTH.format(body=body))

    async with make_host(tmp_path) as host:
        report = await host.health_check("checked", limit=0.2)

    assert (report.healthy, report.reason) == (healthy, reason)


async def test_an_inactive_plugin_is_unhealthy(tmp_path: Path) -> None:
    good_plugin(tmp_path / "plugins", "resting")
    host = make_host(tmp_path)
    await host.resolve()

    report = await host.health_check("resting")

    assert not report.healthy
    assert report.reason == "not active (resolved)"


# -- hooks: classes and modules, sync and async, events -------------------------------------


async def test_event_hookimpls_and_context_handlers_both_receive_broadcasts(tmp_path: Path) -> None:
    directory_plugin(
        tmp_path / "plugins",
        "listener",
        """
        from clawhost import hookimpl

        class Listener:
            def __init__(self):
                self.seen = []

            @hookimpl
            def activate(self, ctx):
                ctx.on_response_sent(lambda response: self.seen.append(("callback", response.text)))

            @hookimpl
            async def on_message_received(self, message):
                self.seen.append(("hook", message.text))
        """,
        entry_object="Listener",
    )
    from clawhost import Message, Response

    async with make_host(tmp_path) as host:
        await host.events.dispatch("on_message_received", message=Message("hello"))
        await host.events.dispatch("on_response_sent", response=Response("bye"))
        listener = host.plugins["listener"].target
        assert listener.seen == [("hook", "hello"), ("callback", "bye")]  # type: ignore[union-attr]

    assert host.events.events() == []


async def test_a_memory_limit_is_warned_about_because_it_cannot_be_enforced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good_plugin(tmp_path / "plugins", "capped")

    with caplog.at_level(logging.WARNING, logger="clawhost.lifecycle"):
        async with make_host(tmp_path, sandbox={"max_memory_mb": 128}) as host:
            assert host.plugins["capped"].state is S.ACTIVE

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("max_memory_mb = 128 is not enforced" in message for message in warnings)


async def test_no_memory_warning_without_a_memory_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good_plugin(tmp_path / "plugins", "uncapped")

    with caplog.at_level(logging.WARNING, logger="clawhost.lifecycle"):
        async with make_host(tmp_path):
            pass

    assert not [r for r in caplog.records if "max_memory_mb" in r.getMessage()]
