"""The dashboards test app. Its data lives where DASH_DIR says (the tests write it there):
`value.json` feeds a function source (the text "fail" makes it raise), `wards.db` a SQL source."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import mieruka
from mieruka import charts

DIR = Path(os.environ.get("DASH_DIR", ".dash"))
app = mieruka.App("Dashboards test", workers=1, timezone="Asia/Tokyo")


def make_wards(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE IF NOT EXISTS wards (ward TEXT PRIMARY KEY, patients INTEGER)")
        db.execute("CREATE TABLE IF NOT EXISTS secrets (token TEXT)")
        db.execute("DELETE FROM wards")
        db.executemany("INSERT INTO wards VALUES (?, ?)", [("A", 10), ("B", 20), ("C", 30)])
        db.execute("INSERT INTO secrets SELECT 'keep me' WHERE NOT EXISTS (SELECT 1 FROM secrets)")


make_wards(DIR / "wards.db") if not (DIR / "wards.db").exists() else None


@app.source(every="1s")
def counter() -> list[dict[str, Any]]:
    """The value the tests write into value.json, as one row per ward."""
    text = (DIR / "value.json").read_text() if (DIR / "value.json").exists() else '{"A": 1, "B": 2}'
    if text.strip() == "fail":
        raise RuntimeError("the warehouse is down")
    return [{"ward": k, "patients": v} for k, v in json.loads(text).items()]


wards = app.source(
    "wards",
    url=f"sqlite:///{DIR / 'wards.db'}",
    every="1h",
    sql="SELECT ward, patients FROM wards WHERE ward <> :skip ORDER BY ward",
    params={"skip": "Z"},
)
app.source(
    "lookup",
    url=f"sqlite:///{DIR / 'wards.db'}",
    sql="SELECT ward, patients FROM wards WHERE ward = :ward",
    params=lambda: {"ward": _ward()},
)


def _ward() -> str:
    path = DIR / "ward.txt"
    return path.read_text() if path.exists() else "A"


@app.source(every="1h")
def series() -> dict[str, Any]:
    """200,000 points of a sine with one spike: downsampled, the spike must survive."""
    import numpy as np

    t = np.arange(200_000, dtype=np.float64) + 1_767_225_600.0
    y = np.sin(np.arange(200_000) / 5000.0)
    y[123_456] = 50.0
    return {"t": t, "y": y}


@app.stream(every=0.05)
def ticks() -> dict[str, float]:
    now = time.time()
    return {"sin": math.sin(now), "cos": math.cos(now)}


app.dashboard(
    "ops",
    [
        charts.bar(counter, x="ward", y="patients", title="Patients by ward"),
        charts.kpi(counter, "patients", aggregate="sum", title="Patients"),
        charts.table(wards, title="Wards", page_size=2),
        charts.line(series, x="t", y="y", title="Signal", points=500),
        charts.stream(ticks, title="Ticks", window=10),
    ],
    title="Operations",
    columns=2,
)
