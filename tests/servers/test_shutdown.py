"""A server stopping with event streams open: each stream is ended by the server (a complete
response, the chunked body's last chunk sent), not cut when the graceful shutdown runs out."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx

from tests.conftest import ServerProcess

APP = "tests/dash_app.py:app"
STREAMS = (
    "/api/events",  # every job's events (web/sse.py)
    "/api/dashboards/ops/events",  # one dashboard's tiles and streams (web/feeds.py)
    "/api/streams/ticks/events",
    "/api/live/events?topic=jobs&topic=dashboard:ops&topic=stream:ticks",  # a browser's shared stream
)


class Reader(threading.Thread):
    """Reads one stream to its end; `ending` is how it ended."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.ready = threading.Event()
        self.ending = "still open"

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=httpx.Timeout(5, read=120)) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith("event: ready"):
                        self.ready.set()
            self.ending = "ended by the server"
        except httpx.HTTPError as exc:
            self.ending = f"{type(exc).__name__}: {exc}"
        finally:
            self.ready.set()


def test_open_streams_end_cleanly_when_the_server_stops(tmp_path: Path) -> None:
    server = ServerProcess(APP, tmp_path / "home", "--workers", "1", env={"DASH_DIR": str(tmp_path)})
    try:
        server.wait_ready()
        readers = [Reader(server.url + path) for path in STREAMS]
        for reader in readers:
            reader.start()
        for reader in readers:
            assert reader.ready.wait(60), f"{reader.url}: no ready event ({reader.ending})\n{server.output()}"
        server.process.terminate()
        # uvicorn raises the signal again once it has shut down: the process ends by SIGTERM
        assert server.process.wait(60) in (0, -signal.SIGTERM), server.output()
        for reader in readers:
            reader.join(60)
            assert reader.ending == "ended by the server", f"{reader.url}: {reader.ending}\n{server.output()}"
        # uvicorn's words when it has to cut what did not end within the graceful shutdown
        assert "timeout graceful shutdown exceeded" not in server.output()
    finally:
        server.stop()
