"""The store's hot path: submitting, reading one job, claiming and changing jobs, finding due ones.

These run thousands of times a second, so they are plain SQL on the DB-API cursors of
database.Database, written once for both backends; the columns they read and write come from
tables.py through codec.py, never listed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from functools import cache
from typing import Any

from ..core.clock import utcnow
from ..core.job import JobRecord
from ..core.status import JobStatus
from ..notes import stored
from .base import (
    Along,
    Applied,
    ArtifactAdded,
    Change,
    Claim,
    ForeignUploads,
    LogAppend,
    NewJob,
    PendingJob,
    ProgressUpdate,
    QueuedJob,
    StepSaved,
    StepsClosed,
    StepsPlanned,
    Transition,
)
from .codec import ACTIVE, COLUMN_LIST, JOB_COLUMNS, MAX_INT, queued
from .database import Database, integrity_errors
from .job_ids import JobIds
from .pg_text import rows_of
from .steps import apply_step_change

_QUALIFIED = ", ".join(f"jobs.{name}" for name in JOB_COLUMNS)


class JobWrites:
    """JobStore's hot-path methods, on `self.db`."""

    db: Database
    _job_ids: JobIds
    _id_sequence: str | None

    def create_job(self, job: NewJob, along: Along | None = None) -> tuple[JobRecord, bool]:
        if job.idempotency_key is not None:
            existing = self._by_idempotency_key(job)
            if existing is not None:
                return existing, False
        db = self.db
        fields = queued(job, utcnow())
        names = tuple(fields)
        uploads = sorted(set(job.uploads))
        try:
            with db.write_cursor(single=not uploads and along is None) as cur:
                if uploads:
                    self._claim_uploads(cur, job.owner, uploads, fields["created_at"])
                cur.execute(db.sql(insert_sql(names)), db.codec.values(fields))
                record = JobRecord(id=cur.fetchone()[0], **fields)  # the stored row is exactly this: not read back
                if uploads:
                    cur.executemany(
                        db.sql("INSERT INTO job_uploads (job_id, upload_id) VALUES (?, ?)"),
                        [(record.id, upload_id) for upload_id in uploads],
                    )
                if along is not None:
                    along(cur, record)
        except integrity_errors():
            if job.idempotency_key is None:
                raise
            existing = self._by_idempotency_key(job)
            if existing is None:
                raise
            return existing, False
        return record, True

    def _claim_uploads(self, cur: Any, owner: str | None, upload_ids: list[str], now: datetime) -> None:
        """Record new uploads as `owner`'s; ForeignUploads if any is another owner's. The rows stay
        locked until the job is stored: deleting the last other job using one waits, then sees it."""
        db = self.db
        rows = ", ".join("(?, ?, ?)" for _ in upload_ids)
        cur.execute(
            db.sql(
                f"INSERT INTO uploads (upload_id, owner, created_at) VALUES {rows} ON CONFLICT (upload_id) "
                "DO UPDATE SET upload_id = excluded.upload_id RETURNING upload_id, owner"
            ),
            [value for upload_id in upload_ids for value in (upload_id, owner, db.codec.time(now))],
        )
        foreign = sorted(upload_id for upload_id, upload_owner in cur.fetchall() if upload_owner != owner)
        if foreign:
            raise ForeignUploads(foreign)

    def start_create_job(self, job: NewJob) -> PendingJob | None:
        """PostgreSQL: the id comes from those this process holds (job_ids.py), the insert is sent
        and not waited for; the same statement takes more ids from the sequence."""
        db = self.db
        if db.is_sqlite or job.idempotency_key is not None or job.uploads:
            return None
        sequence = self._id_sequence
        if sequence is None:
            with db.cursor() as cur:
                cur.execute("SELECT pg_get_serial_sequence('jobs', 'id')")
                sequence = self._id_sequence = str(cur.fetchone()[0])
        cur = db.text_cursor()
        job_id = self._job_ids.take()
        if job_id is None:  # none held, or held too long: ask the sequence now
            cur.execute("SELECT nextval(%s::regclass)", (sequence,))
            job_id = int(cur.fetchall()[0][0])
        fields = queued(job, utcnow())
        values = [job_id, *db.codec.values(fields), sequence, self._job_ids.wanted()]
        results = cur.start(insert_with_id_sql(tuple(fields)), values)

        def finish() -> None:
            rows, _ = rows_of(results())
            self._job_ids.add(row[0] for row in rows)

        return PendingJob(JobRecord(id=job_id, **fields), finish)

    def _by_idempotency_key(self, job: NewJob) -> JobRecord | None:
        """The job of the same owner and task with the same key (the open mode's owner is None)."""
        db = self.db
        owned, args = ("owner = ?", (job.owner,)) if job.owner is not None else ("owner IS NULL", ())
        with db.cursor() as cur:
            cur.execute(
                db.sql(f"SELECT {COLUMN_LIST} FROM jobs WHERE task = ? AND idempotency_key = ? AND {owned}"),
                (job.task, job.idempotency_key, *args),
            )
            row = cur.fetchone()
        return db.codec.job(row) if row else None

    def get_job(self, job_id: int) -> JobRecord | None:
        if not 0 < job_id <= MAX_INT:
            return None  # no such id, and PostgreSQL could not even compare it
        db = self.db
        # One round trip: the job's columns, repeated beside each of its artifacts (if any).
        with db.cursor() as cur:
            cur.execute(
                db.sql(
                    f"SELECT {_QUALIFIED}, a.name, a.size, a.content_type, a.created_at FROM jobs "
                    "LEFT JOIN artifacts a ON a.job_id = jobs.id WHERE jobs.id = ? "
                    "ORDER BY a.created_at, a.name"
                ),
                (job_id,),
            )
            rows = cur.fetchall()
        if not rows:
            return None
        n = len(JOB_COLUMNS)
        return db.codec.job(rows[0][:n], db.codec.artifacts([r[n:] for r in rows if r[n] is not None]))

    def get_job_now(self, job_id: int) -> JobRecord | None:
        with self.db.at_once():
            return self.get_job(job_id)

    def apply(self, changes: Sequence[Change], claim: Claim | None = None) -> Applied:
        if not changes and (claim is None or not claim.job_ids):
            return Applied([], [])
        # A claim alone need not wait for the disk: the attempt's final, durable write flushes it
        # too, and if PostgreSQL crashes before that, the job is found queued again and runs again.
        # One disk flush fewer for every job.
        relaxed = not changes
        after: dict[int, JobRecord] = {}
        with self.db.write_cursor(single=_one_statement(changes, claim)) as cur:
            done = []
            for index, change in enumerate(changes):
                if isinstance(change, Transition) and change.read_back:
                    record = self._transition_read_back(cur, change)
                    done.append(record is not None)
                    if record is not None:
                        after[index] = record
                else:
                    done.append(self._apply_one(cur, change))
            claimed = self._claim(cur, claim, relaxed) if claim is not None else []
        return Applied(done, claimed, after)

    def _claim(self, cur: Any, claim: Claim, relaxed: bool = False) -> list[JobRecord]:
        db = self.db
        sql = db.sql(claim_sql(relaxed and not db.is_sqlite))
        started = db.codec.time(claim.now)
        if claim.task_limit is not None:
            task, most = claim.task_limit
            if not db.is_sqlite:  # SQLite's writers are serialised already (BEGIN IMMEDIATE)
                cur.execute(db.sql("SELECT pg_advisory_xact_lock(hashtext(?))"), (f"mieruka-task:{task}",))
            cur.execute(
                db.sql(f"SELECT count(*) FROM jobs WHERE {ACTIVE} AND status = ? AND task = ?"),
                (JobStatus.RUNNING.value, task),
            )
            room = most - cur.fetchone()[0]
            if room <= 0:
                return []
            claim = replace(claim, job_ids=list(claim.job_ids)[:room])
        won = []
        for jid in claim.job_ids:
            cur.execute(
                sql,
                (
                    JobStatus.RUNNING.value,
                    started,
                    claim.worker,
                    claim.engine_id,
                    False,
                    jid,
                    JobStatus.QUEUED.value,
                    started,
                ),
            )
            row = cur.fetchone()
            if row is not None:
                won.append(db.codec.job(row))
        return won

    def _transition(self, cur: Any, change: Transition, returning: str = "") -> None:
        db = self.db
        names = ["status", *change.fields]
        values = [change.to.value, *(db.codec.field(k, v) for k, v in change.fields.items())]
        expect = [s.value for s in change.expect]
        assignments = ", ".join(f"{n} = ?" for n in names)  # codec.field checked each name
        marks = ", ".join("?" for _ in expect)
        guard, guard_values = ("", ()) if change.attempt is None else (" AND attempts = ?", (change.attempt,))
        cur.execute(
            db.sql(f"UPDATE jobs SET {assignments} WHERE id = ? AND status IN ({marks}){guard}{returning}"),
            (*values, change.job_id, *expect, *guard_values),
        )

    def _transition_read_back(self, cur: Any, change: Transition) -> JobRecord | None:
        """The transition and, in the same statement, the job's row and artifacts after it."""
        db = self.db
        self._transition(cur, change, returning_whole(db.is_sqlite))
        row = cur.fetchone()
        if row is None:
            return None
        n = len(JOB_COLUMNS)
        return db.codec.job(row[:n], db.codec.artifacts(row[n]))

    def _apply_one(self, cur: Any, change: Change) -> bool:
        db = self.db
        if isinstance(change, Transition):
            self._transition(cur, change)
            return bool(cur.rowcount == 1)
        if isinstance(change, ProgressUpdate):
            if change.progress is None and change.message is None:
                return False
            cur.execute(
                db.sql(
                    "UPDATE jobs SET progress = COALESCE(?, progress), "
                    "message = COALESCE(?, message) WHERE id = ? AND status = ?"
                ),
                (change.progress, stored(change.message), change.job_id, JobStatus.RUNNING.value),
            )
            return bool(cur.rowcount == 1)
        if isinstance(change, LogAppend):
            n = len(change.lines)
            if n == 0:
                return False
            first = change.first_seq
            cur.execute(db.sql("UPDATE jobs SET log_lines = ? WHERE id = ?"), (first + n - 1, change.job_id))
            if cur.rowcount != 1:
                return False
            if change.step is None:
                cur.executemany(
                    db.sql("INSERT INTO job_logs (job_id, seq, at, stream, text) VALUES (?, ?, ?, ?, ?)"),
                    [
                        (change.job_id, first + i, db.codec.time(at), stream, text)
                        for i, (at, stream, text) in enumerate(change.lines)
                    ],
                )
            else:
                cur.executemany(
                    db.sql("INSERT INTO job_logs (job_id, seq, at, stream, text, step) VALUES (?, ?, ?, ?, ?, ?)"),
                    [
                        (change.job_id, first + i, db.codec.time(at), stream, text, change.step)
                        for i, (at, stream, text) in enumerate(change.lines)
                    ],
                )
            return True
        if isinstance(change, StepsPlanned | StepSaved | StepsClosed):
            return apply_step_change(db, cur, change)
        if isinstance(change, ArtifactAdded):
            a = change.artifact
            cur.execute(db.sql("DELETE FROM artifacts WHERE job_id = ? AND name = ?"), (change.job_id, a.name))
            cur.execute(
                db.sql("INSERT INTO artifacts (job_id, name, size, content_type, created_at) VALUES (?, ?, ?, ?, ?)"),
                (change.job_id, a.name, a.size, a.content_type, db.codec.time(a.created_at)),
            )
            return True
        raise TypeError(f"unknown change {change!r}")

    def due_jobs(self, now: datetime, limit: int, queues: Sequence[str] | None = None) -> list[QueuedJob]:
        db = self.db
        queue_filter = ""
        args: list[Any] = [JobStatus.QUEUED.value, db.codec.time(now)]
        if queues:
            queue_filter = f" AND queue IN ({', '.join('?' for _ in queues)})"
            args.extend(queues)
        with db.cursor() as cur:
            cur.execute(
                db.sql(
                    f"SELECT id, priority, task FROM jobs WHERE {ACTIVE} AND status = ? "
                    f"AND (run_after IS NULL OR run_after <= ?){queue_filter} ORDER BY priority DESC, id LIMIT ?"
                ),
                (*args, limit),
            )
            return [QueuedJob(*row) for row in cur.fetchall()]


@cache
def insert_sql(names: tuple[str, ...]) -> str:
    """INSERT of a job's `names` columns (codec.queued), RETURNING its id."""
    return f"INSERT INTO jobs ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)}) RETURNING id"


@cache
def insert_with_id_sql(names: tuple[str, ...]) -> str:
    """PostgreSQL: INSERT of a job with its id, taking more ids from the sequence in the same statement."""
    columns = ("id", *names)
    return (
        f"WITH job AS (INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('%s' for _ in columns)})) "
        "SELECT nextval(%s::regclass) FROM generate_series(1, %s::int)"
    )


@cache
def returning_whole(sqlite: bool) -> str:
    """RETURNING the job and, as JSON, its artifacts [[name, size, content_type, created_at], ...]."""
    return f" RETURNING {COLUMN_LIST}, " + (
        "(SELECT json_group_array(json_array(name, size, content_type, created_at)) FROM (SELECT * FROM "
        "artifacts a WHERE a.job_id = jobs.id ORDER BY a.created_at, a.name))"
        if sqlite
        else "(SELECT json_agg(json_build_array(a.name, a.size, a.content_type, a.created_at) "
        "ORDER BY a.created_at, a.name) FROM artifacts a WHERE a.job_id = jobs.id)"
    )


def claim_sql(relaxed: bool) -> str:
    """The claim of one job. `relaxed` (PostgreSQL): its commit does not wait for the disk; the
    setting is the statement's own transaction's, the connection stays durable."""
    update = (
        "UPDATE jobs SET status = ?, attempts = attempts + 1, started_at = ?, finished_at = NULL, "
        "worker = ?, engine_id = ?, progress = NULL, message = NULL, cancel_requested = ? "
    )
    where = f"WHERE id = ? AND status = ? AND (run_after IS NULL OR run_after <= ?) RETURNING {COLUMN_LIST}"
    if relaxed:
        return f"WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) {update}FROM relaxed {where}"
    return update + where


def _one_statement(changes: Sequence[Change], claim: Claim | None) -> bool:
    """Whether `apply` will run exactly one statement (then it needs no transaction of its own)."""
    if claim is None:
        return len(changes) == 1 and isinstance(changes[0], Transition | ProgressUpdate)
    return not changes and len(claim.job_ids) == 1 and claim.task_limit is None
