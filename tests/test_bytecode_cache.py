"""A plugin imported inside its sandbox scope still gets its bytecode cached.

The scope may not write to the plugin's folder, so without help Python could not write
the ``__pycache__`` of a plugin installed without bytecode (uv's default, or
``pip install --no-compile``) and compiled it again at every start. What the host writes
is the source's own bytecode: plugin code cannot use the import system to plant bytes.
"""

from __future__ import annotations

import importlib.util
import marshal
import sys
from pathlib import Path

import pytest

from clawhost import PluginHost
from clawhost.core.state import PluginState

from ._site import directory_plugin
from .conftest import example_wheel, pip

pytestmark = pytest.mark.anyio


def cached_bytecode(source: Path) -> bytes | None:
    """What ``__pycache__`` holds for ``source``, if anything."""
    cached = Path(importlib.util.cache_from_source(str(source)))
    return cached.read_bytes() if cached.exists() else None


@pytest.fixture(autouse=True)
def _bytecode_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


async def test_a_plugin_installed_without_bytecode_gets_it_cached_at_first_import(
    wheelhouse: Path, tmp_path: Path
) -> None:
    target = tmp_path / "site-packages"
    pip(
        "install",
        "--no-deps",
        "--no-compile",
        "--target",
        target,
        example_wheel(wheelhouse, "clawdesk-plugin-geocoding"),
    )
    source = target / "clawdesk_plugin_geocoding" / "__init__.py"
    assert cached_bytecode(source) is None
    async with PluginHost(path=[str(target)], dirs=(), cache=False) as host:
        assert host.plugins["geocoding"].state is PluginState.ACTIVE
    written = cached_bytecode(source)
    assert written is not None
    assert written[:4] == importlib.util.MAGIC_NUMBER


PROBE = """
import importlib.util
from importlib.machinery import SourceFileLoader
from clawhost import hookimpl, tool

@tool
def probe(own: str, other: str) -> dict:
    \"\"\"Try to write bytecode through the import system.\"\"\"
    # set_data swallows OSError (the import system treats a cache it cannot write as
    # no cache), so what counts is what lands on disk.
    for name, path in (("own", own), ("other", other)):
        SourceFileLoader(name, path).set_data(importlib.util.cache_from_source(path), b"planted")
    return {"asked": 2}

class Plugin:
    @hookimpl
    def activate(self, ctx):
        ctx.register_tool(probe)
"""


async def test_plugin_code_cannot_plant_bytecode_through_the_import_system(
    tmp_path: Path,
) -> None:
    folder = directory_plugin(
        tmp_path / "plugins",
        "prober",
        PROBE,
        entry_object="Plugin",
        sections={"c": '[plugin.capabilities]\ntools = ["probe"]'},
    )
    own = next(folder.glob("*.py"))  # the plugin's own module: it may read it
    other = tmp_path / "elsewhere" / "victim.py"  # outside what the plugin may read
    other.parent.mkdir()
    other.write_text("VALUE = 1\n")
    async with PluginHost(dirs=[tmp_path / "plugins"], path=[], cache=False) as host:
        results = await host.tools.invoke("probe", own=str(own), other=str(other))
    assert results == {"asked": 2}
    written = cached_bytecode(own)
    assert written is not None
    assert written[:4] == importlib.util.MAGIC_NUMBER  # the source's bytecode, not "planted"
    assert marshal.loads(written[16:]).co_filename == str(own)
    assert cached_bytecode(other) is None
