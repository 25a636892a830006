"""The app of the wall-screen tests (tests/web/test_displays.py, tests/servers/test_displays_server.py):
a public dashboard (lobby), an allow-listed one a display link is made for (wards), and one every
signed-in viewer sees but nobody without a login (staff). Each carries its own marker, so a page or
stream that shows one where it must not is caught. The lobby's controls are for signed-in
operators: a reader without a login never sees them, nor what they read (a tile of the lobby
source, the doors stream no chart shows)."""

from __future__ import annotations

from typing import Any

import mieruka
from mieruka import charts, controls

LOBBY = "lobby-marker-5d1e"
WARDS = "wards-marker-b7c4"
STAFF = "staff-marker-0a9f"
JOB = "job-marker-3e62"

app = mieruka.App("wall", workers=1)


@app.task
def add(a: int, note: str = JOB) -> str:
    return f"{a} {note}"


@app.task(quick=True)
def set_doors(open: bool) -> bool:
    return open


@app.source(every="1h")
def lobby() -> list[dict[str, Any]]:
    return [{"room": LOBBY, "people": 4}, {"room": "cafe", "people": 9}]


@app.source(every="1h")
def beds() -> list[dict[str, Any]]:
    return [{"ward": WARDS, "free": 2}, {"ward": "B", "free": 0}]


@app.source(every="1h")
def rota() -> list[dict[str, Any]]:
    return [{"name": STAFF, "shift": "night"}]


@app.stream(every=0.2)
def pulse() -> dict[str, float]:
    return {"visitors": 12.0}


@app.stream(every=0.2)
def vitals() -> dict[str, float]:
    return {"pulse": 61.0}


@app.stream(every=0.2)
def doors() -> dict[str, float]:  # only the lobby's control reads it: no chart shows it
    return {"open": 1.0}


@app.stream(every=0.2)
def load() -> dict[str, float]:
    return {"cpu": 0.4}


app.dashboard(
    "lobby",
    [
        charts.kpi(lobby, value="people", aggregate="sum", title="Visitors"),
        charts.table(lobby),
        charts.stream(pulse),
        controls.button(add, params={"a": 7}, title="Call the porter", confirm="Call them now?"),
        controls.toggle(set_doors, param="open", state="doors.open", title="Front doors"),
        controls.number(add, param="a", state="lobby.people", title="Head count"),
    ],
    title="Lobby",
    columns=3,
    public=True,
)
app.dashboard(
    "wards",
    [charts.table(beds, title="Free beds"), charts.kpi(beds, value="free", aggregate="sum"), charts.stream(vitals)],
    title="Wards",
    columns=3,
    allow=["olga"],
)
app.dashboard("staff", [charts.table(rota), charts.stream(load)], title="Staff")
