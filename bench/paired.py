"""mieruka on Celery against plain Celery, measured in turns, so that the machine's speed swings hit
both alike.

usage (from the repo root):  .venv/bin/python bench/paired.py [--pairs N] [--bursts N] [--burst-jobs N]

Both run at once, from this process and with the repo's venv (the same Celery, kombu, redis-py and
hiredis on both sides), against one private Redis: one `mieruka worker --concurrency 2` (job store:
a fresh PostgreSQL database) and one plain Celery prefork worker with concurrency 2 running the
shared peers' `bench_celery` app unchanged (results in Redis). After a warm-up:

- latency: N pairs (1,000) of one job each, the two systems taking turns (which one goes first
  alternates), every job submitted and waited for alone; p50/p95/p99 per system;
- throughput: bursts (5 per system, taking turns) of 500 jobs submitted at once and then waited
  for; the median burst rate per system.

`bench/run.py` runs each system in its own rounds of a few seconds; on a machine whose speed swings
by 2x within a minute, its ratios move by a third from one run to the next. Here both systems meet
the same moments. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def pct(xs, q):  # as the peers' common.pct
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--bursts", type=int, default=5)
    ap.add_argument("--burst-jobs", type=int, default=500)
    a = ap.parse_args()
    sys.path.insert(0, HERE)
    import run as bench
    from harness import in_process, kill_tree, on_celery

    os.makedirs(os.path.join(bench.OUT, "logs"), exist_ok=True)
    redis_proc, redis_port = bench.start_redis()
    os.environ["BENCH_REDIS_PORT"] = str(redis_port)
    sys.path.insert(0, bench.PEERS_DIR)
    import bench_celery  # reads BENCH_REDIS_PORT

    workers = []
    try:
        with on_celery("paired", broker_db=2) as (env, mieruka_worker):
            bench_celery.flush()  # the peers' own reset (FLUSHALL): before anything is queued
            log = open(os.path.join(bench.OUT, "logs", "paired-workers.log"), "a")  # noqa: SIM115
            workers.append(
                subprocess.Popen(
                    mieruka_worker,
                    cwd=ROOT,
                    env={**os.environ, **env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            )
            celery_bin = os.path.join(os.path.dirname(sys.executable), "celery")
            workers.append(
                subprocess.Popen(
                    [
                        celery_bin,
                        "-A",
                        "bench_celery",
                        "worker",
                        "--pool=prefork",
                        "--concurrency=2",
                        "--loglevel=WARNING",
                        "--without-gossip",
                        "--without-mingle",
                    ],
                    cwd=bench.PEERS_DIR,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONPATH": bench.PEERS_DIR},
                    stdin=subprocess.DEVNULL,
                )
            )
            from mieruka_bench_app import app

            app.start()
            try:
                submit, wait = in_process(app)
                systems = {
                    "mieruka on Celery": (submit, wait),
                    "celery": (lambda i: bench_celery.noop.delay(i), lambda h: h.get(timeout=60)),
                }
                results = measure(systems, a.pairs, a.bursts, a.burst_jobs, bench.log)
            finally:
                app.stop()
    finally:
        for worker in workers:
            kill_tree(worker)
        redis_proc.terminate()
    report(results, a)


def measure(systems, pairs, bursts, burst_jobs, log):
    for name, (submit, wait) in systems.items():
        for i in range(30):  # warm-up; the first job doubles as the readiness probe
            assert wait(submit(i)) == i, name
    time.sleep(2)
    names = list(systems)
    latency = {name: [] for name in names}
    for p in range(pairs):
        for name in names if p % 2 == 0 else names[::-1]:
            submit, wait = systems[name]
            started = time.perf_counter()
            assert wait(submit(p)) == p
            latency[name].append((time.perf_counter() - started) * 1000)
    log("latency: " + ", ".join(f"{n} p50 {statistics.median(v):.2f} ms" for n, v in latency.items()))
    rates = {name: [] for name in names}
    for b in range(bursts):
        for name in names if b % 2 == 0 else names[::-1]:
            submit, wait = systems[name]
            started = time.perf_counter()
            handles = [submit(i) for i in range(burst_jobs)]
            for i, h in enumerate(handles):
                assert wait(h) == i
            rates[name].append(burst_jobs / (time.perf_counter() - started))
            time.sleep(1)  # the store and the broker settle between bursts
        log(f"burst {b + 1}: " + ", ".join(f"{n} {v[-1]:.0f} jobs/s" for n, v in rates.items()))
    return latency, rates


def report(results, a):
    latency, rates = results
    names = list(latency)
    print(f"\n## In turns: {a.pairs} latency pairs, {a.bursts} bursts of {a.burst_jobs} jobs per system\n")
    print("| system | burst jobs/s (median [min-max]) | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name in names:
        r = rates[name]
        print(
            f"| {name} | {statistics.median(r):,.0f} [{min(r):,.0f}-{max(r):,.0f}] | "
            f"{pct(latency[name], 50):.2f} | {pct(latency[name], 95):.2f} | {pct(latency[name], 99):.2f} |"
        )
    ours, theirs = names
    print(
        f"\nOverhead (Celery / mieruka on Celery for throughput, mieruka / Celery for latency): throughput "
        f"{statistics.median(rates[theirs]) / statistics.median(rates[ours]):.2f}x, p50 "
        f"{pct(latency[ours], 50) / pct(latency[theirs], 50):.2f}x, p99 "
        f"{pct(latency[ours], 99) / pct(latency[theirs], 99):.2f}x"
    )


if __name__ == "__main__":
    main()
