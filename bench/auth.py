#!/usr/bin/env python3
"""What authentication costs a request: `python3 bench/auth.py` prints one table.

A real server (`mieruka run bench/mieruka_bench_app.py:app`) answers `GET /api/jobs/{id}` N times
(`BENCH_N`, default 2000) over one keep-alive connection: with no user (the open loopback mode),
with an API token (`Authorization: Bearer`), and with a browser session cookie; then the same
for `POST /api/tasks/noop/jobs` (a write: audit entry included).
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
N = int(os.environ.get("BENCH_N", "2000"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    done = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    return done.stdout.strip()


def timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> tuple[float, float]:
    latencies = []
    start = time.perf_counter()
    for _ in range(N):
        t0 = time.perf_counter()
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        latencies.append(time.perf_counter() - t0)
        assert response.status_code < 300, response.text
    total = time.perf_counter() - start
    return N / total, statistics.median(latencies) * 1000


def main() -> int:
    rows: list[tuple[str, float, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = str(Path(tmp) / "home")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
        env["MIERUKA_LOG_LEVEL"] = "warning"
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mieruka.cli",
                "run",
                "bench/mieruka_bench_app.py:app",
                "--port",
                str(port),
                "--home",
                home,
                "--workers",
                "2",
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            with httpx.Client(base_url=url) as client:
                job = client.post("/api/tasks/noop/jobs", json={"x": 1}).json()["id"]
                rows.append(
                    (
                        "no user (open loopback mode)",
                        *timed(client, "GET", f"/api/jobs/{job}"),
                        *timed(client, "POST", "/api/tasks/noop/jobs", json={"x": 1}),
                    )
                )
            cli(
                "users", "add", "bench", "--role", "admin", "--password-stdin", "--home", home, stdin="bench password\n"
            )
            token = cli("tokens", "create", "--user", "bench", "--home", home)
            time.sleep(1.2)  # the server notices the first user within a second
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
                rows.append(
                    (
                        "API token (Bearer)",
                        *timed(client, "GET", f"/api/jobs/{job}"),
                        *timed(client, "POST", "/api/tasks/noop/jobs", json={"x": 1}),
                    )
                )
            with httpx.Client(base_url=url) as client:
                page = client.get("/login").text
                csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
                assert csrf
                client.post("/login", data={"csrf_token": csrf.group(1), "name": "bench", "password": "bench password"})
                session_csrf = client.get("/api/me").json()["csrf_token"]
                rows.append(
                    (
                        "session cookie + CSRF token",
                        *timed(client, "GET", f"/api/jobs/{job}"),
                        *timed(
                            client,
                            "POST",
                            "/api/tasks/noop/jobs",
                            json={"x": 1},
                            headers={"X-CSRF-Token": session_csrf},
                        ),
                    )
                )
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{N} sequential requests each, one keep-alive connection, {os.cpu_count()} CPU cores\n")
    print("| identity | GET job req/s | GET p50 ms | POST submit req/s | POST p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, get_rate, get_p50, post_rate, post_p50 in rows:
        print(f"| {name} | {get_rate:,.0f} | {get_p50:.2f} | {post_rate:,.0f} | {post_p50:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
