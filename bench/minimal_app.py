"""The footprint bench's minimal mieruka app: the peers' hello-world (../shared/peers/apps/app_*.py:
a page saying "hello" with a line chart of 1, 3, 2, 4) plus the one thing they lack, a task.

The chart is a stream's, which needs no extra: like Flask's and FastAPI's inline SVG, it brings no
data library. A source (`app.source`) would import pandas; `mieruka demo` is measured for that.
The producer yields its four points and then waits, so the app costs no CPU at idle.

    mieruka run bench/minimal_app.py --workers 2     # http://127.0.0.1:8000/dashboards/hello
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import mieruka
from mieruka import charts

app = mieruka.App("hello")


@app.task
def hello(name: str = "world", seconds: float = 0.0) -> str:
    """Say hello, after `seconds` (the bench keeps every worker busy once, so that all are started)."""
    time.sleep(seconds)
    return f"hello, {name}"


@app.stream(every=None, window="1h", title="hello")
def points() -> Iterator[dict[str, float]]:
    """The peers' four points, one second apart, then nothing more."""
    now = time.time()
    for i, y in enumerate((1, 3, 2, 4)):
        yield {"time": now - 3 + i, "y": y}
    threading.Event().wait()


app.dashboard("hello", [charts.stream(points, title="hello", window=3600)], title="hello", columns=1)
