"""A local stand-in for the weather API, on 127.0.0.1: the tests never touch the network."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest


@dataclass
class FakeAPI:
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    requests: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = {key: values[0] for key, values in parse_qs(url.query).items()}
            requests.append({"path": url.path, **query})
            if query.get("appid") != "test-key":
                return self.answer(401, {"cod": 401, "message": "Invalid API key"})
            if url.path == "/data/2.5/weather":
                return self.answer(
                    200,
                    {
                        "main": {"temp": 12.5, "humidity": 80},
                        "weather": [{"description": "drizzle"}],
                    },
                )
            if url.path == "/data/2.5/forecast/daily":
                days = [
                    {
                        "dt": 1_767_225_600 + i * 86_400,
                        "temp": {"min": 5 + i, "max": 11 + i},
                        "weather": [{"description": "sun"}],
                    }
                    for i in range(int(query["cnt"]))
                ]
                return self.answer(200, {"list": days})
            return self.answer(404, {"message": "no such endpoint"})

        def answer(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield FakeAPI(f"http://127.0.0.1:{server.server_address[1]}", requests)
    finally:
        server.shutdown()
        server.server_close()
