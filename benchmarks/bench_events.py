"""Case 5: event dispatch to 1/10/100 handlers, and the overhead of ``tools.invoke``.

Dispatch is compared, in the same process, with a plain loop calling the same handler
functions and catching each one's exception (the floor of an isolated broadcast), and with
pluggy's own hook call over the same implementations. Every handler runs in its plugin's
sandbox scope and under its deadline, which costs a fixed amount per handler; so two
handler bodies are measured: a trivial one (appending to a list) and one doing about a
microsecond of work.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._harness import Row, measure

DISPATCH = """
import anyio, hashlib, pluggy, statistics
from clawhost import PluginHost, Message, hookimpl
from clawhost import hookspecs

N, WORK, ROUNDS = {n}, {work!r}, 200
sink = []

def make(i):
    class Handler:
        @hookimpl
        def on_message_received(self, message):
            if WORK:
                sink.append(hashlib.sha1(message.text.encode()).digest())
            else:
                sink.append(message)
    return (f"plugin{{i}}", Handler())

plugins = [make(i) for i in range(N)]
manager = pluggy.PluginManager(hookspecs.PROJECT)
manager.add_hookspecs(hookspecs)
for name, obj in plugins:
    manager.register(type(obj)(), name=name)

async def main():
    async with PluginHost.test_instance(*plugins) as host:
        message = Message("hello world")
        handlers = [handler[1] for handler in host.events._handlers["on_message_received"]]
        relay = manager.hook.on_message_received
        async def plain():  # the floor of an isolated broadcast: each handler's error caught
            for handler in handlers:
                try:
                    handler(message)
                except Exception as exc:
                    sink.append(exc)
        async def with_pluggy():
            relay(message=message)
        async def with_clawhost():
            await host.events.dispatch("on_message_received", message=message)
        # Interleaved, so that a burst of load on a shared machine hits all three alike.
        samples = {{"plain": [], "pluggy": [], "clawhost": []}}
        runs = (("plain", plain), ("pluggy", with_pluggy), ("clawhost", with_clawhost))
        for _ in range(15):
            for label, run in runs:
                start = _t.perf_counter()
                for _ in range(ROUNDS):
                    await run()
                samples[label].append((_t.perf_counter() - start) / ROUNDS * 1e6)
                sink.clear()
        return {{label: statistics.median(values) for label, values in samples.items()}}

OP_START = _t.perf_counter()
EXTRA = anyio.run(main)
OP_END = _t.perf_counter()
"""

INVOKE = """
import anyio, statistics
from clawhost import PluginHost, PluginContext, hookimpl, tool

@tool
async def echo_async(x: int) -> int:
    \"\"\"Echo.\"\"\"
    return x

@tool(thread=False)
def echo_inline(x: int) -> int:
    \"\"\"Echo.\"\"\"
    return x

@tool
def echo_thread(x: int) -> int:
    \"\"\"Echo.\"\"\"
    return x

class Tools:
    @hookimpl
    def activate(self, ctx):
        for fn in (echo_async, echo_inline, echo_thread):
            ctx.register_tool(fn)

async def main():
    async with PluginHost.test_instance(("tools", Tools())) as host:
        results = {{}}
        async def direct_async():
            await echo_async(1)
        async def direct_sync():
            echo_inline(1)
        cases = (
            ("direct async", direct_async, 2000),
            ("invoke async", lambda: host.tools.invoke("echo_async", {{"x": 1}}), 2000),
            ("direct sync", direct_sync, 2000),
            ("invoke sync inline", lambda: host.tools.invoke("echo_inline", {{"x": 1}}), 2000),
            ("invoke sync thread", lambda: host.tools.invoke("echo_thread", {{"x": 1}}), 300),
        )
        for label, run, rounds in cases:
            samples = []
            for _ in range(5):
                start = _t.perf_counter()
                for _ in range(rounds):
                    await run()
                samples.append((_t.perf_counter() - start) / rounds * 1e6)
            results[label] = statistics.median(samples)
        return results

OP_START = _t.perf_counter()
EXTRA = anyio.run(main)
OP_END = _t.perf_counter()
"""


def run(sizes: Sequence[int], repeats: int) -> list[Row]:
    del sizes  # the handler counts are fixed: 1, 10, 100
    rows: list[Row] = []
    for work in (False, True):
        body = "~1 us of work" if work else "trivial"
        for n in (1, 10, 100):
            sample = measure({"dispatch": DISPATCH.format(n=n, work=work)}, repeats)["dispatch"]
            plain, pluggy_us, ours = (sample.extra[k] for k in ("plain", "pluggy", "clawhost"))
            rows.append(Row("events", n, f"plain loop ({body} handlers)", plain / 1e3))
            rows.append(
                Row(
                    "events",
                    n,
                    f"pluggy hook call ({body})",
                    pluggy_us / 1e3,
                    "plain loop",
                    pluggy_us / plain,
                )
            )
            ratio = ours / plain
            rows.append(
                Row(
                    "events",
                    n,
                    f"clawhost dispatch ({body})",
                    ours / 1e3,
                    "plain loop",
                    ratio,
                    target="<= 1.5x",
                    met=ratio <= 1.5,
                    note=f"{(ours - plain) / n:.2f} us of guard per handler",
                )
            )
            rows.append(
                Row(
                    "events",
                    n,
                    f"clawhost dispatch vs pluggy ({body})",
                    ours / 1e3,
                    "pluggy hook call",
                    ours / pluggy_us,
                    target="< 1x",
                    met=ours < pluggy_us,
                )
            )
    sample = measure({"invoke": INVOKE.format()}, repeats)["invoke"]
    for kind, direct in (
        ("async", "direct async"),
        ("sync inline", "direct sync"),
        ("sync thread", "direct sync"),
    ):
        invoked = sample.extra[f"invoke {kind}"]
        base = sample.extra[direct]
        rows.append(
            Row(
                "tools.invoke",
                None,
                f"invoke, {kind} tool",
                invoked / 1e3,
                direct,
                invoked / base,
                note=f"overhead {invoked - base:.1f} us per call",
            )
        )
    return rows
