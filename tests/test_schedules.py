"""Schedules fire as ordinary jobs, once per due time, across restarts and several engines."""

from __future__ import annotations

import time
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


def test_two_engines_fire_each_due_time_once(tmp_path: Path, database_url: str) -> None:
    first = _engine_app(tmp_path / "a", database_url)
    second = _engine_app(tmp_path / "b", database_url)
    first.start()
    second.start()
    try:
        time.sleep(4.2)
        ticks = _ticks(first)
    finally:
        second.stop()
        first.stop()
    assert 3 <= len(ticks) <= 5, [t.created_at for t in ticks]
    assert all(t.schedule == "tick" for t in ticks)
    gaps = [(b.created_at - a.created_at).total_seconds() for a, b in zip(ticks, ticks[1:])]
    assert min(gaps) > 0.5, f"fired twice for one due time: {gaps}"


def test_missed_runs_are_coalesced_after_a_restart(tmp_path: Path, database_url: str) -> None:
    app = _engine_app(tmp_path / "a", database_url)
    app.start()
    time.sleep(1.5)
    app.stop()
    time.sleep(3.2)  # three due times pass while nothing runs
    app = _engine_app(tmp_path / "a", database_url)
    app.start()
    restarted = time.time()
    try:
        time.sleep(0.6)
        ticks = _ticks(app)
    finally:
        app.stop()
    after = [t.created_at.timestamp() for t in ticks if t.created_at.timestamp() >= restarted - 0.05]
    # At most the catch-up run plus the next regular one: never a burst of the missed ones.
    # (Three or four due times were missed: firing each would make at least three jobs.)
    assert 1 <= len(after) <= 2, after


def test_scheduled_jobs_run_and_succeed(tmp_path: Path, database_url: str) -> None:
    app = _engine_app(tmp_path / "a", database_url)
    app.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            done = [t for t in _ticks(app) if t.status is mieruka.JobStatus.SUCCEEDED]
            if done:
                break
            time.sleep(0.1)
    finally:
        app.stop()
    assert done and done[0].result == "tick"
