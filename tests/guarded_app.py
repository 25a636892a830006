"""The app the attack tests probe (tests/servers/test_attacks.py): an open task, an allow-listed pipeline
task whose every output carries JOB_SECRET, an open and an allow-listed dashboard (with a source and
a stream that only the allow-listed one shows, carrying BOARD_SECRET), each with controls (one on
the open dashboard runs the allow-listed task). The sources have no schedule: they are read once at
start-up, since an hourly one refreshes on the hour, inside whichever probe of the matrix runs then."""

from __future__ import annotations

from typing import Any

import mieruka
from mieruka import charts, controls

JOB_SECRET = "zq-job-secret-7f3a"
BOARD_SECRET = "zq-board-secret-91c2"
SECRET_TASK = "vault"  # its name is not shown to those its allow list leaves out
SECRET_STREAM = "vitals"

app = mieruka.App("guarded", workers=2)


@app.task
def add(a: int, b: int = 2) -> int:
    return a + b


@app.task
def sleep(seconds: float = 30) -> float:
    import time

    time.sleep(seconds)
    return seconds


def reveal(secret: str, *, job: mieruka.Job) -> dict[str, str]:
    print(f"log line with {secret}")
    job.artifact("secret.txt", f"artifact with {secret}")
    return {"echo": secret}


@app.pipeline(name=SECRET_TASK, allow=["olga"])
def vault(secret: str = JOB_SECRET, *, pipe: mieruka.Pipeline) -> object:
    """Only olga (and admins) may see this task and its jobs."""
    return pipe.step(reveal, secret, name="reveal")


@app.source()
def wards() -> list[dict[str, Any]]:
    return [{"ward": "A", "patients": 3}]


@app.source()
def beds() -> list[dict[str, Any]]:
    return [{"ward": BOARD_SECRET, "free": 1}]


@app.stream(every=0.5, name=SECRET_STREAM)
def vitals() -> dict[str, float]:
    return {"pulse": 60.0}


app.dashboard(
    "open",
    [
        charts.table(wards),
        controls.button(add, params={"a": 1}, title="Add one"),
        controls.button(SECRET_TASK, title="Open the safe"),  # shown to all, pressed by olga alone
    ],
)
app.dashboard(
    "wards",
    [charts.table(beds), charts.stream(vitals), controls.button(add, params={"a": 2}, title="Add two")],
    allow=["olga"],
)


@app.source()
def lobby() -> list[dict[str, Any]]:
    return [{"room": "hall", "people": 3}]


app.dashboard("lobby", [charts.table(lobby)], public=True)  # a wall screen: anyone sees it without a login
