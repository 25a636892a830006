"""The store's listings and figures: jobs by query, log lines, counts, queues, the timeline.

Cold statements on SQLAlchemy Core; jobs come back through the one mapper (codec.Codec.job): their
columns are selected untyped, as the driver returns them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from ..core.job import JobRecord
from ..core.status import JobStatus
from ..deferred import deferred
from .base import JobQuery, LogLine, QueueStats, TimelineBucket
from .codec import ACTIVE, JOB_COLUMNS, MAX_INT, time_out
from .database import Database

if TYPE_CHECKING:
    import sqlalchemy as sa

    from . import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")


@cache
def job_row() -> list[sa.ColumnClause[Any]]:
    """A job's columns as the driver returns them (no SQLAlchemy result processing): codec.Codec.job
    reads them. Built at the first use: building them imports SQLAlchemy."""
    return [sa.literal_column(f"jobs.{name}") for name in JOB_COLUMNS]


class JobQueries:
    db: Database

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        c = t.jobs.c
        stmt = sa.select(*job_row()).select_from(t.jobs).order_by(c.id.desc()).limit(query.limit)
        if query.task:
            stmt = stmt.where(c.task == query.task)
        if query.status:
            stmt = stmt.where(c.status.in_([s.value for s in query.status]))
        if query.hidden_tasks:
            stmt = stmt.where(c.task.not_in(sorted(query.hidden_tasks)))
        if query.owner:
            stmt = stmt.where(c.owner == query.owner)
        if query.created_after:
            stmt = stmt.where(c.created_at >= query.created_after)
        if query.created_before:
            stmt = stmt.where(c.created_at < query.created_before)
        if query.before_id is not None:
            stmt = stmt.where(c.id < query.before_id if query.before_id <= MAX_INT else c.id <= MAX_INT)
        if query.search:
            # Parameters are stored as JSON text (codec.json_text): look for the text as it writes it.
            needle = json.dumps(query.search, ensure_ascii=False)[1:-1]
            stmt = stmt.where(sa.cast(c.params, sa.Text).ilike(f"%{_escape_like(needle)}%", escape="\\"))
        with self.db.read() as conn:
            return [self.db.codec.job(row) for row in conn.execute(stmt)]

    def read_logs(self, job_id: int, after: int = 0, limit: int = 1000, step: str | None = None) -> list[LogLine]:
        if not 0 < job_id <= MAX_INT or after >= MAX_INT:
            return []
        lines = t.job_logs.c
        stmt = (
            sa.select(lines.seq, lines.at, lines.stream, lines.text, lines.step)
            .where(lines.job_id == job_id, lines.seq > after)
            .order_by(lines.seq)
            .limit(limit)
        )
        if step is not None:
            stmt = stmt.where(lines.step == step)
        with self.db.read() as conn:
            return [LogLine(seq=r.seq, at=r.at, stream=r.stream, text=r.text, step=r.step) for r in conn.execute(stmt)]

    def cancels_requested(self) -> list[int]:
        db = self.db
        with db.cursor() as cur:  # asked at every poll while jobs run
            cur.execute(
                db.sql(f"SELECT id FROM jobs WHERE {ACTIVE} AND status = ? AND cancel_requested ORDER BY id"),
                (JobStatus.RUNNING.value,),
            )
            return [int(row[0]) for row in cur.fetchall()]

    def next_due_time(self) -> datetime | None:
        db = self.db
        with db.cursor() as cur:
            # The first condition is ix_jobs_active's predicate, as in due_jobs.
            cur.execute(
                db.sql(f"SELECT min(run_after) FROM jobs WHERE {ACTIVE} AND status = ? AND run_after IS NOT NULL"),
                (JobStatus.QUEUED.value,),
            )
            row = cur.fetchone()
        return time_out(row[0]) if row else None

    def count_by_status(self, active_only: bool = False) -> dict[str, int]:
        # Plain SQL: /healthz asks for it, and a load balancer may ask every second.
        where = f" WHERE {ACTIVE}" if active_only else ""
        with self.db.cursor() as cur:
            cur.execute(f"SELECT status, count(*) FROM jobs{where} GROUP BY status")
            rows = cur.fetchall()
        states = (JobStatus.QUEUED, JobStatus.RUNNING) if active_only else tuple(JobStatus)
        counts = {s.value: 0 for s in states}
        counts.update({status: n for status, n in rows})
        return counts

    def queue_stats(self) -> list[QueueStats]:
        c = t.jobs.c
        queued = JobStatus.QUEUED.value
        stmt = (
            sa.select(
                c.queue,
                sa.func.sum(sa.case((c.status == queued, 1), else_=0)),
                sa.func.sum(sa.case((c.status == JobStatus.RUNNING.value, 1), else_=0)),
                sa.func.min(sa.case((c.status == queued, c.created_at), else_=None)),
            )
            .where(c.status.in_([queued, JobStatus.RUNNING.value]))
            .group_by(c.queue)
            .order_by(c.queue)
        )
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        return [
            QueueStats(
                queue=row[0], queued=int(row[1] or 0), running=int(row[2] or 0), oldest_queued_at=time_out(row[3])
            )
            for row in rows
        ]

    def timeline(self, since: datetime, bucket_seconds: int = 60) -> list[TimelineBucket]:
        db = self.db
        size = max(int(bucket_seconds), 1)
        if db.is_sqlite:
            epoch = "CAST(strftime('%s', finished_at) AS INTEGER)"

            def seconds(a: str, b: str) -> str:
                return f"(julianday({a}) - julianday({b})) * 86400.0"
        else:
            epoch = "CAST(floor(extract(epoch from finished_at)) AS BIGINT)"

            def seconds(a: str, b: str) -> str:
                return f"extract(epoch from ({a} - {b}))"

        wait, run = seconds("started_at", "created_at"), seconds("finished_at", "started_at")
        sql = db.sql(
            f"SELECT {epoch} / {size} AS bucket, status, count(*), count(started_at), sum({wait}), max({wait}), "
            f"sum({run}), max({run}) FROM jobs WHERE finished_at >= ? GROUP BY 1, 2 ORDER BY 1"
        )
        with db.cursor() as cur:
            cur.execute(sql, (db.codec.time(since),))
            rows = cur.fetchall()
        buckets: dict[int, dict[str, Any]] = {}
        for bucket, status, count, started, wait_sum, wait_max, run_sum, run_max in rows:
            entry = buckets.setdefault(
                int(bucket), {"finished": {}, "started": 0, "wait": 0.0, "wait_max": None, "run": 0.0, "run_max": None}
            )
            entry["finished"][status] = int(count)
            if started:
                entry["started"] += int(started)
                entry["wait"] += float(wait_sum)
                entry["run"] += float(run_sum)
                entry["wait_max"] = max(float(wait_max), entry["wait_max"] or 0.0)
                entry["run_max"] = max(float(run_max), entry["run_max"] or 0.0)
        return [
            TimelineBucket(
                start=datetime.fromtimestamp(bucket * size, UTC),
                finished=e["finished"],
                wait_avg=e["wait"] / e["started"] if e["started"] else None,
                wait_max=e["wait_max"],
                run_avg=e["run"] / e["started"] if e["started"] else None,
                run_max=e["run_max"],
            )
            for bucket, e in sorted(buckets.items())
        ]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
