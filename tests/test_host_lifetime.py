"""A host over its lifetime: what a closed host leaves behind (nothing), two hosts side by
side, hot reload however the host is run, plugins added and removed while it runs, and
honest messages about failed dependencies."""

from __future__ import annotations

import importlib.metadata
import logging
import shutil
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from clawhost import HostConfig, PluginHost, PluginState
from clawhost.core.importpath import held_places
from clawhost.errors import DependencyFailed, MissingDependency
from clawhost.reload.reports import ReloadEvent

from ._cli import build_wheel, plugin_project
from ._site import SiteDir, directory_plugin
from .conftest import make_venv, pip

S = PluginState

TWIN = """
from clawhost import hookimpl, tool

@tool
def where() -> str:
    \"\"\"Which folder this plugin was imported from (a sibling module, imported late).\"\"\"
    import {sibling}
    return {sibling}.WHERE

@hookimpl
def activate(ctx):
    ctx.register_tool(where)
"""


def twin(folder: Path, module: str, where: str) -> Path:
    """A directory plugin ``twin`` whose module names are ``module`` (shared on purpose
    between folders) and ``module_where`` (a sibling imported at call time)."""
    path = directory_plugin(
        folder,
        "twin",
        TWIN.format(sibling=f"{module}_where"),
        module=module,
        folder="twin",
        sections={"caps": '[plugin.capabilities]\ntools = ["where"]'},
    )
    (path / f"{module}_where.py").write_text(f"WHERE = {where!r}\n", "utf-8")
    return path


def host_of(*dirs: Path, **plugins: object) -> PluginHost:
    config = HostConfig.from_mapping({"plugins": dict(plugins)}, base_dir=dirs[0])
    return PluginHost(config=config, dirs=list(dirs), path=[], cache=False)


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if type(t).__module__.startswith("watchdog")]


async def test_a_closed_host_leaves_no_module_no_folder_and_no_finder_behind(
    tmp_path: Path,
) -> None:
    module = f"twin_{uuid.uuid4().hex[:8]}"
    first = twin(tmp_path / "x", module, "X")
    twin(tmp_path / "y", module, "Y")
    path_before, meta_before = list(sys.path), list(sys.meta_path)

    async with host_of(tmp_path / "x") as host:
        assert await host.tools.invoke("where") == "X"
        assert sys.path == path_before  # the folder is reachable, never on sys.path
        assert module in sys.modules
        assert f"{module}_where" in sys.modules
        assert str(first) in held_places()

    assert module not in sys.modules
    assert f"{module}_where" not in sys.modules
    assert sys.path == path_before
    assert sys.meta_path == meta_before
    assert str(first) not in held_places()
    # the same module names, from another folder, in the next host of the process
    async with host_of(tmp_path / "y") as host:
        assert await host.tools.invoke("where") == "Y"
    assert module not in sys.modules


async def test_two_open_hosts_with_the_same_module_name_the_second_is_told_both_folders(
    tmp_path: Path,
) -> None:
    module = f"twin_{uuid.uuid4().hex[:8]}"
    first = twin(tmp_path / "x", module, "X")
    second = twin(tmp_path / "y", module, "Y")
    async with host_of(tmp_path / "x") as one:
        async with host_of(tmp_path / "y") as two:
            record = two.plugins["twin"]
            assert record.state is S.FAILED
            assert record.failure is not None
            assert record.failure.stage == "activate"
            assert str(first) in record.failure.reason
            assert str(second) in record.failure.reason
            assert "module names of their own" in record.failure.reason
            assert await one.tools.invoke("where") == "X"  # the first is untouched
        assert await one.tools.invoke("where") == "X"
    async with host_of(tmp_path / "y") as two:  # once the first is closed, it works
        assert await two.tools.invoke("where") == "Y"


async def test_two_open_hosts_share_one_folder_and_the_first_to_close_keeps_it_for_the_other(
    tmp_path: Path,
) -> None:
    module = f"twin_{uuid.uuid4().hex[:8]}"
    folder = twin(tmp_path / "x", module, "X")
    async with host_of(tmp_path / "x") as one:
        async with host_of(tmp_path / "x") as two:
            assert await two.tools.invoke("where") == "X"
        assert module in sys.modules
        assert str(folder) in held_places()
        assert await one.tools.invoke("where") == "X"
    assert module not in sys.modules
    assert str(folder) not in held_places()


async def test_disabling_a_plugin_forgets_its_modules_and_enabling_imports_it_again(
    tmp_path: Path,
) -> None:
    module = f"twin_{uuid.uuid4().hex[:8]}"
    folder = twin(tmp_path / "x", module, "X")
    async with host_of(tmp_path / "x") as host:
        assert await host.tools.invoke("where") == "X"
        await host.disable("twin")
        assert module not in sys.modules
        assert str(folder) not in held_places()
        (folder / f"{module}_where.py").write_text("WHERE = 'X2'\n", "utf-8")
        await host.enable("twin")
        assert await host.tools.invoke("where") == "X2"


GIVEN_SITE = """
from clawhost import hookimpl, tool

@tool
def hello() -> str:
    \"\"\"Says hello from a site the host was given.\"\"\"
    return "hello"

@hookimpl
def activate(ctx):
    ctx.register_tool(hello)
"""


async def test_a_site_the_host_was_given_is_reachable_only_while_its_plugin_is_loaded(
    site: SiteDir,
) -> None:
    package = f"given_{uuid.uuid4().hex[:8]}"
    site.add(
        f"clawdesk-plugin-{package}",
        "1.0.0",
        entry_points={"given": package},
        files={
            f"{package}/__init__.py": GIVEN_SITE,
            f"{package}/plugin.toml": (
                '[plugin]\nname = "given"\nversion = "1.0.0"\n\n'
                '[plugin.capabilities]\ntools = ["hello"]\n'
            ),
        },
    )
    path_before = list(sys.path)
    host = PluginHost(dirs=[], path=[str(site)], cache=False)
    async with host:
        assert await host.tools.invoke("hello") == "hello"
        assert sys.path == path_before
        # its metadata is found too, as when the site was on sys.path
        assert importlib.metadata.version(f"clawdesk-plugin-{package}") == "1.0.0"
    assert package not in sys.modules
    assert str(site) not in held_places()
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version(f"clawdesk-plugin-{package}")


# -- hot reload, however the host is run ---------------------------------------------------

ANSWER = """
from clawhost import hookimpl, tool

@tool
def answer() -> str:
    \"\"\"Which version answers.\"\"\"
    return {answer!r}

@hookimpl
def activate(ctx):
    ctx.register_tool(answer)
"""


def answer_plugin(plugins: Path, name: str, answer: str, *, module: str | None = None) -> Path:
    code = ANSWER.replace("answer", name).replace(f"{{{name}!r}}", repr(answer))
    return directory_plugin(
        plugins,
        name,
        code,
        module=module,
        folder=name,
        sections={"caps": f'[plugin.capabilities]\ntools = ["{name}"]'},
    )


def config_file(root: Path, **extra: str) -> Path:
    lines = ['dirs = ["./plugins"]', "hot_reload = true", "watch_interval_secs = 0.2"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    path = root / "config.toml"
    path.write_text("[plugins]\n" + "\n".join(lines) + "\n", "utf-8")
    return path


async def wait_for(condition: Callable[[], object], limit: float = 20.0) -> None:
    """Until ``condition()`` holds: what the watcher does has no event to wait on."""
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110 - the host's watcher changes it
            await anyio.sleep(0.05)


async def test_hot_reload_from_config_watches_under_async_with_and_stops_on_close(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    module = f"answer_{uuid.uuid4().hex[:8]}"
    folder = answer_plugin(plugins, "answer", "old", module=module)
    threads_before = len(watchdog_threads())
    events: list[ReloadEvent] = []
    async with PluginHost.from_config(config_file(tmp_path), cache=False) as host:
        host.on_reload(events.append)
        assert await host.tools.invoke("answer") == "old"
        assert len(watchdog_threads()) > threads_before  # watching, no serve() needed
        (folder / f"{module}.py").write_text(textwrap.dedent(ANSWER.format(answer="new")), "utf-8")
        await wait_for(lambda: events)
        assert events[0].ok
        assert await host.tools.invoke("answer") == "new"
    await wait_for(lambda: len(watchdog_threads()) == threads_before)
    (folder / f"{module}.py").write_text(textwrap.dedent(ANSWER.format(answer="late")), "utf-8")
    await anyio.sleep(0.6)
    assert len(events) == 1  # a closed host reloads nothing


async def test_a_plugin_folder_added_and_removed_while_the_host_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder dropped into a plugin directory comes up; deleted, it goes down cleanly
    (its dependent with it); calls to an unaffected plugin never fail meanwhile."""
    plugins = tmp_path / "plugins"
    answer_plugin(plugins, "steady", "steady")
    caplog.set_level(logging.INFO, logger="clawhost.reload")
    failures: list[BaseException] = []
    calls = 0
    async with PluginHost.from_config(config_file(tmp_path), cache=False) as host:

        async def call_steady() -> None:
            nonlocal calls
            while True:
                try:
                    assert await host.tools.invoke("steady") == "steady"
                    calls += 1
                except Exception as exc:  # pragma: no cover - what the test must not see
                    failures.append(exc)
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as group:
            group.start_soon(call_steady)
            fresh = answer_plugin(plugins, "fresh", "fresh")
            await wait_for(lambda: "fresh" in host.tools.names())
            assert host.plugins["fresh"].state is S.ACTIVE
            assert await host.tools.invoke("fresh") == "fresh"
            module = host.plugins["fresh"].plugin.source.entry  # type: ignore[union-attr]

            dependent = directory_plugin(
                plugins,
                "leaning",
                ANSWER.replace("answer", "leaning").replace("{leaning!r}", "'leaning'"),
                folder="leaning",
                sections={
                    "caps": '[plugin.capabilities]\ntools = ["leaning"]',
                    "deps": '[plugin.dependencies]\nfresh = ">=1.0"',
                },
            )
            await wait_for(lambda: "leaning" in host.tools.names())

            shutil.rmtree(fresh)
            await wait_for(lambda: "fresh" not in host.plugins)
            assert "fresh" not in host.tools.names()
            assert "leaning" not in host.tools.names()
            leaning = host.plugins["leaning"]
            assert leaning.state is S.FAILED
            assert leaning.failure is not None
            assert isinstance(leaning.failure.error, MissingDependency)
            assert module not in sys.modules
            shutil.rmtree(dependent)
            await wait_for(lambda: "leaning" not in host.plugins)
            group.cancel_scope.cancel()
    assert failures == []
    assert calls > 0
    lines = [r.getMessage() for r in caplog.records if r.name == "clawhost.reload"]
    assert len([line for line in lines if line.startswith("Plugin 'fresh' added")]) == 1
    assert len([line for line in lines if line.startswith("Plugin 'fresh' removed")]) == 1
    assert len([line for line in lines if line.startswith("Plugin 'leaning' removed")]) == 1


async def test_a_new_plugin_that_cannot_run_is_reported_and_the_host_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plugins = tmp_path / "plugins"
    answer_plugin(plugins, "steady", "steady")
    caplog.set_level(logging.INFO, logger="clawhost.reload")
    async with PluginHost.from_config(config_file(tmp_path), cache=False) as host:
        directory_plugin(
            plugins,
            "needy",
            "from clawhost import hookimpl\n",
            folder="needy",
            sections={"deps": '[plugin.dependencies]\nabsent = ">=1.0"'},
        )
        await wait_for(lambda: "needy" in host.plugins and host.plugins["needy"].failure)
        assert await host.tools.invoke("steady") == "steady"
    (line,) = [r.getMessage() for r in caplog.records if "'needy' added" in r.getMessage()]
    assert "failed at stage resolve" in line
    assert "absent" in line


@pytest.mark.slow
async def test_pip_install_and_uninstall_while_the_host_runs(tmp_path: Path) -> None:
    """A real distribution pip-installed into the host's site comes up; uninstalled, it
    goes down."""
    project = plugin_project(
        tmp_path / "src",
        "arrival",
        tools=["arrived"],
        code="""
            from clawhost import hookimpl, tool

            @tool
            def arrived() -> str:
                \"\"\"Installed while the host ran.\"\"\"
                return "here"

            @hookimpl
            def activate(ctx):
                ctx.register_tool(arrived)
        """,
    )
    wheel = build_wheel(project, tmp_path / "dist")
    python = make_venv(tmp_path / "venv")
    site_packages = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    config = HostConfig.from_mapping(
        {"plugins": {"hot_reload": True, "watch_interval_secs": 0.3}}, base_dir=tmp_path
    )
    host = PluginHost(config=config, dirs=[], path=[str(site_packages)], cache=False)
    async with host:
        assert "arrival" not in host.plugins
        await anyio.to_thread.run_sync(lambda: pip("install", "--no-deps", wheel, python=python))
        await wait_for(lambda: "arrived" in host.tools.names(), limit=60)
        assert await host.tools.invoke("arrived") == "here"
        await anyio.to_thread.run_sync(
            lambda: pip("uninstall", "-y", "clawdesk-plugin-arrival", python=python)
        )
        await wait_for(lambda: "arrival" not in host.plugins, limit=60)
        assert "arrived" not in host.tools.names()
        assert "clawdesk_plugin_arrival" not in sys.modules


# -- honest messages ---------------------------------------------------------------------


async def test_a_dependency_that_failed_is_reported_as_failed_not_as_not_installed(
    tmp_path: Path,
) -> None:
    plugins = tmp_path / "plugins"
    directory_plugin(  # asks for a network host the config does not grant: fails at load
        plugins,
        "greedy",
        "from clawhost import hookimpl\n",
        folder="greedy",
        sections={"perms": '[plugin.permissions]\nnetwork = ["api.example.com:443"]'},
    )
    directory_plugin(
        plugins,
        "leaner",
        "from clawhost import hookimpl\n",
        folder="leaner",
        sections={"deps": '[plugin.dependencies]\ngreedy = ">=1.0"'},
    )
    directory_plugin(
        plugins,
        "crashy",
        "from clawhost import hookimpl\n\n"
        "@hookimpl\ndef activate(ctx):\n    raise OSError('disk on fire')\n",
        folder="crashy",
    )
    directory_plugin(
        plugins,
        "rider",
        "from clawhost import hookimpl\n",
        folder="rider",
        sections={"deps": '[plugin.dependencies]\ncrashy = ">=1.0"'},
    )
    async with host_of(plugins) as host:
        leaner = host.plugins["leaner"].failure
        assert leaner is not None
        assert isinstance(leaner.error, DependencyFailed)
        assert leaner.reason.startswith("dependency greedy failed at stage load: ")
        assert "not installed" not in leaner.reason
        rider = host.plugins["rider"].failure
        assert rider is not None
        assert rider.reason.startswith("dependency crashy failed at stage activate: ")
        assert "disk on fire" in rider.reason
        # resolved again later (a reload of the dependent), the reason stays honest
        with pytest.raises(Exception, match="crashy failed at stage activate"):
            await host.reload("rider")


async def test_modules_the_application_imported_itself_are_not_dropped(tmp_path: Path) -> None:
    """A test (or an application) that imported the plugin's module before the host did
    keeps that module: the host drops only what it imported."""
    module = f"twin_{uuid.uuid4().hex[:8]}"
    folder = twin(tmp_path / "x", module, "X")
    sys.path.insert(0, str(folder))
    try:
        imported = importlib.import_module(module)
    finally:
        sys.path.remove(str(folder))
    try:
        async with host_of(tmp_path / "x") as host:
            assert await host.tools.invoke("where") == "X"
        assert sys.modules.get(module) is imported
    finally:
        sys.modules.pop(module, None)
        sys.modules.pop(f"{module}_where", None)


@pytest.mark.parametrize("held_by", ["a local", "a module global"])
def test_a_host_left_open_when_the_process_exits_prints_nothing(
    tmp_path: Path, held_by: str
) -> None:
    """Closing a host is the application's job, but one that forgets must not make the
    interpreter's exit spew errors from clawhost's clean-up. A host kept in a module
    global is collected only while the interpreter tears its modules down, when ``sys``
    has already lost ``path_importer_cache``: letting go of its import folders then
    printed an "Exception ignored" traceback per plugin."""
    import subprocess

    plugins = tmp_path / "plugins"
    twin(plugins, f"leftopen_{uuid.uuid4().hex[:8]}", "plugins")
    keep = "global host" if held_by == "a module global" else "pass"
    script = textwrap.dedent(
        f"""
        import anyio
        from clawhost import HostConfig, PluginHost

        async def main():
            {keep}
            host = PluginHost(config=HostConfig.from_mapping({{}}, base_dir={str(plugins)!r}),
                              dirs=[{str(plugins)!r}], path=[], cache=False)
            await host.start()
            print(await host.tools.invoke("where"))

        anyio.run(main)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "plugins"
    assert done.stderr == ""
