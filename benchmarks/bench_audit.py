"""Case 2: what the sandbox costs, and how promptly a deadline stops plugin code.

* ``open()`` in a process without the audit hook, with it in host code (no scope), and
  with it in plugin code (inside a scope, an allowed path); each variant runs in its own
  process because the hook cannot be removed. Each figure is the best of five batches
  inside a process (the operation's own cost), then the median over processes. Target:
  host code within 1.1x.
* Dispatching an event to 100 trivial handlers: a plain loop against ``call_inline`` (what
  the host uses for cheap handlers) and ``call_plugin(sync_in_thread=False)``.
* Timeout precision: how long after a 200 ms deadline ``PluginTimeout`` is raised for a
  busy loop or a blocking call, in a worker thread or on the event loop.

``N`` is ignored: the operations do not grow with the number of plugins.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._harness import Row, measure

OPENS = 10_000
ROUNDS = 40
BATCHES = 5
LIMIT = 0.2

OPEN = """
BATCHES = {batches}
import os, tempfile
from pathlib import Path
{setup}
target = Path(tempfile.mkdtemp()) / "file.txt"
target.write_text("x")
path = str(target)
{enter}
for _ in range(200):  # warm up
    open(path).close()
# The best of several batches: the cost of open() itself, not of the machine's hiccups.
batches = []
OP_START = _t.perf_counter()
for _ in range(BATCHES):
    started = _t.perf_counter()
    for _ in range({opens} // BATCHES):
        open(path).close()
    batches.append(_t.perf_counter() - started)
OP_END = _t.perf_counter()
EXTRA = {{"best_ms": min(batches) * BATCHES * 1e3}}
"""

SCOPE = """
from clawhost.discovery.manifest import Permissions
from clawhost.sandbox.permissions import SandboxScope, grant_permissions, enter_scope
def make_scope(folder):
    permissions = grant_permissions(
        "bench", Permissions(filesystem=(folder,)), fs_allowed=[folder], net_allowed=[],
        allow_subprocess=False, package_dir=None,
    )
    return SandboxScope(permissions)
"""

DISPATCH = """
BATCHES = {batches}
import anyio
from clawhost.sandbox.limits import call_inline, call_plugin
handlers = [lambda message, i=i: None for i in range(100)]
batches = []
async def main():
    global OP_START, OP_END
    OP_START = _t.perf_counter()
    for _ in range(BATCHES):
        started = _t.perf_counter()
        {loop}
        batches.append(_t.perf_counter() - started)
    OP_END = _t.perf_counter()
anyio.run(main)
EXTRA = {{"best_ms": min(batches) * BATCHES * 1e3}}
"""

DISPATCH_LOOPS = {
    "plain loop": "for _ in range({rounds}):\n            for h in handlers: h('m')",
    "call_inline": (
        "for _ in range({rounds}):\n            for h in handlers: "
        "call_inline(h, 'm', plugin='p', operation='event', timeout=1.0)"
    ),
    "call_plugin inline": (
        "for _ in range({rounds}):\n            for h in handlers: await call_plugin("
        "h, 'm', plugin='p', operation='event', timeout=1.0, sync_in_thread=False)"
    ),
}

TIMEOUT = """
import functools, time, anyio
from clawhost.sandbox.limits import call_plugin
from clawhost.sandbox.watchdog import enable_signal_interrupts
from clawhost.errors import PluginTimeout
{setup}
def spin():
    while True:
        time.monotonic()
async def spin_async():
    spin()
async def sleep_async():
    time.sleep(5)
async def main():
    try:
        await call_plugin({fn}, plugin="p", operation="o", timeout={limit}{options})
    except PluginTimeout as exc:
        EXTRA["interrupted"] = int(exc.interrupted)
EXTRA = {{}}
anyio.run(functools.partial(call_plugin, lambda: 0, plugin="p", operation="w", timeout=1.0))
OP_START = _t.perf_counter()
anyio.run(main)
OP_END = _t.perf_counter()
"""

TIMEOUT_CASES = {
    "sync busy loop, worker thread": ("spin", ""),
    "sync time.sleep, worker thread": ("time.sleep, 5", ""),
    "sync busy loop, inline on the loop": ("spin", ", sync_in_thread=False"),
    "async busy loop": ("spin_async", ""),
    "async time.sleep (default)": ("sleep_async", ""),
    "async time.sleep (signal interrupts)": ("sleep_async", ""),
}


def _open_rows(repeats: int) -> list[Row]:
    programs = {
        "no hook": OPEN.format(setup="", enter="", opens=OPENS, batches=BATCHES),
        "host code": OPEN.format(
            setup=SCOPE, enter="make_scope(str(target.parent))", opens=OPENS, batches=BATCHES
        ),
        "plugin code": OPEN.format(
            setup=SCOPE,
            enter="enter_scope(make_scope(str(target.parent)))",
            opens=OPENS,
            batches=BATCHES,
        ),
    }
    samples = {name: sample.extra["best_ms"] for name, sample in measure(programs, repeats).items()}
    base = samples["no hook"]
    rows = [Row("audit", None, f"{OPENS:,} open(), no audit hook", base, note="baseline")]
    for name, target in (("host code", 1.1), ("plugin code", None)):
        ratio = samples[name] / base
        rows.append(
            Row(
                "audit",
                None,
                f"{OPENS:,} open(), hook installed, {name}",
                samples[name],
                baseline="no hook",
                ratio=ratio,
                target=f"<= {target}x" if target else None,
                met=ratio <= target if target else None,
                note=f"{samples[name] / OPENS * 1e3:.2f} us per open()",
            )
        )
    return rows


def _dispatch_rows(repeats: int) -> list[Row]:
    programs = {
        name: DISPATCH.format(loop=loop.format(rounds=ROUNDS), batches=BATCHES)
        for name, loop in DISPATCH_LOOPS.items()
    }
    samples = {name: sample.extra["best_ms"] for name, sample in measure(programs, repeats).items()}
    base = samples["plain loop"]
    events = ROUNDS * BATCHES
    rows = []
    for name, value in samples.items():
        plain = name == "plain loop"
        rows.append(
            Row(
                "dispatch",
                100,
                f"{events} events to 100 no-op handlers: {name}",
                value,
                baseline=None if plain else "plain loop",
                ratio=None if plain else value / base,
                note="" if plain else f"+{(value - base) / events / 100 * 1e3:.2f} us a handler",
            )
        )
    return rows


def _timeout_rows(repeats: int) -> list[Row]:
    programs = {}
    for name, (fn, options) in TIMEOUT_CASES.items():
        setup = "enable_signal_interrupts()" if "signal" in name else ""
        programs[name] = TIMEOUT.format(setup=setup, fn=fn, options=options, limit=LIMIT)
    samples = measure(programs, repeats)
    rows = []
    for name, sample in samples.items():
        late = sample.op_ms - LIMIT * 1e3
        interrupted = sample.extra.get("interrupted")
        rows.append(
            Row(
                "timeout",
                None,
                f"{name}: raised after the {LIMIT * 1e3:.0f} ms deadline",
                late,
                note="code stopped" if interrupted else "runs on in the background",
                details={"interrupted": interrupted},
            )
        )
    return rows


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    """Rows for the open() overhead, event dispatch, and timeout precision."""
    return [*_open_rows(repeats), *_dispatch_rows(repeats), *_timeout_rows(repeats)]
