"""A live streaming chart: two random series once a second on a rolling chart in every open
browser, with reconnect and catch-up, and no JavaScript to write (scenario 3).

    mieruka run examples/realtime_chart/app.py          # http://127.0.0.1:8000/dashboards/realtime
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import mieruka
from mieruka import charts

app = mieruka.App("Realtime chart")


@app.stream(every=1.0, window="2m", title="Two random series")
def random_series() -> Iterator[dict[str, float]]:
    """Two random walks between 0 and 100, one point a second."""
    a = b = 50.0
    while True:
        a = min(100.0, max(0.0, a + random.uniform(-8, 8)))
        b = min(100.0, max(0.0, b + random.uniform(-8, 8)))
        yield {"series_a": round(a, 2), "series_b": round(b, 2)}


app.dashboard(
    "realtime",
    [charts.stream(random_series, title="Two random series", window=120, height=360)],
    title="Realtime chart",
    columns=1,
)
