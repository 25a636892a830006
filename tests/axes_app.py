"""A dashboard of large numbers over a time axis, for tests/browser/test_chart_axes.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import mieruka
from mieruka import charts

app = mieruka.App("Axes test", workers=1, timezone="Asia/Tokyo")
START = datetime(2026, 4, 12, 11, 0, tzinfo=UTC)  # 20:00 in Tokyo


@app.source(every="1h")
def visits() -> list[dict[str, Any]]:
    return [{"t": START + timedelta(minutes=10 * i), "visits": 2_400_000 + 400_000 * i} for i in range(60)]


@app.source(every="1h")
def wards() -> list[dict[str, Any]]:
    return [{"ward": "A", "beds": 950_000}, {"ward": "B", "beds": 12_000_000}]


app.dashboard(
    "axes",
    [charts.line(visits, x="t", y="visits", title="Visits"), charts.bar(wards, x="ward", y="beds", title="Beds")],
)
