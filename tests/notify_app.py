"""The app of tests/servers/test_notifications_server.py: a task whose jobs fail, told to the webhook
the test names (MIERUKA_TEST_NOTIFY_HOOK), and one that succeeds."""

from __future__ import annotations

import os
import time

import mieruka
from mieruka import App

HOOK = os.environ.get("MIERUKA_TEST_NOTIFY_HOOK", "http://127.0.0.1:9/nobody")

app = App("notify flood")


@app.task(notify=mieruka.notify.on_failure("webhook:" + HOOK))
def boom(n: int = 0, pause: float = 0.02) -> None:
    time.sleep(pause)
    raise ValueError(f"failure number {n}")


@app.task
def fine() -> int:
    return 1
