"""A local stand-in for the OpenWeatherMap API, on 127.0.0.1 only: the demo and the weather
plugin's tests use it so nothing ever leaves the machine.

Answers ``/data/2.5/weather`` and ``/data/2.5/forecast/daily`` with made-up but stable
numbers (a function of the coordinates), and 401 for the API key ``bad``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

CONDITIONS = ("clear sky", "few clouds", "light rain", "overcast clouds", "mist")


def _reading(lat: float, lon: float, day: int = 0) -> tuple[float, str]:
    seed = abs(int(lat * 7 + lon * 3)) + day
    return round(8 + (seed % 170) / 10, 1), CONDITIONS[seed % len(CONDITIONS)]


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        type(self).requests.append(self.path)
        if query.get("appid") == "bad":
            return self._send(401, {"cod": 401, "message": "Invalid API key"})
        lat, lon = float(query.get("lat", 0)), float(query.get("lon", 0))
        imperial = query.get("units") == "imperial"
        if url.path == "/data/2.5/weather":
            temp, sky = _reading(lat, lon)
            temp = round(temp * 9 / 5 + 32, 1) if imperial else temp
            return self._send(
                200, {"main": {"temp": temp, "humidity": 71}, "weather": [{"description": sky}]}
            )
        if url.path == "/data/2.5/forecast/daily":
            days = []
            for day in range(int(query.get("cnt", 3))):
                temp, sky = _reading(lat, lon, day)
                days.append(
                    {
                        "dt": 1_767_225_600 + day * 86_400,
                        "temp": {"min": temp - 3, "max": temp + 4},
                        "weather": [{"description": sky}],
                    }
                )
            return self._send(200, {"list": days})
        return self._send(404, {"cod": 404, "message": "not found"})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def serve() -> Iterator[str]:
    """Run the fake API on an ephemeral port of 127.0.0.1; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
