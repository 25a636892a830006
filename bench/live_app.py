"""The app bench/live.py serves: one 10 Hz stream stamped with its production time, and a
dashboard over a 1,000,000-row SQLite table (BENCH_LIVE_DB)."""

from __future__ import annotations

import os
import time

import mieruka
from mieruka import charts

app = mieruka.App("live bench", workers=1, heartbeat_interval=5)


@app.stream(every=0.1, window="30s")
def ticks() -> dict[str, float]:
    now = time.time()
    return {"time": now, "value": now % 1}


DB = os.environ.get("BENCH_LIVE_DB")
if DB:
    big = app.source("big", url=f"sqlite:///{DB}", sql="SELECT t, value FROM readings ORDER BY t", timeout="5m")
    app.dashboard("big", [charts.line(big, x="t", y="value", title="1,000,000 readings")])
