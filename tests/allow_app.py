"""An app with one open and one allow-listed dashboard, for tests/web/test_access.py."""

from __future__ import annotations

from typing import Any

import mieruka
from mieruka import charts

app = mieruka.App("allow lists", workers=1)


@app.source(every="1h")
def wards() -> list[dict[str, Any]]:
    return [{"ward": "A", "patients": 3}]


@app.source(every="1h")
def beds() -> list[dict[str, Any]]:
    return [{"ward": "A", "free": 1}]


app.dashboard("open", [charts.table(wards)])
app.dashboard("wards", [charts.bar(wards, "ward", "patients"), charts.table(beds)], allow=["admin", "olga"])
