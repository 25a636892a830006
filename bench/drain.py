"""Worker side only: how fast a Celery worker drains a queue that is already full, and what each job
costs its processes, for mieruka on Celery and for plain Celery, in one run.

usage (from the repo root):  .venv/bin/python bench/drain.py [--reps N] [--jobs N]

Per round and system: N no-op jobs are submitted while no worker runs (mieruka: to a fresh
PostgreSQL job store and the broker; Celery: to the broker, results in Redis), then one worker with
concurrency 2 starts. Drain rate: jobs after the first result / time from the first result to the
last. CPU per job: the worker's main process and its two pool processes, less what a worker that
only started and ran one job used. The submitting process is idle meanwhile (it only waits), so
this isolates the workers, where `bench/run.py`'s end-to-end figure also pays for submitting.
Uses bench/run.py's peers venv and private Redis; prints one markdown table of medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import run  # beside this script; standard library only

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def cpu(pid):
    """(main, pool) CPU seconds of a worker process and its children."""
    import psutil

    main = psutil.Process(pid)
    kids = main.children()
    t = main.cpu_times()
    return t.user + t.system, sum(k.cpu_times().user + k.cpu_times().system for k in kids)


def measure(start_worker, submit, wait, n):
    """Startup cost first (a worker that runs one job), then the drain of n preloaded jobs."""
    proc = start_worker()
    try:
        wait(submit(-1))
        time.sleep(1.0)
        startup = cpu(proc.pid)
    finally:
        run.stop_worker(proc)
    handles = [submit(i) for i in range(n)]
    proc = start_worker()
    try:
        wait(handles[0])
        t_first = time.perf_counter()
        for h in handles[1:]:
            wait(h)
        t_last = time.perf_counter()
        main, pool = cpu(proc.pid)
    finally:
        run.stop_worker(proc)
    return {
        "drain_per_s": (n - 1) / (t_last - t_first),
        "main_ms": (main - startup[0]) / n * 1000,
        "pool_ms": (pool - startup[1]) / n * 1000,
    }


def run_mieruka(n):
    sys.path.insert(0, HERE)
    from harness import in_process, on_celery

    with on_celery("drain", broker_db=5) as (env, worker_command):
        from mieruka_bench_app import app

        def start_worker():
            return subprocess.Popen(
                worker_command,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        app.start()
        try:
            submit, wait = in_process(app)
            return measure(start_worker, submit, wait, n)
        finally:
            app.stop()


def run_celery(peers_dir, n):
    """In the peers' venv: their bench_celery app, unchanged."""
    sys.path.insert(0, peers_dir)
    import bench_celery
    import common

    bench_celery.flush()

    def start_worker():
        return subprocess.Popen(
            [
                f"{common.BIN}/celery",
                "-A",
                "bench_celery",
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--loglevel=WARNING",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=peers_dir,
            env={**os.environ, "PYTHONPATH": peers_dir},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return measure(start_worker, lambda i: bench_celery.noop.delay(i), lambda h: h.get(timeout=120), n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "3")))
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("BENCH_N", "3000")))
    a = ap.parse_args()
    results = run.rounds_against_celery(
        __file__,
        a.reps,
        a.jobs,
        lambda res: (
            f"drain {res['drain_per_s']:.0f}/s, main {res['main_ms']:.2f} ms/job, pool {res['pool_ms']:.2f} ms/job"
        ),
    )
    print(f"\n## Workers draining {a.jobs} preloaded no-op jobs, concurrency 2 (median of {a.reps} rounds)\n")
    print("| system | drain jobs/s | worker main CPU ms/job | pool processes CPU ms/job |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        med = {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        print(f"| {name} | {med['drain_per_s']:.0f} | {med['main_ms']:.2f} | {med['pool_ms']:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        jobs = int(sys.argv[sys.argv.index("--jobs") + 1])
        with contextlib.redirect_stdout(sys.stderr):  # only the result on stdout
            res = run_mieruka(jobs) if sys.argv[2] == "mieruka" else run_celery(sys.argv[3], jobs)
        print(json.dumps(res))
    else:
        sys.path.insert(0, HERE)
        main()
