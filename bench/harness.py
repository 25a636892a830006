"""One repetition of the queue benchmark for mieruka, measured exactly as the peers' common.py does.

usage: python bench/harness.py embedded|http|celery   (run by bench/run.py; prints one JSON line)

  embedded: the engine runs inside this process (mieruka.App.start()), its 2 worker processes are
            children of this process; jobs go through app.submit() / app.wait().
  http:     a real server process (`mieruka run bench/mieruka_bench_app.py:app --port P
            --workers 2 --home H`, or app.serve() if the CLI is missing), driven over HTTP by one
            keep-alive httpx.Client from this process: POST /api/tasks/noop/jobs, then
            GET /api/jobs/{id}?wait=30 (long poll) until the job has finished.
  celery:   executor "celery": the engine in this process sends jobs to the broker (the private
            Redis of bench/run.py, BENCH_REDIS_PORT), one `mieruka worker --concurrency 2` runs
            them; the job store is a fresh PostgreSQL database (SQLite if none answers).

The measurement mirrors common.one_rep of the peers: fresh data, start, first job = readiness
probe, 5 warm-up jobs, 3 s settle, idle memory, N_THROUGHPUT jobs submitted all then waited each
in order, then N_LATENCY sequential submit-to-result latencies. Same environment knobs:
BENCH_N, BENCH_LAT_N, BENCH_OUT.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N_THROUGHPUT = int(os.environ.get("BENCH_N", "2000"))
N_LATENCY = int(os.environ.get("BENCH_LAT_N", "200"))
OUT = os.environ.get("BENCH_OUT", "/tmp/mieruka-bench")
WORKERS = 2
WAIT_TIMEOUT = 60.0


def pct(xs, q):  # same definition as the peers' common.pct
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def tree_rss_mb(root_pid):
    """(RSS of the root process, RSS sum of its tree, PSS sum of its tree) in MB."""
    root = psutil.Process(root_pid)
    main = root.memory_info().rss
    rss_total = pss_total = 0
    for q in [root] + root.children(recursive=True):
        try:
            rss_total += q.memory_info().rss
            pss_total += q.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return main / 2**20, rss_total / 2**20, pss_total / 2**20


def measure(submit, wait, t_spawn, root_pid, extra=None, throughput=None):
    """common.one_rep after the workers have been spawned at t_spawn. `throughput`, if given,
    replaces the submit-all-then-wait-each phase and returns the time all were submitted."""
    r = wait(submit(-1))  # first job doubles as the readiness probe
    assert r == -1, r
    ready_s = time.perf_counter() - t_spawn
    for i in range(5):  # warm-up: make sure every worker has imported everything
        wait(submit(i))
    time.sleep(3)  # let it settle to idle
    rss_main, rss_tree, pss_tree = tree_rss_mb(root_pid)

    t0 = time.perf_counter()
    if throughput is None:
        handles = [submit(i) for i in range(N_THROUGHPUT)]
        t_enq = time.perf_counter()
        for i, h in enumerate(handles):
            r = wait(h)
            assert r == i, (r, i)
    else:
        t_enq = throughput()
    t_end = time.perf_counter()

    lat = []
    for i in range(N_LATENCY):
        a = time.perf_counter()
        r = wait(submit(i))
        lat.append((time.perf_counter() - a) * 1000)
        assert r == i, (r, i)
    out = dict(
        ready_s=ready_s,
        rss_main_mb=rss_main,
        rss_tree_mb=rss_tree,
        pss_tree_mb=pss_tree,
        enqueue_per_s=N_THROUGHPUT / (t_enq - t0),
        e2e_per_s=N_THROUGHPUT / (t_end - t0),
        p50_ms=pct(lat, 50),
        p95_ms=pct(lat, 95),
        p99_ms=pct(lat, 99),
    )
    out.update(extra or {})
    return out


def kill_tree(proc, grace=15.0):
    """SIGTERM the process by PID, wait, then SIGKILL any survivor of its tree (by PID)."""
    try:
        kids = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kids = []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for k in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            k.kill()


def fresh_home(kind):
    data = os.path.join(OUT, "data")
    os.makedirs(data, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"mieruka-{kind}-", dir=data)


# -- embedded ------------------------------------------------------------------------------------
def in_process(app):
    """submit and wait through the app's Python API (the engine runs in this process)."""

    def submit(i):
        return app.submit("noop", x=i)

    def wait(job):
        rec = app.wait(job, timeout=WAIT_TIMEOUT)
        if rec.status.value != "succeeded":
            raise RuntimeError(f"job {rec.id} {rec.status.value}: {rec.error}")
        return rec.result

    return submit, wait


def run_embedded():
    home = fresh_home("embedded")
    os.environ["MIERUKA_BENCH_HOME"] = home
    sys.path.insert(0, HERE)  # worker processes get this sys.path and import mieruka_bench_app:app
    t_spawn = time.perf_counter()  # counts importing mieruka, like a peer worker's own imports
    from mieruka_bench_app import app

    app.start()
    try:
        submit, wait = in_process(app)
        result = measure(submit, wait, t_spawn, os.getpid())
    finally:
        app.stop()
    shutil.rmtree(home, ignore_errors=True)
    return result


# -- celery --------------------------------------------------------------------------------------
POSTGRES_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def job_database(home):
    """A fresh PostgreSQL database (what a Celery deployment uses), or SQLite if none answers."""
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"mieruka_bench_{os.getpid()}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
            if os.environ.get("BENCH_PG_ASYNC_COMMIT") == "1":  # commits not waiting for the disk
                conn.exec_driver_sql(f"ALTER DATABASE {name} SET synchronous_commit = off")
    except Exception as exc:
        print(f"# no PostgreSQL ({str(exc).splitlines()[0]}); using SQLite", file=sys.stderr)
        admin.dispose()
        yield f"sqlite:///{home}/mieruka.db"
        return
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@contextlib.contextmanager
def on_celery(kind, broker_db):
    """A fresh home and job database, the environment of the benchmark app on Celery (set in this
    process too) and the command of a `mieruka worker --concurrency 2` for it; removed afterwards."""
    home = fresh_home(kind)
    broker = f"redis://127.0.0.1:{os.environ.get('BENCH_REDIS_PORT', '6379')}/{broker_db}"
    with job_database(home) as database_url:
        env = {
            "MIERUKA_BENCH_HOME": home,
            "MIERUKA_EXECUTOR": "celery",
            "MIERUKA_BROKER_URL": broker,
            "MIERUKA_DATABASE_URL": database_url,
        }
        os.environ.update(env)
        sys.path.insert(0, HERE)
        mieruka_bin = os.path.join(os.path.dirname(sys.executable), "mieruka")
        yield (
            env,
            [
                mieruka_bin,
                "worker",
                os.path.join(HERE, "mieruka_bench_app.py") + ":app",
                "--concurrency",
                str(WORKERS),
                "--loglevel",
                "warning",
            ],
        )
    shutil.rmtree(home, ignore_errors=True)


def run_celery():
    """The engine in this process sends jobs to Redis; one `mieruka worker --concurrency 2` (Celery
    prefork, like the peer) runs them, writing to the store and publishing on Redis; app.wait()
    hears the end over Redis. Memory is the worker's tree, as for the Celery peer."""
    with on_celery("celery", broker_db=2) as (env, worker_command):
        os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
        log = open(os.path.join(OUT, "logs", "mieruka-celery-worker.log"), "a")  # noqa: SIM115
        t_spawn = time.perf_counter()
        worker = subprocess.Popen(
            worker_command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        from mieruka_bench_app import app

        app.start()
        try:
            submit, wait = in_process(app)
            database = env["MIERUKA_DATABASE_URL"].split(":")[0]
            result = measure(submit, wait, t_spawn, worker.pid, extra={"database": database})
        finally:
            app.stop()
            kill_tree(worker)
            log.close()
    return result


# -- http ----------------------------------------------------------------------------------------
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_command(port, home):
    """`mieruka run ...` when the CLI exists, else app.serve() in a fresh interpreter."""
    how = os.environ.get("BENCH_MIERUKA_SERVER", "auto")
    mieruka_bin = os.path.join(os.path.dirname(sys.executable), "mieruka")
    has_cli = importlib.util.find_spec("mieruka.cli") is not None and os.path.exists(mieruka_bin)
    if how == "cli" or (how == "auto" and has_cli):
        return "cli", [
            mieruka_bin,
            "run",
            os.path.join(HERE, "mieruka_bench_app.py") + ":app",
            "--port",
            str(port),
            "--workers",
            str(WORKERS),
            "--home",
            home,
        ]
    code = (
        f"import sys; sys.path.insert(0, {HERE!r}); from mieruka_bench_app import app; "
        f"app.serve(host='127.0.0.1', port={port})"
    )
    return "serve", [sys.executable, "-c", code]


def http_submit(client, i):
    r = client.post("/api/tasks/noop/jobs", json={"x": i})
    if r.status_code != 202:
        raise RuntimeError(f"POST /api/tasks/noop/jobs -> {r.status_code}: {r.text[:300]}")
    return r.json()["id"]


def http_run(client, i):
    """POST /api/tasks/noop/run: submit and get the result in one request."""
    r = client.post("/api/tasks/noop/run", params={"timeout": 30}, json={"x": i})
    if r.status_code != 200 or r.json().get("status") != "succeeded":
        raise RuntimeError(f"POST /api/tasks/noop/run -> {r.status_code}: {r.text[:300]}")
    return r.json()["result"]


def http_wait(client, job_id):
    end = time.monotonic() + WAIT_TIMEOUT
    while True:  # long poll; ask again if the server's wait ran out first
        r = client.get(f"/api/jobs/{job_id}", params={"wait": 30})
        if r.status_code != 200:
            raise RuntimeError(f"GET /api/jobs/{job_id}?wait=30 -> {r.status_code}: {r.text[:300]}")
        job = r.json()
        status = job.get("status")
        if status == "succeeded":
            return job.get("result")
        if status in ("failed", "cancelled"):
            raise RuntimeError(f"job {job_id} {status}: {job.get('error')}")
        if time.monotonic() > end:
            raise RuntimeError(f"job {job_id} still {status} after {WAIT_TIMEOUT:g} s")


def run_http(n_clients=1, run_now=False):
    """n_clients > 1: the throughput phase uses that many threads, each with its own keep-alive
    client and every n-th job (all submit their share, then all wait theirs); latency stays
    sequential on one client."""
    import httpx

    home = fresh_home("http")
    port = free_port()
    how, cmd = server_command(port, home)
    os.makedirs(os.path.join(OUT, "logs"), exist_ok=True)
    log_path = os.path.join(OUT, "logs", "mieruka-http-server.log")
    log = open(log_path, "a")  # noqa: SIM115 - the server writes to it until kill_tree
    log.write(f"\n### {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n")
    log.flush()
    # quiet logging like the peers' workers (--loglevel=WARNING, -q): no access log per request
    env = {
        **os.environ,
        "MIERUKA_BENCH_HOME": home,
        "MIERUKA_LOG_LEVEL": "warning",
        "MIERUKA_BENCH_WORKERS": str(WORKERS),
    }
    t_spawn = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT_TIMEOUT + 10) for _ in range(n_clients)]
    client = clients[0]
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} before /healthz answered (see {log_path}): {tail(log_path)}"
                )
            try:
                if client.get("/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"/healthz not 200 within 60 s (see {log_path})")
            time.sleep(0.01)
        healthz_s = time.perf_counter() - t_spawn

        throughput = None
        if n_clients > 1:
            from concurrent.futures import ThreadPoolExecutor

            def throughput():
                with ThreadPoolExecutor(n_clients) as pool:

                    def submit_share(k):
                        return [(i, http_submit(clients[k], i)) for i in range(k, N_THROUGHPUT, n_clients)]

                    shares = list(pool.map(submit_share, range(n_clients)))
                    t_enq = time.perf_counter()

                    def wait_share(k):
                        for i, job_id in shares[k]:
                            r = http_wait(clients[k], job_id)
                            assert r == i, (r, i)

                    list(pool.map(wait_share, range(n_clients)))
                return t_enq

        if run_now:  # each "submit" already carries the result: the throughput phase is sequential
            submit, wait = (lambda i: http_run(client, i)), (lambda r: r)
        else:
            submit, wait = (lambda i: http_submit(client, i)), (lambda h: http_wait(client, h))
        result = measure(
            submit,
            wait,
            t_spawn,
            proc.pid,
            extra={"healthz_s": healthz_s, "server": how, "clients": n_clients},
            throughput=throughput,
        )
    finally:
        for c in clients:
            c.close()
        kill_tree(proc)
        log.close()
    shutil.rmtree(home, ignore_errors=True)
    return result


def tail(path, n=600):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:].strip().replace("\n", " | ")
    except OSError:
        return ""


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "embedded":
        res = run_embedded()
    elif kind == "celery":
        res = run_celery()
    elif kind == "http":
        arg = sys.argv[2] if len(sys.argv) > 2 else "1"
        res = run_http(1, run_now=True) if arg == "run" else run_http(int(arg))
    else:
        sys.exit(f"unknown kind {kind!r}: embedded or http [CLIENTS]")
    print(json.dumps(res), flush=True)
