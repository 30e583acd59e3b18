"""Case: the resolve stage (``clawhost.resolve_plan``) on a realistic plugin graph.

Each plugin requires 0-3 plugins listed before it, with caret ranges. Three shapes:

* 1 candidate: one version of every plugin (the usual installation);
* 5 candidates: versions 1.0.0, 1.1.0, 1.2.0, 2.0.0 and 2.1.0 of every plugin; 1.x
  versions require ``^1.x`` of their dependencies and 2.x versions ``^2.0``, so the newest
  of everything fits;
* 5 candidates, 2% laggards: as above, but one plugin in fifty has no 2.x-compatible
  release (every version requires ``^1.x``), which drags its dependencies, their other
  dependents, and so on, back to 1.x: real choices.

Baseline: ``graphlib.TopologicalSorter(...).static_order()`` on the same plugin graph, in
the same run. Target: under 50 ms at N = 1000 with one candidate each.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._harness import Row, measure

GRAPH = """
import random
from clawhost import DiscoveredPlugin, Manifest, PluginSource, SourceKind

def graph(n, k, laggards, seed=7):
    rng = random.Random(seed)
    releases = ["1.2.0"] if k == 1 else ["1.0.0", "1.1.0", "1.2.0", "2.0.0", "2.1.0"][:k]
    deps = {{i: rng.sample(range(i), rng.randint(0, min(3, i))) for i in range(n)}}
    lagging = {{i for i in range(n) if rng.random() < laggards}}
    candidates = []
    for i in range(n):
        name = f"plugin-{{i:04d}}"
        for version in releases:
            major = 2 if version.startswith("2") and i not in lagging else 1
            requires = {{f"plugin-{{d:04d}}": f"^{{major}}.{{rng.randint(0, 1)}}" for d in deps[i]}}
            manifest = Manifest.model_validate(
                {{"name": name, "version": version, "dependencies": requires,
                 "min_clawdesk_version": "0.1.0"}}
            )
            folder = f"/plugins/{{name}}-{{version}}"
            source = PluginSource(SourceKind.DIRECTORY, name.replace("-", "_"), folder, folder)
            candidates.append(
                DiscoveredPlugin(name, version, source, folder + "/plugin.toml", manifest=manifest)
            )
    edges = {{f"plugin-{{i:04d}}": [f"plugin-{{d:04d}}" for d in deps[i]] for i in range(n)}}
    return candidates, edges

candidates, edges = graph({n}, {k}, {laggards})
"""

CLAWHOST = (
    GRAPH
    + """
import clawhost
resolve_plan = clawhost.resolve_plan
OP_START = _t.perf_counter()
resolution = resolve_plan(candidates, host_version="1.0.0")
OP_END = _t.perf_counter()
assert not resolution.failures, list(resolution.failures.items())[:3]
assert len(resolution.selected) == {n}
EXTRA = {{
    "levels": len(resolution.plan.levels),
    "on_1x": sum(1 for plugin in resolution.selected.values() if plugin.version.major == 1),
}}
"""
)

TOPOLOGICAL = (
    GRAPH
    + """
import graphlib
OP_START = _t.perf_counter()
order = tuple(graphlib.TopologicalSorter(edges).static_order())
OP_END = _t.perf_counter()
assert len(order) == {n}
"""
)

SHAPES = (
    ("1 candidate", 1, 0.0),
    ("5 candidates", 5, 0.0),
    ("5 candidates, 2% laggards", 5, 0.02),
)
TARGET_MS = 50.0


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    rows: list[Row] = []
    for n in sizes:
        programs = {"graphlib": TOPOLOGICAL.format(n=n, k=1, laggards=0.0)}
        for label, k, laggards in SHAPES:
            programs[label] = CLAWHOST.format(n=n, k=k, laggards=laggards)
        samples = measure(programs, repeats)
        base = samples["graphlib"].op_ms
        rows.append(
            Row("resolve", n, "graphlib.TopologicalSorter", base, note="baseline; no versions")
        )
        for label, k, _ in SHAPES:
            sample = samples[label]
            targeted = k == 1 and n >= 1000
            on_1x = sample.extra["on_1x"]
            rows.append(
                Row(
                    "resolve",
                    n,
                    f"clawhost resolve_plan, {label}",
                    sample.op_ms,
                    baseline="graphlib",
                    ratio=sample.op_ms / base,
                    target=f"< {TARGET_MS:g} ms" if targeted else None,
                    met=sample.op_ms < TARGET_MS if targeted else None,
                    note=f"{sample.extra['levels']} levels; {on_1x} of {n} on 1.x" if k > 1 else "",
                    details={"process_ms": sample.process_ms, "import_ms": sample.import_ms},
                )
            )
    return rows
