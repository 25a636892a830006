"""HTTP capacity of a real `mieruka run` server: requests per second with 16 keep-alive connections
(wrk), for the hot routes, side by side for several source trees in one run.

usage (from the repo root):  python bench/capacity.py [--src NAME=PATH ...] [--rounds N] [--seconds S]

Each round starts a server per source tree (`mieruka run bench/mieruka_bench_app.py:app`, executor
threads, a fresh home) and measures, in turn:

- submit: `POST /api/tasks/noop/jobs` with a JSON body (every job a durable row), then a wait
  until the jobs have run;
- get:    `GET /api/jobs/{id}` of a finished job;
- batch:  `POST /api/tasks/noop/jobs/batch` with 100 jobs a request (when the tree has it; jobs/s);
- run:    `POST /api/tasks/noop/run` from one connection (the p50 latency of submit + result);
- health: `GET /healthz`.

`--src base=/tmp/base/src` compares another checkout's package (PYTHONPATH) with this one's, e.g.
`git archive HEAD src | tar -x -C /tmp/base`. The table shows the median over rounds, and the ratio
to the first tree. Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
CONNECTIONS = 16
BATCH = 100

SUBMIT_LUA = """
wrk.method = "POST"
wrk.body = '{"x": 1}'
wrk.headers["Content-Type"] = "application/json"
"""
BATCH_LUA = f"""
wrk.method = "POST"
wrk.body = '{{"jobs": [{", ".join(['{"params": {"x": 1}}'] * BATCH)}]}}'
wrk.headers["Content-Type"] = "application/json"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    def __init__(self, src: str) -> None:
        self.home = tempfile.mkdtemp(prefix="mieruka-capacity-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": src,
            "MIERUKA_BENCH_HOME": self.home,
            "MIERUKA_BENCH_WORKERS": "2",
            "MIERUKA_EXECUTOR": "threads",
            "MIERUKA_LOG_LEVEL": "warning",
        }
        code = "import sys; from mieruka.cli import main; sys.exit(main())"
        cmd = [PYTHON, "-c", code, "run", os.path.join(HERE, "mieruka_bench_app.py") + ":app"]
        cmd += ["--port", str(self.port), "--home", self.home]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(self.base + "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"the server did not start: {err[-2000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.home, ignore_errors=True)


def wrk(url: str, seconds: float, script: str = "", connections: int = CONNECTIONS) -> float:
    """Requests per second; raises when wrk saw non-2xx answers or socket errors."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
    try:
        out = subprocess.run([*args, "-s", fh.name, url], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(fh.name)
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
    return float(next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1])


def run_p50(base: str, n: int) -> float:
    """p50 in ms of POST /run from one keep-alive connection."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]))
    times = []
    for i in range(n):
        t = time.perf_counter()
        conn.request(
            "POST", "/api/tasks/noop/run", body=json.dumps({"x": i}), headers={"Content-Type": "application/json"}
        )
        answer = conn.getresponse()
        answer.read()
        times.append(time.perf_counter() - t)
        if answer.status != 200:
            raise RuntimeError(f"POST /run -> {answer.status}")
    conn.close()
    return statistics.median(times) * 1000


def drained(base: str) -> None:
    """Wait until the jobs a phase queued have run: the next phase must not share the machine with them."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = json.loads(request(base + "/api/jobs?status=queued,running&limit=1")[1])["jobs"]
        if not jobs:
            return
        time.sleep(0.2)
    raise RuntimeError("the queued jobs did not run within 300 s")


def measure(src: str, seconds: float) -> dict[str, float]:
    server = Server(src)
    try:
        status, body = request(server.base + "/api/tasks/noop/run", b'{"x": 1}')
        job_id = json.loads(body)["id"]
        # The health check counts the jobs: measured before the submissions add theirs.
        out = {
            "get": wrk(f"{server.base}/api/jobs/{job_id}", seconds),
            "health": wrk(server.base + "/healthz", seconds),
        }
        out["run p50 ms"] = run_p50(server.base, 300)
        out["submit"] = wrk(server.base + "/api/tasks/noop/jobs", seconds, SUBMIT_LUA)
        drained(server.base)
        if request(server.base + "/api/tasks/noop/jobs/batch", b'{"jobs": []}')[0] != 404:
            out["batch jobs/s"] = wrk(server.base + "/api/tasks/noop/jobs/batch", seconds, BATCH_LUA) * BATCH
        return out
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", action="append", default=[], help="NAME=PATH of a src folder (repeatable)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("needs wrk: apt-get install wrk")
    trees = [tuple(s.split("=", 1)) for s in args.src] or [("this", os.path.join(ROOT, "src"))]
    if not any(path == os.path.join(ROOT, "src") for _, path in trees) and args.src:
        trees.append(("this", os.path.join(ROOT, "src")))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _ in trees}
    for round_no in range(args.rounds):
        for name, path in trees:  # in turn: a noisy moment hits every tree alike
            results[name].append(measure(os.path.abspath(path), args.seconds))
            print(f"round {round_no + 1} {name}: {results[name][-1]}", file=sys.stderr)
    first = trees[0][0]
    metrics = list(dict.fromkeys(k for runs in results.values() for run in runs for k in run))
    print(f"| {CONNECTIONS} keep-alive connections, median of {args.rounds} | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for metric in metrics:
        cells = []
        for name in results:
            values = [run[metric] for run in results[name] if metric in run]
            if not values:
                cells.append("-")
                continue
            value = statistics.median(values)
            base_values = [run[metric] for run in results[first] if metric in run]
            ratio = f" ({value / statistics.median(base_values):.2f}x)" if base_values and name != first else ""
            cells.append(f"{value:,.2f}{ratio}" if "ms" in metric else f"{value:,.0f}{ratio}")
        print(f"| {metric} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
