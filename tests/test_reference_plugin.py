"""The reference plugin (examples/reference/ops): every manifest section, each surface used
through the host the way an operator would."""

from __future__ import annotations

import anyio
import httpx

from clawhost import Message, PluginHost, PluginState
from clawhost.config.host import load_host_config
from clawhost.runtime.shape import classify

from .conftest import REPO

REFERENCE = REPO / "examples" / "reference"


async def test_the_reference_plugin_offers_every_surface() -> None:
    config = load_host_config(REFERENCE / "config.toml")
    host = PluginHost(config=config, path=[], cache=False)  # only its directory plugin
    async with host:
        record = host.plugins["ops"]
        assert record.state is PluginState.ACTIVE, record.failure
        assert classify(record.manifest, host.context.registrations("ops")) == (
            "hybrid",
            ("channels", "http", "pipeline_stages", "providers", "tools"),
        )
        assert await host.tools.invoke("ops_uptime") >= 0
        # the supervised channel runs its three messages through the pipeline, then ends
        with anyio.fail_after(10):
            while host.channel_status()[0]["state"] != "stopped":  # noqa: ASYNC110
                await anyio.sleep(0.02)
        [channel] = host.channel_status()
        assert (channel["plugin"], channel["instance"], channel["restarts"]) == ("ops", "ticker", 0)
        assert await host.admin.call("ops.counters") == {"messages": 3, "http": 0}
        # the provider answers, the stage counts
        provider = host.providers.get("ops")
        processed = await host.pipeline.process(Message("hi"))
        assert processed.message is not None
        assert await provider.reply(processed.message, None) == "hi: message 4"
        transport = httpx.ASGITransport(app=host.http_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            page = await http.get("/plugins/ops/stats")
            health = await http.get("/plugins/ops/health")
            status = (await http.get("/status.json")).json()
        assert page.json() == {"route": "/stats", "counters": {"messages": 4, "http": 1}}
        assert health.json()["healthy"] is True
        assert status["channels"][0]["state"] == "stopped"
        assert await host.admin.call("ops.reset", {"name": "http"}) == {"messages": 4, "http": 0}
        await host.deactivate("ops")
        assert host.context.registrations("ops").is_empty()
