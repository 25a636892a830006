"""The store's listings and figures: jobs by query, log lines, counts, queues, the timeline.

Plain SQL on the store's DB-API cursors, written once for both backends (the timeline's date
arithmetic excepted); jobs come back through the one mapper (codec.Codec.job).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..core.job import JobRecord
from ..core.status import JobStatus
from .base import JobQuery, LogLine, QueueStats, TimelineBucket
from .codec import ACTIVE, COLUMN_LIST, MAX_INT, time_of, time_out
from .database import Database, marks


class JobQueries:
    db: Database

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        db = self.db
        where: list[str] = []
        args: list[Any] = []
        if query.task:
            where.append("task = ?")
            args.append(query.task)
        if query.status:
            where.append(f"status IN ({marks(len(query.status))})")
            args.extend(s.value for s in query.status)
        if query.hidden_tasks:
            where.append(f"task NOT IN ({marks(len(query.hidden_tasks))})")
            args.extend(sorted(query.hidden_tasks))
        if query.owner:
            where.append("owner = ?")
            args.append(query.owner)
        if query.created_after:
            where.append("created_at >= ?")
            args.append(db.codec.time(query.created_after))
        if query.created_before:
            where.append("created_at < ?")
            args.append(db.codec.time(query.created_before))
        if query.before_id is not None:
            where.append("id < ?" if query.before_id <= MAX_INT else "id <= ?")
            args.append(min(query.before_id, MAX_INT))
        if query.search:
            # Parameters are stored as JSON text (codec.json_text): look for the text as it writes it.
            # lower() on both sides is SQLAlchemy's ilike on SQLite, and what ILIKE does on PostgreSQL.
            needle = json.dumps(query.search, ensure_ascii=False)[1:-1]
            where.append("lower(CAST(params AS TEXT)) LIKE lower(?) ESCAPE '\\'")
            args.append(f"%{_escape_like(needle)}%")
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        rows = db.rows(f"SELECT {COLUMN_LIST} FROM jobs{condition} ORDER BY id DESC LIMIT ?", (*args, query.limit))
        return [db.codec.job(row) for row in rows]

    def read_logs(self, job_id: int, after: int = 0, limit: int = 1000, step: str | None = None) -> list[LogLine]:
        if not 0 < job_id <= MAX_INT or after >= MAX_INT:
            return []
        of_step, args = (" AND step = ?", (step,)) if step is not None else ("", ())
        rows = self.db.rows(
            f"SELECT seq, at, stream, text, step FROM job_logs WHERE job_id = ? AND seq > ?{of_step} "
            "ORDER BY seq LIMIT ?",
            (job_id, after, *args, limit),
        )
        return [
            LogLine(seq=seq, at=time_of(at), stream=stream, text=text, step=name)
            for seq, at, stream, text, name in rows
        ]

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
        queued, running = JobStatus.QUEUED.value, JobStatus.RUNNING.value
        # The active jobs only: ix_jobs_active's predicate, word for word.
        rows = self.db.rows(
            "SELECT queue, sum(CASE WHEN status = ? THEN 1 ELSE 0 END), sum(CASE WHEN status = ? THEN 1 ELSE 0 END), "
            f"min(CASE WHEN status = ? THEN created_at END) FROM jobs WHERE {ACTIVE} GROUP BY queue ORDER BY queue",
            (queued, running, queued),
        )
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
