"""Cases 2 and 3: start-up to "all plugins active", and the cost of ``import clawhost``.

Case 2 uses the same installed fake plugin distributions for everyone (each plugin's entry
point names a class with an ``activate`` hook registering two tools). Baselines:
stevedore's ``ExtensionManager(invoke_on_load=True)`` (imports every plugin and
instantiates its class), cold and with stevedore's entry-point cache warm, and pluggy's
``load_setuptools_entrypoints`` (imports and registers every plugin). clawhost's eager
start-up does all of that and more (manifests, resolution, the activate hooks under each
plugin's limits); its lazy start-up activates nothing that only offers tools, so it should
not grow with N: target within 2x of the smallest N, up to N = 5000. The floor of eager
start-up is the bare import of the same plugin modules (``importlib.import_module`` in a
loop, instantiating each entry point's class), in the same kind of process with clawhost
already imported: what any loader must at least pay.

Case 3 times ``python -c "import clawhost"`` against ``python -c "pass"`` and
``python -c "import importlib.metadata"``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ._harness import Row, measure
from .fakes import build_site

GROUP = "clawdesk.plugins"

STEVEDORE = """
import os, sys, shutil
sys.path.insert(0, {site!r})
os.environ["XDG_CACHE_HOME"] = {cache!r}
if {clear!r}:
    shutil.rmtree({cache!r}, ignore_errors=True)
from stevedore import ExtensionManager
OP_START = _t.perf_counter()
manager = ExtensionManager(namespace={group!r}, invoke_on_load=True)
OP_END = _t.perf_counter()
EXTRA = {{"plugins": len(manager.extensions)}}
"""

PLUGGY = """
import sys
sys.path.insert(0, {site!r})
import pluggy
from clawhost import hookspecs
manager = pluggy.PluginManager(hookspecs.PROJECT)
manager.add_hookspecs(hookspecs)
OP_START = _t.perf_counter()
loaded = manager.load_setuptools_entrypoints({group!r})
OP_END = _t.perf_counter()
EXTRA = {{"plugins": loaded}}
"""

FLOOR = """
import sys, importlib
sys.path.insert(0, {site!r})
import clawhost
clawhost.hookimpl, clawhost.tool  # imports, untimed (the plugins' own imports)
names = [f"clawdesk_plugin_bench{{index:05d}}" for index in range({n})]  # fakes.plugin_name
OP_START = _t.perf_counter()
objects = [importlib.import_module(name).Plugin() for name in names]
OP_END = _t.perf_counter()
EXTRA = {{"plugins": len(objects)}}
"""

CLAWHOST = """
import sys
sys.path.insert(0, {site!r})
import anyio
import clawhost
PluginHost, DiscoveryCache = clawhost.PluginHost, clawhost.DiscoveryCache
import clawhost.host.host, clawhost.resolution.resolve  # imports, untimed
import clawhost.sandbox.limits, clawhost.sandbox.permissions  # imports, untimed
cache = DiscoveryCache({cache!r}) if {cache!r} else False
host = None

config = clawhost.HostConfig.from_mapping(
    {{"plugins": {{"sandbox": {{"net_allowed": ["api.example.com:443"]}}}}}}
)

async def main():
    global host
    host = PluginHost(config=config, cache=cache, lazy={lazy!r}, group={group!r})
    await host.start()

OP_START = _t.perf_counter()
anyio.run(main)
OP_END = _t.perf_counter()
active = sum(record.is_active for record in host.plugins.values())
EXTRA = {{"active": active, "tools": len(host.tools.list())}}
"""


def _prime_discovery(site: str, cache: str) -> None:
    code = CLAWHOST.format(site=site, cache=cache, lazy=True, group=GROUP)
    deadline = time.monotonic() + 10
    while True:
        measure({"prime": code}, 1)
        if any(Path(cache).glob("discovery-*")) or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    rows: list[Row] = []
    lazy_by_n: dict[int, float] = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="clawhost-bench-") as tmp:
            site = str(build_site(Path(tmp) / "site", n))
            stevedore_cache = str(Path(tmp) / "stevedore-cache")
            discovery_cache = str(Path(tmp) / "discovery-cache")
            common = {"site": site, "group": GROUP}
            # the priming runs also write every plugin's bytecode, so no timed run does
            measure({"prime": STEVEDORE.format(**common, cache=stevedore_cache, clear=True)}, 1)
            _prime_discovery(site, discovery_cache)
            samples = measure(
                {
                    "import floor": FLOOR.format(site=site, n=n),
                    "stevedore cold": STEVEDORE.format(**common, cache=stevedore_cache, clear=True),
                    "stevedore warm": STEVEDORE.format(
                        **common, cache=stevedore_cache, clear=False
                    ),
                    "pluggy": PLUGGY.format(**common),
                    "eager cold": CLAWHOST.format(**common, cache="", lazy=False),
                    "eager warm": CLAWHOST.format(**common, cache=discovery_cache, lazy=False),
                    "lazy warm": CLAWHOST.format(**common, cache=discovery_cache, lazy=True),
                },
                repeats,
            )
        assert samples["eager warm"].extra["active"] >= n, samples["eager warm"].extra
        assert samples["eager cold"].extra["active"] >= n, samples["eager cold"].extra
        stevedore_warm = samples["stevedore warm"].op_ms
        for label in ("import floor", "stevedore cold", "stevedore warm", "pluggy"):
            rows.append(
                Row("start-up (all active)", n, label, samples[label].op_ms, note="baseline")
            )
        for label, baselines in (
            (
                "eager cold",
                (("stevedore cold", "< 1x"), ("pluggy", "< 1x"), ("import floor", "<= 1.2x")),
            ),
            (
                "eager warm",
                (("stevedore warm", "< 1x"), ("pluggy", "< 1x"), ("import floor", "<= 1.2x")),
            ),
        ):
            for baseline, target in baselines:
                ratio = samples[label].op_ms / samples[baseline].op_ms
                rows.append(
                    Row(
                        "start-up (all active)",
                        n,
                        f"clawhost {label}",
                        samples[label].op_ms,
                        baseline,
                        ratio,
                        target=target,
                        met=ratio < 1 if target == "< 1x" else ratio <= 1.2,
                        details={"process_ms": samples[label].process_ms},
                    )
                )
        lazy_by_n[n] = samples["lazy warm"].op_ms
        smallest = min(lazy_by_n)
        flat = samples["lazy warm"].op_ms / lazy_by_n[smallest]
        rows.append(
            Row(
                "start-up (lazy)",
                n,
                "clawhost lazy, warm cache",
                samples["lazy warm"].op_ms,
                f"lazy N={smallest}",
                flat,
                target="<= 2x" if n != smallest else None,
                met=flat <= 2 if n != smallest else None,
                note=f"stevedore warm: {stevedore_warm:.1f} ms; activates nothing tool-only",
            )
        )
    rows.extend(_import_time(repeats))
    return rows


def _import_time(repeats: int) -> list[Row]:
    programs = {
        "pass": "pass",
        "importlib.metadata": "import importlib.metadata",
        "clawhost": "import clawhost",
        "clawhost + PluginHost": "import clawhost; clawhost.PluginHost",
    }
    times: dict[str, list[float]] = {name: [] for name in programs}
    for _ in range(max(repeats, 9)):
        for name, code in programs.items():
            started = time.perf_counter()
            subprocess.run([sys.executable, "-I", "-c", code], check=True)
            times[name].append((time.perf_counter() - started) * 1e3)
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["pass"]
    rows = [Row("import", None, "python -c pass", base, note="interpreter start-up")]
    for name in ("importlib.metadata", "clawhost", "clawhost + PluginHost"):
        value = medians[name]
        target = "<= 35 ms" if name == "clawhost" else None
        rows.append(
            Row(
                "import",
                None,
                f"python -c 'import {name}'"
                if "+" not in name
                else "import clawhost; clawhost.PluginHost",
                value,
                "python -c pass",
                value / base,
                target=target,
                met=value <= 35 if target else None,
                note=f"{value - base:.1f} ms over a bare interpreter",
            )
        )
    return rows
