"""Case 6: hot reload latency, and the longest a held call waited.

For a plugin of 1 and of 20 modules, in the same process: ``importlib.reload`` of its
modules (the baseline: it swaps code and nothing else), ``host.reload(name)`` (the whole
transaction: hold, deactivate, re-import, re-resolve, activate, release), and file saved →
new version answering through the watcher (which adds the debounce window, set to 50 ms
here), with ten callers hammering the tool throughout.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._harness import Row, measure

RELOAD = """
import anyio, importlib, os, statistics, sys, tempfile, textwrap, uuid
from pathlib import Path
from clawhost import HostConfig, PluginHost

MODULES = {modules}
root = Path(tempfile.mkdtemp(prefix="clawhost-reload-bench-"))
folder = root / "plugins" / "bench"
package = "bench_" + uuid.uuid4().hex[:8]
(folder / package).mkdir(parents=True)
(folder / "plugin.toml").write_text(textwrap.dedent(f'''
    [plugin]
    name = "bench"
    version = "1.0.0"
    entry = "{{package}}"
    [plugin.capabilities]
    tools = ["answer"]
'''))

def write(generation):
    helpers = "".join(f"from . import helper{{i}}\\n" for i in range(1, MODULES))
    for i in range(1, MODULES):
        helper = folder / package / f"helper{{i}}.py"
        helper.write_text(f"VALUE = {{generation}}\\n" + "x = 1\\n" * 40)
    (folder / package / "__init__.py").write_text(helpers + textwrap.dedent(f'''
        from clawhost import hookimpl, tool
        GENERATION = {{generation}}
        @tool
        async def answer() -> int:
            \\"\\"\\"The generation.\\"\\"\\"
            return GENERATION
        @hookimpl
        def activate(ctx):
            ctx.register_tool(answer)
    '''))

write(0)
settings = {{"plugins": {{"hot_reload": True, "watch_interval_secs": 0.05}}}}
config = HostConfig.from_mapping(settings, base_dir=root)

async def main():
    results = {{}}
    async with PluginHost(config=config, dirs=[root / "plugins"], path=[], cache=False) as host:
        # importlib.reload of the same modules (baseline)
        names = [name for name in sys.modules if name == package or name.startswith(package + ".")]
        samples = []
        for generation in range(1, 6):
            write(generation)
            start = _t.perf_counter()
            importlib.invalidate_caches()
            for name in sorted(names, reverse=True):
                importlib.reload(sys.modules[name])
            samples.append(_t.perf_counter() - start)
        results["importlib"] = statistics.median(samples) * 1e3
        # host.reload, with callers hammering the tool
        samples, holds = [], []
        stop = anyio.Event()
        async def caller():
            while not stop.is_set():
                await host.tools.invoke("answer")
                await anyio.sleep(0)  # a real caller yields (it waits on a network)
        async with anyio.create_task_group() as group:
            for _ in range(10):
                group.start_soon(caller)
            for generation in range(10, 15):
                write(generation)
                start = _t.perf_counter()
                event = await host.reload("bench")
                samples.append(_t.perf_counter() - start)
                holds.append(event.longest_hold)
                assert await host.tools.invoke("answer") == generation
            # file saved -> new version answering, through the watcher the host runs
            # itself (hot_reload = true; a second one, host.watch(), would reload twice)
            watched = []
            await anyio.sleep(0.3)
            for generation in range(20, 25):
                start = _t.perf_counter()
                write(generation)
                while await host.tools.invoke("answer") != generation:
                    await anyio.sleep(0.001)
                watched.append(_t.perf_counter() - start)
                await anyio.sleep(0.2)
            stop.set()
            group.cancel_scope.cancel()
        results["reload"] = statistics.median(samples) * 1e3
        results["longest_hold"] = max(holds) * 1e3
        results["watched"] = statistics.median(watched) * 1e3
    return results

OP_START = _t.perf_counter()
EXTRA = anyio.run(main)
OP_END = _t.perf_counter()
"""


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    del sizes
    rows: list[Row] = []
    for modules in (1, 20):
        sample = measure({"reload": RELOAD.format(modules=modules)}, max(3, repeats // 3))["reload"]
        base = sample.extra["importlib"]
        reload_ms = sample.extra["reload"]
        rows.append(
            Row(
                "hot reload",
                modules,
                "importlib.reload of the modules",
                base,
                note="baseline: code swap only",
            )
        )
        rows.append(
            Row(
                "hot reload",
                modules,
                "host.reload (whole transaction, under load)",
                reload_ms,
                "importlib.reload",
                reload_ms / base if base else None,
            )
        )
        rows.append(
            Row(
                "hot reload",
                modules,
                "file saved -> new version answering",
                sample.extra["watched"],
                note="includes the 50 ms debounce window",
            )
        )
        rows.append(Row("hot reload", modules, "longest held call", sample.extra["longest_hold"]))
    return rows
