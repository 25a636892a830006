"""Hospital data made visible: census by ward, admissions per hour, bed occupancy and the latest
admissions, read from the warehouse every 10 seconds and pushed to every open browser.

    python examples/hospital_dashboard/generate.py      # once: a synthetic warehouse (SQLite)
    mieruka run examples/hospital_dashboard/app.py       # http://127.0.0.1:8000/dashboards/hospital

The warehouse is SQLite next to this file by default. HOSPITAL_DB_URL points at any SQLAlchemy URL;
HOSPITAL_ODBC at a raw ODBC connection string instead, for drivers with no SQLAlchemy dialect
(the hospital's Symfoware), e.g. "DRIVER={Symfoware ODBC Driver};SERVER=dwh;PORT=26551;...".
The same SQL serves both: its :name parameters are bound by SQLAlchemy or turned into ? for ODBC.
"""

from __future__ import annotations

import os
import runpy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import mieruka
from mieruka import charts

HERE = Path(__file__).parent
URL = os.environ.get("HOSPITAL_DB_URL", f"sqlite:///{HERE / 'warehouse.db'}")
ODBC = os.environ.get("HOSPITAL_ODBC")
EVERY = os.environ.get("HOSPITAL_REFRESH", "10s")

app = mieruka.App(
    "Hospital",
    description="Figures from the records warehouse, refreshed every 10 s.",
    timezone=os.environ.get("MIERUKA_TIMEZONE", "Asia/Tokyo"),
)

if not ODBC and "HOSPITAL_DB_URL" not in os.environ and not (HERE / "warehouse.db").exists():
    # First run: make the synthetic warehouse with the generator script beside this file.
    runpy.run_path(str(HERE / "generate.py"))["generate"](URL)


def _moment(delta: timedelta = timedelta()) -> Any:
    """Now (UTC, as the warehouse stores it) minus `delta`; SQLite compares text, so it gets text."""
    moment = (datetime.now(UTC) - delta).replace(tzinfo=None, microsecond=0)
    return moment.isoformat(" ") if not ODBC and URL.startswith("sqlite") else moment


def warehouse(name: str, sql: str, params: Any = None, **options: Any) -> Any:
    where = {"odbc": ODBC} if ODBC else {"url": URL}
    return app.source(name, sql=sql, params=params, every=EVERY, timeout="20s", **where, **options)


def _per_hour(frame: Any) -> Any:
    import pandas as pd

    hours = pd.to_datetime(frame["admitted_at"], format="ISO8601").dt.floor("h")
    counts = hours.value_counts().sort_index()
    full = pd.date_range(_floor_hour(7), _floor_hour(0), freq="h")
    counts = counts.reindex(full, fill_value=0)
    return pd.DataFrame({"hour": counts.index, "admissions": counts.to_numpy()})


def _floor_hour(days: int) -> datetime:
    return (datetime.now(UTC) - timedelta(days=days)).replace(tzinfo=None, minute=0, second=0, microsecond=0)


def _local_times(frame: Any) -> Any:
    import pandas as pd

    # The warehouse keeps UTC without a zone: say so, and the table shows the configured zone.
    return frame.assign(admitted_at=pd.to_datetime(frame["admitted_at"], format="ISO8601").dt.tz_localize("UTC"))


def _occupancy(frame: Any) -> Any:
    return frame.assign(occupancy=frame["occupied"].astype(float) / frame["beds"].astype(float))


census = warehouse(
    "census",
    "SELECT w.name AS ward, COUNT(a.id) AS patients, w.beds AS beds FROM wards w "
    "LEFT JOIN admissions a ON a.ward_id = w.id AND a.admitted_at <= :now "
    "AND (a.discharged_at IS NULL OR a.discharged_at > :now) GROUP BY w.name, w.beds ORDER BY w.name",
    params=lambda: {"now": _moment()},
    title="Census by ward",
)
per_hour = warehouse(
    "admissions_per_hour",
    "SELECT admitted_at FROM admissions WHERE admitted_at >= :since",
    params=lambda: {"since": _moment(timedelta(days=7))},
    transform=_per_hour,
    title="Admissions per hour",
)
occupancy = warehouse(
    "occupancy",
    "SELECT (SELECT SUM(beds) FROM wards) AS beds, COUNT(*) AS occupied FROM admissions "
    "WHERE admitted_at <= :now AND (discharged_at IS NULL OR discharged_at > :now)",
    params=lambda: {"now": _moment()},
    transform=_occupancy,
    title="Bed occupancy",
)
recent = warehouse(
    "recent_admissions",
    "SELECT a.id, a.admitted_at, w.name AS ward, a.age, a.sex, a.diagnosis FROM admissions a "
    "JOIN wards w ON w.id = a.ward_id ORDER BY a.admitted_at DESC, a.id DESC LIMIT 200",
    transform=_local_times,
    title="Recent admissions",
)

app.dashboard(
    "hospital",
    [
        charts.kpi(occupancy, "occupancy", format="{:.1%}", title="Bed occupancy"),
        charts.kpi(occupancy, "occupied", title="Inpatients now"),
        charts.bar(census, x="ward", y=["patients", "beds"], title="Census by ward", span=2),
        charts.line(per_hour, x="hour", y="admissions", title="Admissions per hour, last 7 days", span=2),
        charts.table(recent, title="Recent admissions", page_size=10, span=2),
    ],
    title="Hospital — today",
    columns=2,
    description="Refreshed from the warehouse every 10 seconds.",
)
