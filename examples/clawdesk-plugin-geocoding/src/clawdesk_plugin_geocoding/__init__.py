"""Offline geocoding for ClawDesk: a tool and a provider backed by a small gazetteer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from clawhost import PluginContext, hookimpl, tool

__all__ = ["GAZETTEER", "Geocoder", "GeocodingPlugin", "Place", "PlaceNotFound"]

GAZETTEER: dict[str, tuple[float, float, str]] = {
    "london": (51.5072, -0.1276, "GB"),
    "paris": (48.8566, 2.3522, "FR"),
    "berlin": (52.52, 13.405, "DE"),
    "madrid": (40.4168, -3.7038, "ES"),
    "rome": (41.9028, 12.4964, "IT"),
    "lisbon": (38.7223, -9.1393, "PT"),
    "new york": (40.7128, -74.006, "US"),
    "san francisco": (37.7749, -122.4194, "US"),
    "tokyo": (35.6762, 139.6503, "JP"),
    "sydney": (-33.8688, 151.2093, "AU"),
    "nairobi": (-1.2921, 36.8219, "KE"),
    "sao paulo": (-23.5558, -46.6396, "BR"),
    "mumbai": (19.076, 72.8777, "IN"),
    "reykjavik": (64.1466, -21.9426, "IS"),
}


class PlaceNotFound(LookupError):
    """The gazetteer does not know the place."""


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float
    country: str | None


class Geocoder:
    """The ``geocoder`` provider: look places up by name (case and spacing do not matter)."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self._places = {key: (lat, lon, country) for key, (lat, lon, country) in GAZETTEER.items()}
        for name, coordinates in extra.items():
            latitude, longitude = coordinates
            self._places[_key(name)] = (float(latitude), float(longitude), None)

    async def geocode(self, query: str) -> Place:
        name, _, country = query.partition(",")
        found = self._places.get(_key(name))
        if found is None:
            raise PlaceNotFound(f"unknown place {query!r}")
        latitude, longitude, known_country = found
        wanted = country.strip().upper() or None
        if wanted and known_country and wanted != known_country:
            raise PlaceNotFound(f"{name.strip()!r} is not in {wanted}")
        return Place(name.strip().title(), latitude, longitude, known_country)


def _key(name: str) -> str:
    return " ".join(name.lower().split())


class GeocodingPlugin:
    """Registers the ``geocode`` tool and the ``geocoder`` provider."""

    def __init__(self) -> None:
        self.geocoder: Geocoder | None = None

    @hookimpl
    def activate(self, ctx: PluginContext) -> None:
        self.geocoder = Geocoder(dict(ctx.config["extra_places"]))
        ctx.register_provider("geocoder", self.geocoder)
        ctx.register_tool(self.geocode)

    @hookimpl
    def deactivate(self, ctx: PluginContext) -> None:
        self.geocoder = None

    @tool
    async def geocode(self, place: str) -> dict[str, Any]:
        """Coordinates of a place, e.g. "Paris" or "London, GB"."""
        assert self.geocoder is not None, "the plugin is not active"
        return asdict(await self.geocoder.geocode(place))
