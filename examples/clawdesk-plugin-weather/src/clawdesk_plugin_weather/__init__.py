"""Weather tools for ClawDesk: current conditions and forecasts over HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal

import anyio.to_thread

from clawhost import PluginContext, hookimpl, tool

__all__ = ["WeatherError", "WeatherPlugin"]

Units = Literal["metric", "imperial"]


class WeatherError(RuntimeError):
    """The weather API answered with an error, or not at all."""


class WeatherPlugin:
    """Registers ``get_weather`` and ``get_forecast``; needs the ``geocoder`` provider."""

    def __init__(self) -> None:
        self._config: dict[str, Any] = {}
        self._geocoder: Any = None
        self._cache: dict[str, tuple[float, Any]] = {}

    @hookimpl
    async def activate(self, ctx: PluginContext) -> None:
        self._config = dict(ctx.config)
        self._geocoder = ctx.providers.get("geocoder")
        ctx.register_tool(self.get_weather)
        ctx.register_tool(self.get_forecast)

    @hookimpl
    async def deactivate(self, ctx: PluginContext) -> None:
        self._cache.clear()
        self._geocoder = None

    @hookimpl
    async def health_check(self, ctx: PluginContext) -> None:
        # Any answer from the API with this key proves both reachable and authorized.
        await self._request("/data/2.5/weather", {"lat": "0", "lon": "0"})

    @tool
    async def get_weather(self, location: str, units: Units | None = None) -> dict[str, Any]:
        """Current weather for a location, e.g. "London" or "Paris, FR"."""
        place = await self._geocoder.geocode(location)
        units = units or self._config["units"]
        data = await self._cached(
            "/data/2.5/weather",
            {"lat": str(place.latitude), "lon": str(place.longitude), "units": units},
        )
        return {
            "location": place.name,
            "temperature": data["main"]["temp"],
            "humidity": data["main"].get("humidity"),
            "conditions": data["weather"][0]["description"],
            "units": units,
        }

    @tool
    async def get_forecast(
        self, location: str, days: int = 3, units: Units | None = None
    ) -> dict[str, Any]:
        """Forecast for the next ``days`` days (1 to 7) for a location."""
        if not 1 <= days <= 7:
            raise ValueError("days must be between 1 and 7")
        place = await self._geocoder.geocode(location)
        units = units or self._config["units"]
        data = await self._cached(
            "/data/2.5/forecast/daily",
            {
                "lat": str(place.latitude),
                "lon": str(place.longitude),
                "units": units,
                "cnt": str(days),
            },
        )
        return {
            "location": place.name,
            "units": units,
            "days": [
                {
                    "date": time.strftime("%Y-%m-%d", time.gmtime(day["dt"])),
                    "min": day["temp"]["min"],
                    "max": day["temp"]["max"],
                    "conditions": day["weather"][0]["description"],
                }
                for day in data["list"]
            ],
        }

    async def _cached(self, path: str, query: dict[str, str]) -> Any:
        key = path + "?" + urllib.parse.urlencode(sorted(query.items()))
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._config["cache_ttl_secs"]:
            return hit[1]
        data = await self._request(path, query)
        self._cache[key] = (now, data)
        return data

    async def _request(self, path: str, query: dict[str, str]) -> Any:
        params = {**query, "appid": self._config["api_key"]}
        url = self._config["base_url"].rstrip("/") + path + "?" + urllib.parse.urlencode(params)
        timeout = self._config["timeout_secs"]

        def fetch() -> Any:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode("utf-8", "replace")[:200]
                raise WeatherError(f"weather API answered {exc.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                raise WeatherError(f"weather API unreachable: {reason}") from None

        return await anyio.to_thread.run_sync(fetch)
