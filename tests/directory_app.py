"""An app for directory login tests (tests/servers/test_ldap.py): a task anyone may run, one only the
members of the directory group lab-ops may see and run (allow=["group:lab-ops"]), one of lab's
members that fails when asked (for their subscriptions), and a dashboard only the members of lab
see."""

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


@app.task(allow=["group:lab"])
def inspect(fail: bool = True) -> str:
    if fail:
        raise RuntimeError("the bench is out of tune")
    return "in tune"


@app.source(every="1h")
def benches() -> list[dict[str, object]]:
    return [{"bench": "A", "free": True}]


app.dashboard("lab-board", [charts.table(benches)], allow=["group:lab"])
