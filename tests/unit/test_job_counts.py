"""The job counts of /healthz, /metrics and the workers panel: queued and running counted from
their index on every call, the finished ones from a scan of the table at most every few seconds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mieruka.core.status import JobStatus
from mieruka.store.base import NewJob
from mieruka.store.sql import SqlJobStore
from mieruka.web import counts


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlJobStore]:
    s = SqlJobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    s.migrate()
    try:
        yield s
    finally:
        s.close()


def _finish(store: SqlJobStore, status: JobStatus) -> None:
    record, _ = store.create_job(NewJob(task="t", params={}))
    with store.db.write() as conn:
        conn.execute(sa.text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": status.value, "id": record.id})


def test_finished_jobs_are_counted_at_most_every_few_seconds(
    store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _finish(store, JobStatus.SUCCEEDED)
    assert counts.job_counts(store)["succeeded"] == 1
    _finish(store, JobStatus.SUCCEEDED)
    store.create_job(NewJob(task="t", params={}))
    later = counts.job_counts(store)
    assert later["succeeded"] == 1 and later["queued"] == 1  # queued: now; succeeded: as of the last count
    monkeypatch.setattr(counts, "FINISHED_EVERY", 0.0)
    assert counts.job_counts(store) == {"queued": 1, "running": 0, "succeeded": 2, "failed": 0, "cancelled": 0}


def test_queued_and_running_are_counted_from_their_index(store: SqlJobStore) -> None:
    """In plain SQL (/healthz asks every second, and needs no SQLAlchemy), from ix_jobs_active alone."""
    with store.db.cursor() as cur:
        conn = cur.connection  # the thread's reading connection, which count_by_status uses too
    said: list[str] = []
    conn.set_trace_callback(said.append)
    try:
        store.count_by_status(active_only=True)
    finally:
        conn.set_trace_callback(None)
    (statement,) = [s for s in said if "count(" in s]
    plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + statement))
    assert "ix_jobs_active" in plan and "SCAN jobs" not in plan, plan
