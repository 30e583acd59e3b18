"""Case 7: the cost of process isolation: one tool call, in-process against in a worker.

Two directory plugins with the same code (an async and a sync echo tool), one activated
in-process and one with ``isolation = "process"``, in one host. A call into the worker
crosses two pipes and two JSON encodings each way, and the worker's own event loop; the
figure to read is the per-call overhead. Activation of the isolated plugin (starting an
interpreter that imports clawhost, then importing and activating the plugin) is reported
too.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._harness import Row, measure

PROGRAM = """
import anyio, statistics, tempfile, textwrap
from pathlib import Path
from clawhost import HostConfig, PluginHost

CODE = '''
from clawhost import hookimpl, tool

@tool(name="{{name}}_async")
async def echo_async(x: int) -> int:
    \\"\\"\\"Echo.\\"\\"\\"
    return x

@tool(name="{{name}}_sync")
def echo_sync(x: int) -> int:
    \\"\\"\\"Echo.\\"\\"\\"
    return x

@hookimpl
def activate(ctx):
    ctx.register_tool(echo_async)
    ctx.register_tool(echo_sync)
'''

def write(root, name):
    folder = root / "plugins" / f"{{name}}-1.0.0"
    folder.mkdir(parents=True)
    (folder / "plugin.toml").write_text(
        f'[plugin]\\nname = "{{name}}"\\nversion = "1.0.0"\\nentry = "bench_{{name}}"\\n'
        f'[plugin.capabilities]\\ntools = ["{{name}}_async", "{{name}}_sync"]\\n'
    )
    (folder / f"bench_{{name}}.py").write_text(CODE.replace("{{name}}", name))

async def main():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write(root, "inproc")
        write(root, "isolated")
        config = HostConfig.from_mapping(
            {{"plugins": {{"isolated": {{"isolation": "process"}}}}}}, base_dir=root
        )
        host = PluginHost(config=config, dirs=[root / "plugins"], cache=False)
        async with host:
            results = {{"activate isolated": host.plugins["isolated"].timings["activate"] * 1e6,
                        "activate inproc": host.plugins["inproc"].timings["activate"] * 1e6}}
            for name, rounds in (("inproc", 2000), ("isolated", 300)):
                for kind in ("async", "sync"):
                    tool = f"{{name}}_{{kind}}"
                    samples = []
                    for _ in range(5):
                        start = _t.perf_counter()
                        for _ in range(rounds):
                            await host.tools.invoke(tool, {{"x": 1}})
                        samples.append((_t.perf_counter() - start) / rounds * 1e6)
                    results[tool] = statistics.median(samples)
        return results

OP_START = _t.perf_counter()
EXTRA = anyio.run(main)
OP_END = _t.perf_counter()
"""


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    del sizes  # one plugin of each kind
    sample = measure({"isolation": PROGRAM.format()}, repeats)["isolation"]
    rows: list[Row] = []
    for kind in ("async", "sync"):
        inproc = sample.extra[f"inproc_{kind}"]
        isolated = sample.extra[f"isolated_{kind}"]
        rows.append(Row("isolation", None, f"invoke, {kind} tool, in-process", inproc / 1e3))
        rows.append(
            Row(
                "isolation",
                None,
                f"invoke, {kind} tool, worker process",
                isolated / 1e3,
                "in-process",
                isolated / inproc,
                note=f"overhead {isolated - inproc:.0f} us per call",
            )
        )
    rows.append(
        Row(
            "isolation",
            None,
            "activate, worker process",
            sample.extra["activate isolated"] / 1e3,
            "in-process",
            sample.extra["activate isolated"] / sample.extra["activate inproc"],
        )
    )
    return rows
