"""A server on SQLite serves a user's day without SQLAlchemy: the job list with each of its filters,
logs, queues, the timeline, pipeline steps, schedules, retention and pools are plain SQL on the
DB-API connections. Checked twice: no statement goes through SQLAlchemy's engines, and a fresh
interpreter that runs them all never imports it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from mieruka.core.clock import utcnow
from mieruka.core.job import ArtifactInfo
from mieruka.core.status import JobStatus
from mieruka.core.steps import StepRecord
from mieruka.store.base import (
    ArtifactAdded,
    Claim,
    Deleted,
    JobQuery,
    LogAppend,
    NewJob,
    StepsPlanned,
    Transition,
)
from mieruka.store.database import Database
from mieruka.store.pools import SqlPoolStore
from mieruka.store.sql import SqlJobStore
from tests.unit.test_imports import loaded_after

ROOT = Path(__file__).parents[2]
RUNNING, SUCCEEDED = JobStatus.RUNNING, JobStatus.SUCCEEDED


def tour(db: Database, check: Callable[[str], None]) -> None:
    """Every method of the job store's listings, steps, schedules and retention and of the pool
    store, each list_jobs filter on its own and all together; `check(what)` after each call fails
    if that call went through SQLAlchemy."""
    store, pools = SqlJobStore(db), SqlPoolStore(db)
    now = utcnow()
    a, _ = store.create_job(NewJob(task="a", params={"name": "Liver_01"}, owner="alice", queue="gpu", uploads=("u1",)))
    b, _ = store.create_job(NewJob(task="b", params={"name": "kidney"}, owner="bob"))
    c, _ = store.create_job(NewJob(task="a", params={"name": "liver-02"}, owner="alice"))
    artifact = ArtifactInfo(name="r.txt", size=1, content_type="text/plain", created_at=now)
    store.apply(
        [
            LogAppend(a.id, 1, [(now, "stdout", "one")]),
            LogAppend(a.id, 2, [(now, "stdout", "two")], step="s"),
            StepsPlanned(a.id, [StepRecord(a.id, "s", 0, "shell", output={"n": 1})]),
            ArtifactAdded(a.id, artifact),
        ],
        Claim([a.id, b.id], "w", "e", now),
    )
    for job in (a, b):
        store.apply([Transition(job.id, SUCCEEDED, frozenset({RUNNING}), {"finished_at": now})])
    check("the hot path (setting up)")

    lists = {
        "no filter": (JobQuery(), [c, b, a]),
        "task": (JobQuery(task="a"), [c, a]),
        "status": (JobQuery(status=[SUCCEEDED]), [b, a]),
        "hidden_tasks": (JobQuery(hidden_tasks=frozenset({"a"})), [b]),
        "owner": (JobQuery(owner="bob"), [b]),
        "created_after": (JobQuery(created_after=now - timedelta(hours=1)), [c, b, a]),
        "created_before": (JobQuery(created_before=a.created_at), []),
        "before_id": (JobQuery(before_id=c.id), [b, a]),
        "before_id past MAX_INT": (JobQuery(before_id=2**40), [c, b, a]),
        "search": (JobQuery(search="LIVER_"), [a]),
        "limit": (JobQuery(limit=1), [c]),
        "every filter": (
            JobQuery(
                task="a",
                status=[SUCCEEDED],
                owner="alice",
                created_after=now - timedelta(hours=1),
                created_before=now + timedelta(hours=1),
                search="liver",
                before_id=c.id,
                limit=5,
                hidden_tasks=frozenset({"b"}),
            ),
            [a],
        ),
    }
    for what, (query, expected) in lists.items():
        assert [j.id for j in store.list_jobs(query)] == [j.id for j in expected], what
        check(f"list_jobs, {what}")
    assert [line.text for line in store.read_logs(a.id)] == ["one", "two"]
    check("read_logs")
    assert [line.text for line in store.read_logs(a.id, step="s")] == ["two"]
    check("read_logs of a step")
    assert [(q.queue, q.queued, q.running) for q in store.queue_stats()] == [("default", 1, 0)]
    check("queue_stats")
    assert [bucket.finished for bucket in store.timeline(now - timedelta(minutes=1), 3600)] == [{"succeeded": 2}]
    check("timeline")
    assert [(s.name, s.output) for s in store.list_steps(a.id)] == [("s", {"n": 1})]
    check("list_steps")
    due = now + timedelta(hours=1)
    assert store.schedule_due("nightly", due) == due
    check("schedule_due, a new schedule")
    assert store.schedule_due("nightly", due + timedelta(days=1)) == due
    check("schedule_due, a stored schedule")
    assert store.prune("b", older_than=now + timedelta(seconds=1), keep=0) == Deleted([b.id], [])
    check("prune")
    assert store.delete_job(c.id) == Deleted()  # not finished
    check("delete_job of a job that is not finished")
    assert store.delete_job(a.id) == Deleted([a.id], ["u1"])
    check("delete_job")
    assert store.list_steps(a.id) == [] and store.read_logs(a.id) == []
    check("reading what delete_job deleted")

    pools.ensure("gpu", "stopped", now)
    check("SqlPoolStore.ensure, a new pool")
    pools.ensure("gpu", "running", now)
    check("SqlPoolStore.ensure, a known pool")
    gpu = pools.get("gpu")
    assert gpu is not None and gpu.state == "stopped"
    check("SqlPoolStore.get")
    assert pools.move("gpu", {"stopped"}, "starting", "job 1 waits", now)
    check("SqlPoolStore.move")
    assert not pools.move("gpu", {"stopped"}, "starting", "again", now)
    check("SqlPoolStore.move, refused")
    pools.touch("gpu", now + timedelta(seconds=5))
    check("SqlPoolStore.touch")
    assert [(p.name, p.state, p.busy_at) for p in pools.all()] == [("gpu", "starting", now + timedelta(seconds=5))]
    check("SqlPoolStore.all")
    assert [e.to_state for e in pools.history("gpu")] == ["starting", "stopped"]
    check("SqlPoolStore.history")


def test_a_users_day_on_sqlite_runs_no_statement_through_sqlalchemy(tmp_path: Path) -> None:
    import sqlalchemy as sa

    db = Database(f"sqlite:///{tmp_path / 'mieruka.db'}")
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    def check(what: str) -> None:
        made = statements[:]
        statements.clear()
        assert made == [], f"{what} went through SQLAlchemy: {made}"

    try:
        db.migrate()
        for engine in {db.engine, db._reader}:
            sa.event.listen(engine, "before_cursor_execute", seen)
        tour(db, check)
    finally:
        db.close()


def test_a_users_day_on_sqlite_imports_no_sqlalchemy(tmp_path: Path) -> None:
    """In a fresh interpreter: after each call, SQLAlchemy is still not among the loaded modules."""
    script = textwrap.dedent(
        f"""
        import sys

        from mieruka.store.database import Database
        from tests.unit.test_store_plain_sql import tour


        def check(what):
            loaded = sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy")
            assert not loaded, f"{{what}} imported SQLAlchemy: {{loaded[:5]}}"


        db = Database({f"sqlite:///{tmp_path / 'mieruka.db'}"!r})
        db.migrate()
        check("migrate")
        tour(db, check)
        db.close()
        """
    )
    assert "sqlalchemy" not in loaded_after(script, tmp_path)
