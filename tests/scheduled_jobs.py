"""An app with a scheduled task, for the schedule tests."""

from __future__ import annotations

import mieruka

app = mieruka.App("scheduled")


@app.task(every="1s")
def tick() -> str:
    return "tick"
