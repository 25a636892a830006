"""The benchmark's mieruka app: one no-op task, 2 workers (same workload as the peers).

Worker processes import this module by reference ("mieruka_bench_app:app", or the file path when
served by `mieruka run bench/mieruka_bench_app.py:app`), so it must stay importable and cheap.
The data directory comes from MIERUKA_BENCH_HOME; the harness sets a fresh one per repetition.
Nothing is created on import: App settings are read lazily when the engine starts.
"""

import os

import mieruka

app = mieruka.App(
    "bench",
    home=os.environ.get("MIERUKA_BENCH_HOME", "/tmp/mieruka-bench/home"),
    workers=int(os.environ.get("MIERUKA_BENCH_WORKERS", "2")),
)


@app.task
def noop(x: int) -> int:
    return x
