"""Where a job's CPU goes, process by process, for mieruka on Celery and for plain Celery, in one run.

usage (from the repo root):  .venv/bin/python bench/cpu.py [--reps N] [--jobs N] [--burst N]

Per round and system: a worker with concurrency 2 starts, 30 jobs warm it up, then N no-op jobs
(1,000) are submitted and waited for one at a time, as in the latency phase of `bench/run.py`;
with `--burst B`, in bursts of B jobs submitted at once and then waited for, as in the throughput
phase of `bench/paired.py` (on a machine whose cores are all busy then, CPU per job is what sets
the throughput).
CPU per job, user + system, of: the submitting process (for mieruka, the engine in it too), the
worker's main process, its pool processes, PostgreSQL's processes (mieruka's job store) and the
private Redis (broker, results, mieruka's events). CPU time is steadier than wall time on a shared
machine whose speed swings; the p50 column is wall time, for reference. Uses bench/run.py's peers
venv and private Redis; prints one markdown table of medians.
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
KINDS = ["submitter", "worker main", "pool", "postgres", "redis"]


def cpu_seconds(proc):
    import psutil

    try:
        t = proc.cpu_times()
        return t.user + t.system
    except psutil.Error:
        return 0.0


def snapshot(worker_pid, redis_pid):
    import psutil

    main = psutil.Process(worker_pid)
    return {
        "submitter": cpu_seconds(psutil.Process()),
        "worker main": cpu_seconds(main),
        "pool": sum(cpu_seconds(k) for k in main.children(recursive=True)),
        "postgres": sum(cpu_seconds(p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"),
        "redis": cpu_seconds(psutil.Process(redis_pid)),
    }


def measure(worker, submit, wait, n, redis_pid):
    for i in range(30):
        wait(submit(i))
    time.sleep(1.0)
    burst = int(os.environ.get("BENCH_BURST", "0"))
    before = snapshot(worker.pid, redis_pid)
    latencies = []
    for start in range(0, n, burst or 1):
        started = time.perf_counter()
        handles = [(i, submit(i)) for i in range(start, min(n, start + (burst or 1)))]
        for i, handle in handles:
            assert wait(handle) == i
        latencies.append((time.perf_counter() - started) / len(handles))
    after = snapshot(worker.pid, redis_pid)
    res = {k: (after[k] - before[k]) / n * 1000 for k in KINDS}
    res["p50"] = statistics.median(latencies) * 1000
    return res


def run_mieruka(n, redis_pid):
    sys.path.insert(0, HERE)
    from harness import in_process, on_celery

    with on_celery("cpu", broker_db=6) as (env, worker_command):
        from mieruka_bench_app import app

        worker = subprocess.Popen(
            worker_command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        app.start()
        try:
            submit, wait = in_process(app)
            return measure(worker, submit, wait, n, redis_pid)
        finally:
            app.stop()
            run.stop_worker(worker)


def run_celery(peers_dir, n, redis_pid):
    """In the peers' venv: their bench_celery app, unchanged."""
    sys.path.insert(0, peers_dir)
    import bench_celery
    import common

    bench_celery.flush()
    worker = subprocess.Popen(
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
    try:
        return measure(worker, bench_celery.noop.delay, lambda h: h.get(timeout=60), n, redis_pid)
    finally:
        run.stop_worker(worker)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_REPS", "3")))
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--burst", type=int, default=0, help="jobs per burst (default: one at a time)")
    a = ap.parse_args()
    os.environ["BENCH_BURST"] = str(a.burst)  # read by each round's process
    results = run.rounds_against_celery(
        __file__, a.reps, a.jobs, lambda res: ", ".join(f"{k} {v:.2f}" for k, v in res.items())
    )
    how = f"in bursts of {a.burst}" if a.burst else "sequential"
    print(f"\n## CPU ms per job over {a.jobs} {how} no-op jobs, concurrency 2 (median of {a.reps} rounds)\n")
    wall = "wall ms per job" if a.burst else "p50 ms (wall)"
    print("| system | " + " | ".join(KINDS) + f" | total | {wall} |")
    print("|---|" + "---|" * (len(KINDS) + 2))
    for name, rows in results.items():
        med = {k: statistics.median(row[k] for row in rows) for k in [*KINDS, "p50"]}
        total = statistics.median(sum(row[k] for k in KINDS) for row in rows)
        print(f"| {name} | " + " | ".join(f"{med[k]:.2f}" for k in KINDS) + f" | {total:.2f} | {med['p50']:.1f} |")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        jobs = int(sys.argv[sys.argv.index("--jobs") + 1])
        redis_pid = int(sys.argv[sys.argv.index("--redis-pid") + 1])
        with contextlib.redirect_stdout(sys.stderr):  # only the result on stdout
            res = run_mieruka(jobs, redis_pid) if sys.argv[2] == "mieruka" else run_celery(sys.argv[3], jobs, redis_pid)
        print(json.dumps(res))
    else:
        sys.path.insert(0, HERE)
        main()
