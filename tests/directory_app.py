"""An app for directory login tests (tests/servers/test_ldap.py): a task anyone may run, one only the
members of the directory group lab-ops may see and run (allow=["group:lab-ops"]), and a dashboard
only the members of lab see."""

from __future__ import annotations

import mieruka
from mieruka import charts

app = mieruka.App("directory", workers=1)


@app.task
def hello(name: str = "world") -> str:
    return f"hello {name}"


@app.task(allow=["group:lab-ops"])
def calibrate(level: int = 1) -> int:
    return level * 2


@app.source(every="1h")
def benches() -> list[dict[str, object]]:
    return [{"bench": "A", "free": True}]


app.dashboard("lab-board", [charts.table(benches)], allow=["group:lab"])
