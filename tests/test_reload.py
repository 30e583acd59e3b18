"""Hot reload: new code answers, held calls never fail, failures roll back."""

from __future__ import annotations

import json
import logging
import os
import textwrap
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from clawhost import HostConfig, PluginHost, PluginState
from clawhost.errors import ReloadError
from clawhost.reload.reports import ReloadEvent
from clawhost.reload.watch import relevant, watch_roots

S = PluginState

PLUGIN = """
import anyio
from clawhost import hookimpl, tool

ANSWER = {answer!r}

@tool
async def answer() -> str:
    \"\"\"Which version answers.\"\"\"
    await anyio.sleep({delay})
    return ANSWER

@hookimpl
def activate(ctx):
    {activate_body}
    ctx.register_tool(answer)
    ctx.register_provider("answerer", lambda: ANSWER)
"""

DEPENDENT = """
from clawhost import hookimpl, tool

state = {}

@tool
def relayed() -> str:
    \"\"\"What the dependency's provider says now.\"\"\"
    return "relayed " + state["provider"]()

@hookimpl
def activate(ctx):
    state["provider"] = ctx.providers.get("answerer")
    ctx.register_tool(relayed)
"""


class Project:
    """A directory plugin on disk whose source tests rewrite."""

    def __init__(self, root: Path, name: str = "live", module: str | None = None) -> None:
        self.name = name
        self.module = module or f"live_{uuid.uuid4().hex[:10]}"
        self.folder = root / "plugins" / name
        self.folder.mkdir(parents=True)
        self.version = "1.0.0"

    def write(
        self,
        answer: str,
        *,
        version: str | None = None,
        delay: float = 0.0,
        activate_body: str = "pass",
        extra_manifest: str = "",
        raw_code: str | None = None,
    ) -> None:
        self.version = version or self.version
        manifest = textwrap.dedent(
            f"""
            [plugin]
            name = "{self.name}"
            version = "{self.version}"
            entry = "{self.module}"

            [plugin.capabilities]
            tools = ["answer"]
            providers = ["answerer"]
            """
        ) + textwrap.dedent(extra_manifest)
        (self.folder / "plugin.toml").write_text(manifest, "utf-8")
        code = (
            raw_code
            if raw_code is not None
            else PLUGIN.format(answer=answer, delay=delay, activate_body=activate_body)
        )
        (self.folder / f"{self.module}.py").write_text(textwrap.dedent(code), "utf-8")


def add_dependent(root: Path, requirement: str = "^1.0") -> None:
    folder = root / "plugins" / "relay"
    folder.mkdir(parents=True)
    module = f"relay_{uuid.uuid4().hex[:10]}"
    (folder / "plugin.toml").write_text(
        textwrap.dedent(
            f"""
            [plugin]
            name = "relay"
            version = "1.0.0"
            entry = "{module}"

            [plugin.capabilities]
            tools = ["relayed"]

            [plugin.dependencies]
            live = "{requirement}"
            """
        ),
        "utf-8",
    )
    (folder / f"{module}.py").write_text(textwrap.dedent(DEPENDENT), "utf-8")


def make_host(root: Path, *, hot_reload: bool = False, interval: float = 0.3) -> PluginHost:
    config = HostConfig.from_mapping(
        {"plugins": {"hot_reload": hot_reload, "watch_interval_secs": interval}}, base_dir=root
    )
    return PluginHost(config=config, dirs=[root / "plugins"], path=[], cache=False, drain_timeout=5)


async def test_after_a_reload_the_next_call_returns_the_new_result(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("old")
    async with make_host(tmp_path) as host:
        assert await host.tools.invoke("answer") == "old"

        project.write("new")
        event = await host.reload("live")

        assert await host.tools.invoke("answer") == "new"
        assert (event.ok, event.old_version, event.new_version) == (True, "1.0.0", "1.0.0")


async def test_an_edit_in_the_same_second_with_the_same_size_still_reloads(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("aaa")
    source = project.folder / f"{project.module}.py"
    async with make_host(tmp_path) as host:
        assert await host.tools.invoke("answer") == "aaa"
        stat = source.stat()

        project.write("bbb")  # same length: a .pyc would look up to date
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert source.stat().st_size == stat.st_size
        await host.reload("live")

        assert await host.tools.invoke("answer") == "bbb"


async def test_a_reload_under_steady_load_loses_no_call(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("old", delay=0.01)
    results: list[str] = []
    errors: list[BaseException] = []
    async with make_host(tmp_path) as host:
        stop = anyio.Event()

        async def caller() -> None:
            while not stop.is_set():
                try:
                    results.append(await host.tools.invoke("answer"))
                except Exception as exc:
                    errors.append(exc)

        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(caller)
            await anyio.sleep(0.2)
            project.write("new", version="1.1.0", delay=0.01)
            event = await host.reload("live")
            await anyio.sleep(0.2)
            stop.set()

    assert errors == []
    assert set(results) == {"old", "new"}
    assert results.index("new") > 0
    assert event.held_calls > 0  # calls arrived during the reload, waited, and answered
    assert 0 < event.longest_hold <= event.duration


async def test_a_syntax_error_rolls_back_and_the_old_tool_still_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    project = Project(tmp_path)
    project.write("old")
    async with make_host(tmp_path) as host:
        project.write("", raw_code="def broken(:\n    pass\n")

        with caplog.at_level(logging.INFO, logger="clawhost"), pytest.raises(ReloadError) as caught:
            await host.reload("live")

        assert caught.value.stage == "activate"
        assert "SyntaxError" in caught.value.reason
        assert host.plugins["live"].state is S.ACTIVE
        assert await host.tools.invoke("answer") == "old"
    messages = [record.getMessage() for record in caplog.records]
    assert "Plugin 'live' changed, reloading..." in messages
    assert "Deactivating 'live' v1.0.0" in messages
    assert "Plugin 'live' rolled back to v1.0.0" in messages


async def test_an_activate_that_raises_in_the_new_version_rolls_back(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("old")
    async with make_host(tmp_path) as host:
        project.write("new", version="2.0.0", activate_body="raise RuntimeError('v2 is broken')")

        with pytest.raises(ReloadError, match="v2 is broken"):
            await host.reload("live")

        assert str(host.plugins["live"].version) == "1.0.0"
        assert await host.tools.invoke("answer") == "old"


async def test_a_new_manifest_that_no_longer_resolves_rolls_back(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("old")
    async with make_host(tmp_path) as host:
        project.write("new", extra_manifest="\n[plugin.dependencies]\nnowhere = '^1'\n")

        with pytest.raises(ReloadError) as caught:
            await host.reload("live")

        assert caught.value.stage == "resolve"
        assert "nowhere" in caught.value.reason
        assert await host.tools.invoke("answer") == "old"


async def test_a_dependent_is_reactivated_against_the_new_version(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("old")
    add_dependent(tmp_path)
    async with make_host(tmp_path) as host:
        assert await host.tools.invoke("relayed") == "relayed old"

        project.write("new", version="1.2.0")
        event = await host.reload("live")

        assert event.dependents == ("relay",)
        assert await host.tools.invoke("relayed") == "relayed new"
        assert host.plugins["relay"].state is S.ACTIVE


async def test_a_failed_plugin_is_tried_again_from_fresh_code(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("", activate_body="raise RuntimeError('bug')")
    async with make_host(tmp_path) as host:
        assert host.plugins["live"].state is S.FAILED

        project.write("fixed")
        await host.reload("live")

        assert await host.tools.invoke("answer") == "fixed"


async def test_applications_are_told_of_every_reload(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("old")
    events: list[ReloadEvent] = []
    async with make_host(tmp_path) as host:
        host.on_reload(events.append)
        project.write("new", version="1.0.1")
        await host.reload("live")
        project.write("", raw_code="x = (\n")
        with pytest.raises(ReloadError):
            await host.reload("live")

    assert [(e.ok, e.new_version, e.stage) for e in events] == [
        (True, "1.0.1", None),
        (False, None, "activate"),
    ]


async def test_a_burst_of_file_events_gives_one_reload(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("v0")
    events: list[ReloadEvent] = []
    reloaded = anyio.Event()

    def record(event: ReloadEvent) -> None:
        events.append(event)
        reloaded.set()

    async with make_host(tmp_path, hot_reload=True, interval=0.5) as host:
        host.on_reload(record)  # hot_reload = true: the host watches from start() on
        for index in range(50):  # 50 writes, as an editor or a git checkout would do
            project.write(f"v{index + 1}")
            (project.folder / f"data-{index}.txt").write_text(str(index))
            await anyio.sleep(0.005)
        with anyio.fail_after(10):
            await reloaded.wait()
        await anyio.sleep(1.0)  # no second reload may follow
        assert await host.tools.invoke("answer") == "v50"

    assert len(events) == 1
    assert events[0].ok


async def test_bytecode_and_editor_files_never_trigger_a_reload(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("same")
    events: list[Any] = []
    async with make_host(tmp_path, hot_reload=True, interval=0.2) as host:
        host.on_reload(events.append)
        cache = project.folder / "__pycache__"
        cache.mkdir(exist_ok=True)
        (cache / "x.cpython-311.pyc").write_bytes(b"\0" * 16)
        (project.folder / ".live.py.swp").write_text("swap")
        (project.folder / "notes.txt~").write_text("backup")
        await anyio.sleep(1.0)

    assert events == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/p/plugin.py", True),
        ("/p/plugin.toml", True),
        ("/p/__pycache__/plugin.cpython-311.pyc", False),
        ("/p/plugin.pyc", False),
        ("/p/.plugin.py.swp", False),
        ("/p/plugin.py~", False),
        ("/p/.git/index", False),
        ("/p/.#plugin.py", False),
    ],
)
def test_which_files_count_as_changes(path: str, expected: bool) -> None:
    assert relevant(path) is expected


def test_editable_installs_and_directory_plugins_are_watched_wheels_are_not(tmp_path: Path) -> None:
    from tests._site import SiteDir, manifest

    site = SiteDir(tmp_path / "site")
    source = tmp_path / "checkout" / "src"
    (source / "editable_pkg").mkdir(parents=True)
    (source / "editable_pkg" / "__init__.py").write_text("")
    (source / "editable_pkg" / "plugin.toml").write_text(manifest("editable"))
    dist_info = site.add(
        "clawdesk-plugin-editable",
        "1.0.0",
        entry_points={"editable": "editable_pkg"},
        files={"_editable.pth": f"{source}\n"},
    )
    direct_url = {"url": source.parent.as_uri(), "dir_info": {"editable": True}}
    (dist_info / "direct_url.json").write_text(json.dumps(direct_url))
    site.add_plugin("wheel-installed")
    project = Project(tmp_path)
    project.write("x")
    host = PluginHost(dirs=[tmp_path / "plugins"], path=[str(site)], cache=False)
    host.discover()

    roots = watch_roots(host)

    assert roots == {"editable": source / "editable_pkg", "live": project.folder}


def test_only_a_plugins_first_event_of_a_burst_crosses_to_the_event_loop() -> None:
    from clawhost.reload.watch import _Pending

    pending = _Pending()
    assert pending.note("weather") is True
    first = pending.last
    assert pending.note("weather") is False  # the burst goes on: only its time moves
    assert pending.last >= first
    assert pending.note("geocoding") is True
    pending.take({"weather"})
    assert pending.note("weather") is True  # handled: the next event starts a new burst
    assert pending.note("geocoding") is False
