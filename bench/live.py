"""Live dashboards and streams under load, one command, one table:

    python3 scripts/dev.py bench live       # or: .venv/bin/python bench/live.py

1. One server process, one stream at 10 Hz, 500 Server-Sent Events clients: points and events
   delivered per second, the delay from a point's production to its arrival (p50, p99), and the
   memory an open viewer costs (the server's PSS with 500 viewers minus with none, over 500).
2. A SQL source of 1,000,000 rows (SQLite): time to read it, to compute the downsampled chart tile
   (MinMax-LTTB to 1,200 points), and to serve that tile over HTTP, with the payload's size.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = int(os.environ.get("BENCH_SSE_CLIENTS", "500"))
SECONDS = float(os.environ.get("BENCH_SSE_SECONDS", "20"))
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))  # 0: the streams only


def client_loop() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for the 500 clients when it is installed: they share one process and one core with
    nothing else to do, and asyncio's own loop would add its delay to the server's."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used: its share of the work, whatever else runs."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pss_kb(pid: int) -> int:
    """The proportional set size of one process (shared pages split among their sharers)."""
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss in /proc/{pid}/smaps_rollup")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (home.parent / "server.log").open("w")
    command = [
        sys.executable,
        "-m",
        "mieruka.cli",
        "run",
        "bench/live_app.py:app",
        "--port",
        str(port),
        "--home",
        str(home),
    ]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        # Every viewer comes from 127.0.0.1: lift the per-address cap (100) that guards a real server.
        env={**os.environ, "MIERUKA_LOG_LEVEL": "warning", "MIERUKA_MAX_CONNECTIONS_PER_ADDRESS": "0", **env},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start; see " + str(home.parent / "server.log"))


async def sse_client(
    port: int,
    path: str,
    stop: asyncio.Event,
    delays: list[float],
    counts: list[int],
    ready: asyncio.Event,
    started: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    started[0] += 1
    if started[0] == CLIENTS:
        ready.set()
    measuring = False
    while not stop.is_set():
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b'data: {"stream"'):
            now = time.time()
            if not measuring and ready.is_set():
                measuring = True
            if measuring:
                times = json.loads(line[6:])["t"]
                counts[0] += 1
                counts[1] += len(times)
                delays.extend(now - t for t in times)
    writer.close()


async def warm_up(port: int) -> None:
    """A few viewers come and go first, so the code paths a viewer uses are loaded before the
    memory without viewers is read."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        for _ in range(3):
            async with http.stream("GET", "/api/streams/ticks/events") as response:
                async for line in response.aiter_lines():
                    if line.startswith('data: {"stream"'):
                        break
        # Read during the measurement too: its route is built at its first request (web/routers.py
        # LazyRoute), which must not count as the viewers' memory.
        (await http.get("/api/streams/ticks")).raise_for_status()
    await asyncio.sleep(1)


async def stream_bench(port: int, server: int) -> dict[str, float]:
    stop, ready = asyncio.Event(), asyncio.Event()
    delays: list[float] = []
    counts = [0, 0]
    started = [0]
    await warm_up(port)
    idle = pss_kb(server)
    tasks = [
        asyncio.create_task(sse_client(port, "/api/streams/ticks/events", stop, delays, counts, ready, started))
        for _ in range(CLIENTS)
    ]
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(2)  # every client has its first window; measure from here
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        delays.clear()
        counts[:] = [0, 0]
        first = (await http.get("/api/streams/ticks")).json()["last"]
        began, cpu, mine = time.monotonic(), cpu_seconds(server), cpu_seconds(os.getpid())
        await asyncio.sleep(SECONDS)
        elapsed = time.monotonic() - began
        cpu, mine = cpu_seconds(server) - cpu, cpu_seconds(os.getpid()) - mine
        produced = ((await http.get("/api/streams/ticks")).json()["last"] - first) / elapsed
    viewing = pss_kb(server)
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    delays.sort()
    return {
        "events/s": counts[0] / elapsed,
        "points/s": counts[1] / elapsed,
        "expected points/s": CLIENTS * produced,
        "produced/s": produced,
        "p50 ms": 1000 * delays[len(delays) // 2],
        "p99 ms": 1000 * delays[int(len(delays) * 0.99)],
        "server CPU %": 100 * cpu / elapsed,
        "CPU us per event": 1e6 * cpu / max(1, counts[0]),
        "clients CPU %": 100 * mine / elapsed,
        "idle MB": idle / 1024,
        "viewing MB": viewing / 1024,
        "KB per viewer": (viewing - idle) / CLIENTS,
    }


def make_rows(path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(1)
    t = 1_700_000_000 + np.arange(ROWS, dtype=np.int64) * 30
    value = np.cumsum(rng.normal(0, 1, ROWS))
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE readings (t INTEGER PRIMARY KEY, value REAL)")
        db.executemany("INSERT INTO readings VALUES (?, ?)", zip(t.tolist(), value.tolist()))


def source_bench(url: str) -> dict[str, float]:
    state = httpx.post(f"{url}/api/sources/big/refresh", params={"wait": 300}, timeout=320).json()
    timings = []
    size = 0
    for _ in range(20):
        started = time.perf_counter()
        response = httpx.get(f"{url}/api/dashboards/big", timeout=60)
        timings.append(time.perf_counter() - started)
        size = len(response.content)
        tile = response.json()["tiles"][0]
    from zoneinfo import ZoneInfo

    import pandas as pd

    from mieruka.core.dashboards import Chart
    from mieruka.live.tiles import tile as make_tile
    from mieruka.sources.refresher import SourceState
    from mieruka.sources.source import make_source

    frame = pd.DataFrame({"t": 1_700_000_000 + pd.RangeIndex(ROWS) * 30.0, "value": range(ROWS)})
    chart = Chart("line", "big", x="t", y=("value",))
    started = time.perf_counter()
    payload = make_tile(
        chart, make_source("big", function=lambda: []), SourceState("big", frame=frame, version=1), ZoneInfo("UTC")
    )
    compute = time.perf_counter() - started
    return {
        "rows": tile["data"]["total"],
        "points": tile["data"]["shown"],
        "read s": state["duration"],
        "tile compute ms": 1000 * compute,
        "GET p50 ms": 1000 * statistics.median(timings),
        "payload KB": size / 1024,
        "payload points": len(payload["data"]["x"]),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mieruka-live-bench-") as tmp:
        base = Path(tmp)
        db = base / "readings.db"
        if ROWS:
            make_rows(db)
        proc, url = start_server(base / "home", {"BENCH_LIVE_DB": str(db)} if ROWS else {})
        try:
            port = int(url.rsplit(":", 1)[1])
            with asyncio.Runner(loop_factory=client_loop()) as runner:
                stream = runner.run(stream_bench(port, proc.pid))
            source = source_bench(url) if ROWS else None
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"\n### {CLIENTS} SSE clients on one 10 Hz stream, one server process, {SECONDS:.0f} s\n")
    print(
        "| points produced/s | points delivered/s | clients x produced | events delivered/s | delay p50 ms "
        "| delay p99 ms | server CPU % | server CPU µs per event | clients' CPU % |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(
        f"| {stream['produced/s']:.2f} | {stream['points/s']:,.0f} | {stream['expected points/s']:,.0f} | "
        f"{stream['events/s']:,.0f} | {stream['p50 ms']:.1f} | {stream['p99 ms']:.1f} | "
        f"{stream['server CPU %']:.0f} | {stream['CPU us per event']:.0f} | {stream['clients CPU %']:.0f} |"
    )
    print(f"\n### Memory of the server process (PSS) with 0 and {CLIENTS} open viewers\n")
    print(f"| no viewers MB | {CLIENTS} viewers MB | per viewer KB |")
    print("|---|---|---|")
    print(f"| {stream['idle MB']:.1f} | {stream['viewing MB']:.1f} | {stream['KB per viewer']:.1f} |")
    if source is None:
        print(f"\n{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")
        return
    print(f"\n### A SQL source of {source['rows']:,} rows (SQLite), line chart downsampled with MinMax-LTTB\n")
    print("| read the source s | compute the tile ms | serve the tile (GET) p50 ms | payload KB | points |")
    print("|---|---|---|---|---|")
    print(
        f"| {source['read s']:.2f} | {source['tile compute ms']:.0f} | {source['GET p50 ms']:.1f} | "
        f"{source['payload KB']:.1f} | {source['points']:,} |"
    )
    print(f"\n{os.cpu_count()} CPUs; Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
