"""OpenTelemetry: spans and metrics through the real SDK, and nothing at all without one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from clawhost import PluginContext, PluginHost, hookimpl, tool
from clawhost.core import telemetry as _telemetry

# The SDK's global providers can be set once per process: set them once for this module.
_SPANS = InMemorySpanExporter()
_METRICS = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def _sdk() -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[_METRICS]))
    _telemetry.refresh_now()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    _SPANS.clear()
    return _SPANS


class Weather:
    @tool
    def forecast(self, city: str) -> str:
        """A forecast."""
        return f"sunny in {city}"

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        ctx.register_tool(self.forecast)


async def test_lifecycle_and_tool_calls_are_traced(spans: InMemorySpanExporter) -> None:
    async with PluginHost.test_instance(("weather", Weather())) as host:
        await host.tools.invoke("forecast", {"city": "Oslo"})

    names = [span.name for span in spans.get_finished_spans()]
    assert names[:3] == ["clawhost.discover", "clawhost.resolve", "clawhost.activate"]
    assert "clawhost.tool" in names
    assert names[-1] == "clawhost.deactivate"
    tool_span = next(span for span in spans.get_finished_spans() if span.name == "clawhost.tool")
    assert tool_span.attributes == {"clawhost.plugin": "weather", "clawhost.tool": "forecast"}
    activate = next(span for span in spans.get_finished_spans() if span.name == "clawhost.activate")
    assert activate.attributes is not None
    assert activate.attributes["clawhost.plugin"] == "weather"


async def test_tool_calls_and_lifecycle_stages_are_counted() -> None:
    async with PluginHost.test_instance(("weather", Weather())) as host:
        await host.tools.invoke("forecast", {"city": "Oslo"})
        await host.tools.invoke("forecast", {"city": "Rome"})

    data = _METRICS.get_metrics_data()
    assert data is not None
    points = {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    calls = [
        p for p in points["clawhost.tool.calls"] if p.attributes.get("clawhost.tool") == "forecast"
    ]
    assert sum(p.value for p in calls) >= 2
    assert any(p.count >= 2 for p in points["clawhost.tool.duration"])
    assert {p.attributes["stage"] for p in points["clawhost.plugin.lifecycle"]} >= {
        "activate",
        "deactivate",
    }


class Counting:
    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        requests = ctx.meter.create_counter("counting.requests")

        @tool
        def count(n: int) -> int:
            """Count n requests."""
            requests.add(n, {"route": "count"})
            return n

        ctx.register_tool(count)


async def test_each_plugin_has_its_own_meter() -> None:
    async with PluginHost.test_instance(("counting", Counting())) as host:
        await host.tools.invoke("count", {"n": 3})
        await host.tools.invoke("count", {"n": 4})

    data = _METRICS.get_metrics_data()
    assert data is not None
    scopes = {
        scope.scope.name: {metric.name: metric for metric in scope.metrics}
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
    }
    own = scopes["clawhost.plugin.counting"]["counting.requests"]
    assert sum(point.value for point in own.data.data_points) == 7
    assert "counting.requests" not in scopes["clawhost"]


def test_without_an_sdk_opentelemetry_is_never_imported() -> None:
    script = (
        "import sys, anyio, clawhost\n"
        "from clawhost import hookimpl\n"
        "class P:\n"
        "    @hookimpl\n"
        "    def activate(self, ctx): pass\n"
        "async def main():\n"
        "    async with clawhost.PluginHost.test_instance(('p', P())) as host:\n"
        "        pass\n"
        "anyio.run(main)\n"
        "print('opentelemetry' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        env=dict(os.environ),
    )

    assert out.stdout.strip() == "False"
