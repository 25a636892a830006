"""Schedules fire as ordinary jobs, once per due time, across restarts and several engines."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import mieruka
from mieruka.store.base import JobQuery
from tests.scheduled_jobs import app as scheduled_app


def _engine_app(home: Path, url: str) -> mieruka.App:
    other = mieruka.App("scheduled copy")
    other.tasks = scheduled_app.tasks
    other.ref = "tests.scheduled_jobs:app"
    other.configure(home=str(home), database_url=url, workers=1, poll_interval=0.1)
    return other


def _ticks(app: mieruka.App) -> list[mieruka.JobRecord]:
    jobs = app.engine.store.list_jobs(JobQuery(task="tick", limit=1000))
    return sorted(jobs, key=lambda j: j.id)


def _wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


def test_two_engines_fire_each_due_time_once(tmp_path: Path, database_url: str) -> None:
    """Two engines on one store: each due time fires once. A slow machine fires fewer jobs, never more
    than there were due times (a double fire for one due time would make twice as many)."""
    first = _engine_app(tmp_path / "a", database_url)
    second = _engine_app(tmp_path / "b", database_url)
    started = time.time()
    first.start()
    second.start()
    try:
        _wait_until(lambda: len(_ticks(first)) >= 3)
        ticks = _ticks(first)
        elapsed = time.time() - started
    finally:
        second.stop()
        first.stop()
    assert all(t.schedule == "tick" for t in ticks)
    assert len(ticks) <= int(elapsed) + 2, (elapsed, [t.created_at for t in ticks])  # every=1s: due times seen


def test_missed_runs_are_coalesced_after_a_restart(tmp_path: Path, database_url: str) -> None:
    app = _engine_app(tmp_path / "a", database_url)
    app.start()
    try:
        _wait_until(lambda: len(_ticks(app)) >= 1)
    finally:
        app.stop()
    time.sleep(3.2)  # three due times pass while nothing runs
    app = _engine_app(tmp_path / "a", database_url)
    app.start()
    restarted = time.time()
    try:
        _wait_until(lambda: any(t.created_at.timestamp() >= restarted - 0.05 for t in _ticks(app)))
        time.sleep(1.0)
        ticks = _ticks(app)
    finally:
        app.stop()
    after = sorted(t.created_at.timestamp() for t in ticks if t.created_at.timestamp() >= restarted - 0.05)
    # The catch-up run, then the regular ones a second apart: never a burst of the three missed, so no
    # three runs within one second, however long the restart took.
    assert after and all(after[i + 2] - after[i] > 1.0 for i in range(len(after) - 2)), after


def test_scheduled_jobs_run_and_succeed(tmp_path: Path, database_url: str) -> None:
    app = _engine_app(tmp_path / "a", database_url)
    app.start()
    try:
        _wait_until(lambda: any(t.status is mieruka.JobStatus.SUCCEEDED for t in _ticks(app)))
        done = [t for t in _ticks(app) if t.status is mieruka.JobStatus.SUCCEEDED]
    finally:
        app.stop()
    assert done[0].result == "tick"
