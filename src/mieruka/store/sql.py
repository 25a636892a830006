"""The job store on SQLAlchemy Core: SQLite (WAL, the embedded default) and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, Row

from ..core.clock import utcnow
from ..core.job import ArtifactInfo, JobRecord
from ..core.status import FINISHED, JobStatus
from ..core.steps import STEP_FINISHED, StepRecord, StepStatus
from ..errors import ConfigError, MissingExtraError
from . import tables as t
from .base import (
    Applied,
    ArtifactAdded,
    Change,
    Claim,
    Deleted,
    EngineInfo,
    ForeignUploads,
    JobQuery,
    LogAppend,
    LogLine,
    NewJob,
    PendingJob,
    ProgressUpdate,
    QueuedJob,
    QueueStats,
    StepSaved,
    StepsClosed,
    StepsPlanned,
    TimelineBucket,
    Transition,
)
from .job_ids import JobIds
from .pg_text import rows_of
from .raw import COLUMN_LIST, COLUMNS, RawDB, time_out

_FINISHED_VALUES = [s.value for s in FINISHED]
_COLUMNS = COLUMNS
_QUALIFIED = ", ".join(f"jobs.{name}" for name in COLUMNS)
IDLE_PING_AFTER = 5.0  # seconds a pooled PostgreSQL connection may sit unused before it is checked


def make_engine(url: str, immediate: bool) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:":
            folder = Path(path).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot create the folder {folder} for the database: {exc}") from None
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        # Writers take the lock at BEGIN so two writers never deadlock upgrading a read lock.
        begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin_sql)

        return engine
    try:
        engine = sa.create_engine(url, pool_size=10, max_overflow=20)
    except ModuleNotFoundError as exc:
        if "psycopg" in str(exc):
            raise MissingExtraError("PostgreSQL", "postgres") from None
        raise ConfigError(f"cannot use database {url!r}: {exc}") from None
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from None

    # Like pool_pre_ping, but only for a connection that sat idle: a ping on every checkout costs a
    # round trip per statement, a third of a busy worker's time. A connection that breaks while
    # in use is discarded by SQLAlchemy on the error, and the next checkout opens a fresh one.
    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        now = time.monotonic()
        if now - record.info.get("used_at", now) > IDLE_PING_AFTER:
            try:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SELECT 1")
                dbapi_conn.rollback()
            except Exception as exc:
                raise sa.exc.DisconnectionError(str(exc)) from exc

    @event.listens_for(engine, "checkin")
    def _used(_dbapi_conn: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    return engine


class SqlJobStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._writer = make_engine(url, immediate=True)
        self._reader = make_engine(url, immediate=False) if self.is_sqlite else self._writer
        # One writer at a time inside this process: SQLite would make the others wait anyway.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self._raw = RawDB(url, self._writer)
        self._job_ids = JobIds()
        self._id_sequence: str | None = None  # PostgreSQL: the jobs' id sequence, looked up once
        # RETURNING the job and, as JSON, its artifacts [[name, size, content_type, created_at], ...]
        self._returning_whole = f" RETURNING {COLUMN_LIST}, " + (
            "(SELECT json_group_array(json_array(name, size, content_type, created_at)) FROM (SELECT * FROM "
            "artifacts a WHERE a.job_id = jobs.id ORDER BY a.created_at, a.name))" if self.is_sqlite else
            "(SELECT json_agg(json_build_array(a.name, a.size, a.content_type, a.created_at) "
            "ORDER BY a.created_at, a.name) FROM artifacts a WHERE a.job_id = jobs.id)")

    # -- plumbing ------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self._write_lock is None:
            with self._writer.begin() as conn:
                yield conn
            return
        with self._write_lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    def migrate(self) -> None:
        from .migrate import upgrade

        upgrade(self._writer)

    def close(self) -> None:
        self._raw.close()
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()

    # -- jobs ----------------------------------------------------------------------------------
    def create_job(self, job: NewJob) -> tuple[JobRecord, bool]:
        if job.idempotency_key is not None:
            existing = self._by_idempotency_key(job)
            if existing is not None:
                return existing, False
        raw = self._raw
        now = utcnow()
        values = (job.task, JobStatus.QUEUED.value, raw.json_in(job.params), job.owner, job.priority,
                  job.queue, job.idempotency_key, 0, job.max_attempts, raw.time_in(job.run_after),
                  raw.time_in(now), False, 0, job.schedule)
        uploads = sorted(set(job.uploads))
        try:
            with raw.write(single=not uploads) as cur:
                if uploads:
                    self._claim_uploads(cur, job.owner, uploads, now)
                cur.execute(raw.sql(
                    "INSERT INTO jobs (task, status, params, owner, priority, queue, idempotency_key, "
                    "attempts, max_attempts, run_after, created_at, cancel_requested, log_lines, schedule) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"), values)
                job_id = cur.fetchone()[0]
                if uploads:
                    cur.executemany(raw.sql("INSERT INTO job_uploads (job_id, upload_id) VALUES (?, ?)"),
                                    [(job_id, upload_id) for upload_id in uploads])
        except _INTEGRITY_ERRORS:
            if job.idempotency_key is None:
                raise
            existing = self._by_idempotency_key(job)
            if existing is None:
                raise
            return existing, False
        # The stored row is exactly this: no need to read it back.
        run_after = job.run_after.astimezone(UTC) if job.run_after is not None else None
        return JobRecord(id=job_id, task=job.task, status=JobStatus.QUEUED, params=job.params,
                         created_at=now, owner=job.owner, priority=job.priority, queue=job.queue,
                         idempotency_key=job.idempotency_key, max_attempts=job.max_attempts,
                         run_after=run_after, schedule=job.schedule), True

    def _claim_uploads(self, cur: Any, owner: str | None, upload_ids: list[str], now: datetime) -> None:
        """Record new uploads as `owner`'s; ForeignUploads if any is another owner's. The rows stay
        locked until the job is stored: deleting the last other job using one waits, then sees it."""
        raw = self._raw
        rows = ", ".join("(?, ?, ?)" for _ in upload_ids)
        cur.execute(raw.sql(
            f"INSERT INTO uploads (upload_id, owner, created_at) VALUES {rows} ON CONFLICT (upload_id) "
            "DO UPDATE SET upload_id = excluded.upload_id RETURNING upload_id, owner"),
            [value for upload_id in upload_ids for value in (upload_id, owner, raw.time_in(now))])
        foreign = sorted(upload_id for upload_id, upload_owner in cur.fetchall() if upload_owner != owner)
        if foreign:
            raise ForeignUploads(foreign)

    def start_create_job(self, job: NewJob) -> PendingJob | None:
        """PostgreSQL: the id comes from those this process holds (job_ids.py), the insert is sent
        and not waited for; the same statement takes more ids from the sequence."""
        if self.is_sqlite or job.idempotency_key is not None or job.uploads:
            return None
        raw = self._raw
        sequence = self._id_sequence
        if sequence is None:
            with raw.read() as cur:
                cur.execute("SELECT pg_get_serial_sequence('jobs', 'id')")
                sequence = self._id_sequence = str(cur.fetchone()[0])
        cur = raw.text_cursor()
        job_id = self._job_ids.take()
        if job_id is None:  # none held, or held too long: ask the sequence now
            cur.execute("SELECT nextval(%s::regclass)", (sequence,))
            job_id = int(cur.fetchall()[0][0])
        now = utcnow()
        values = (job_id, job.task, JobStatus.QUEUED.value, raw.json_in(job.params), job.owner, job.priority,
                  job.queue, 0, job.max_attempts, raw.time_in(job.run_after), raw.time_in(now), False, 0,
                  job.schedule, sequence, self._job_ids.wanted())
        results = cur.start(_INSERT_WITH_ID, values)
        run_after = job.run_after.astimezone(UTC) if job.run_after is not None else None
        record = JobRecord(id=job_id, task=job.task, status=JobStatus.QUEUED, params=job.params, created_at=now,
                           owner=job.owner, priority=job.priority, queue=job.queue,
                           max_attempts=job.max_attempts, run_after=run_after, schedule=job.schedule)

        def finish() -> None:
            rows, _ = rows_of(results())
            self._job_ids.add(row[0] for row in rows)

        return PendingJob(record, finish)

    def _by_idempotency_key(self, job: NewJob) -> JobRecord | None:
        """The job of the same owner and task with the same key (the open mode's owner is None)."""
        raw = self._raw
        owned, args = ("owner = ?", (job.owner,)) if job.owner is not None else ("owner IS NULL", ())
        with raw.read() as cur:
            cur.execute(raw.sql(f"SELECT {COLUMN_LIST} FROM jobs WHERE task = ? AND idempotency_key = ? AND {owned}"),
                        (job.task, job.idempotency_key, *args))
            row = cur.fetchone()
        return raw.record(row) if row else None

    def get_job(self, job_id: int) -> JobRecord | None:
        if not 0 < job_id <= t.MAX_INT:
            return None  # no such id, and PostgreSQL could not even compare it
        raw = self._raw
        # One round trip: the job's columns, repeated beside each of its artifacts (if any).
        with raw.read() as cur:
            cur.execute(raw.sql(f"SELECT {_QUALIFIED}, a.name, a.size, a.content_type, a.created_at FROM jobs "
                                "LEFT JOIN artifacts a ON a.job_id = jobs.id WHERE jobs.id = ? "
                                "ORDER BY a.created_at, a.name"), (job_id,))
            rows = cur.fetchall()
        if not rows:
            return None
        n = len(_COLUMNS)
        arts = [ArtifactInfo(name=r[n], size=r[n + 1], content_type=r[n + 2], created_at=time_out(r[n + 3]))
                for r in rows if r[n] is not None]
        return raw.record(tuple(rows[0][:n]), arts)

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        c = t.jobs.c
        stmt = sa.select(t.jobs).order_by(c.id.desc()).limit(query.limit)
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
            stmt = stmt.where(c.id < query.before_id if query.before_id <= t.MAX_INT else c.id <= t.MAX_INT)
        if query.search:
            # Parameters are stored as JSON text: look for the text as JSON writes it.
            needle = json.dumps(query.search, ensure_ascii=False)[1:-1]
            stmt = stmt.where(sa.cast(c.params, sa.Text).ilike(f"%{_escape_like(needle)}%", escape="\\"))
        with self._read() as conn:
            return [_record(r) for r in conn.execute(stmt)]

    def apply(self, changes: Sequence[Change], claim: Claim | None = None) -> Applied:
        if not changes and (claim is None or not claim.job_ids):
            return Applied([], [])
        # A claim alone need not wait for the disk: the attempt's final, durable write flushes it
        # too, and if PostgreSQL crashes before that, the job is found queued again and runs again.
        # One disk flush fewer for every job.
        relaxed = not changes
        after: dict[int, JobRecord] = {}
        with self._raw.write(single=_one_statement(changes, claim)) as cur:
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
        raw = self._raw
        sql = raw.sql(claim_sql(relaxed and not self.is_sqlite))
        started = raw.time_in(claim.now)
        if claim.task_limit is not None:
            task, most = claim.task_limit
            if not self.is_sqlite:  # SQLite's writers are serialised already (BEGIN IMMEDIATE)
                cur.execute(raw.sql("SELECT pg_advisory_xact_lock(hashtext(?))"), (f"mieruka-task:{task}",))
            cur.execute(raw.sql("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND status = ? "
                                "AND task = ?"), (JobStatus.RUNNING.value, task))
            room = most - cur.fetchone()[0]
            if room <= 0:
                return []
            claim = replace(claim, job_ids=list(claim.job_ids)[:room])
        won = []
        for jid in claim.job_ids:
            cur.execute(sql, (JobStatus.RUNNING.value, started, claim.worker, claim.engine_id, False, jid,
                              JobStatus.QUEUED.value, started))
            row = cur.fetchone()
            if row is not None:
                won.append(raw.record(row))
        return won

    def _transition(self, cur: Any, change: Transition, returning: str = "") -> None:
        raw = self._raw
        names = ["status", *change.fields]
        values = [change.to.value, *(_field_in(raw, k, v) for k, v in change.fields.items())]
        expect = [s.value for s in change.expect]
        assignments = ", ".join(f"{_column(n)} = ?" for n in names)
        marks = ", ".join("?" for _ in expect)
        guard, guard_values = ("", ()) if change.attempt is None else (" AND attempts = ?", (change.attempt,))
        cur.execute(raw.sql(f"UPDATE jobs SET {assignments} WHERE id = ? AND status IN ({marks}){guard}{returning}"),
                    (*values, change.job_id, *expect, *guard_values))

    def _transition_read_back(self, cur: Any, change: Transition) -> JobRecord | None:
        """The transition and, in the same statement, the job's row and artifacts after it."""
        self._transition(cur, change, self._returning_whole)
        row = cur.fetchone()
        if row is None:
            return None
        n = len(_COLUMNS)
        found = row[n]
        if isinstance(found, str):  # SQLite hands back the JSON text
            found = json.loads(found)
        arts = [ArtifactInfo(name=a[0], size=a[1], content_type=a[2], created_at=time_out(a[3])) for a in found or ()]
        return self._raw.record(tuple(row[:n]), arts)

    def _apply_one(self, cur: Any, change: Change) -> bool:
        raw = self._raw
        if isinstance(change, Transition):
            self._transition(cur, change)
            return bool(cur.rowcount == 1)
        if isinstance(change, ProgressUpdate):
            if change.progress is None and change.message is None:
                return False
            cur.execute(raw.sql("UPDATE jobs SET progress = COALESCE(?, progress), "
                                "message = COALESCE(?, message) WHERE id = ? AND status = ?"),
                        (change.progress, change.message, change.job_id, JobStatus.RUNNING.value))
            return bool(cur.rowcount == 1)
        if isinstance(change, LogAppend):
            n = len(change.lines)
            if n == 0:
                return False
            first = change.first_seq
            cur.execute(raw.sql("UPDATE jobs SET log_lines = ? WHERE id = ?"), (first + n - 1, change.job_id))
            if cur.rowcount != 1:
                return False
            if change.step is None:
                cur.executemany(
                    raw.sql("INSERT INTO job_logs (job_id, seq, at, stream, text) VALUES (?, ?, ?, ?, ?)"),
                    [(change.job_id, first + i, raw.time_in(at), stream, text)
                     for i, (at, stream, text) in enumerate(change.lines)])
            else:
                cur.executemany(
                    raw.sql("INSERT INTO job_logs (job_id, seq, at, stream, text, step) VALUES (?, ?, ?, ?, ?, ?)"),
                    [(change.job_id, first + i, raw.time_in(at), stream, text, change.step)
                     for i, (at, stream, text) in enumerate(change.lines)])
            return True
        if isinstance(change, StepsPlanned):
            cur.execute(raw.sql("DELETE FROM job_steps WHERE job_id = ?"), (change.job_id,))
            for step in change.steps:
                self._insert_step(cur, step)
            return True
        if isinstance(change, StepSaved):
            step = change.step
            cur.execute(raw.sql("DELETE FROM job_steps WHERE job_id = ? AND name = ?"), (step.job_id, step.name))
            self._insert_step(cur, step)
            return True
        if isinstance(change, StepsClosed):
            open_states = [s.value for s in StepStatus if s not in STEP_FINISHED]
            finished = raw.time_in(utcnow()) if change.to in STEP_FINISHED else None
            cur.execute(raw.sql(
                "UPDATE job_steps SET status = ?, finished_at = CASE WHEN status = ? THEN ? ELSE finished_at END "
                "WHERE job_id = ? AND status IN (?, ?)"),
                (change.to.value, StepStatus.RUNNING.value, finished, change.job_id, *open_states))
            return bool(cur.rowcount)
        if isinstance(change, ArtifactAdded):
            a = change.artifact
            cur.execute(raw.sql("DELETE FROM artifacts WHERE job_id = ? AND name = ?"), (change.job_id, a.name))
            cur.execute(raw.sql("INSERT INTO artifacts (job_id, name, size, content_type, created_at) "
                                "VALUES (?, ?, ?, ?, ?)"),
                        (change.job_id, a.name, a.size, a.content_type, raw.time_in(a.created_at)))
            return True
        raise TypeError(f"unknown change {change!r}")

    def _insert_step(self, cur: Any, step: StepRecord) -> None:
        raw = self._raw
        cur.execute(raw.sql(
            "INSERT INTO job_steps (job_id, name, position, kind, status, depends_on, description, allow_failure, "
            "parent, started_at, finished_at, progress, message, output, error, artifacts, reused) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"),
            (step.job_id, step.name, step.position, step.kind, step.status.value, raw.json_in(step.depends_on),
             step.description, step.allow_failure, step.parent, raw.time_in(step.started_at),
             raw.time_in(step.finished_at), step.progress, step.message,
             None if step.output is None else raw.json_in(step.output), step.error,
             raw.json_in(step.artifacts), step.reused))

    def read_logs(self, job_id: int, after: int = 0, limit: int = 1000, step: str | None = None) -> list[LogLine]:
        if not 0 < job_id <= t.MAX_INT or after >= t.MAX_INT:
            return []
        l = t.job_logs.c  # noqa: E741
        stmt = (sa.select(l.seq, l.at, l.stream, l.text, l.step)
                .where(l.job_id == job_id, l.seq > after).order_by(l.seq).limit(limit))
        if step is not None:
            stmt = stmt.where(l.step == step)
        with self._read() as conn:
            return [LogLine(seq=r.seq, at=r.at, stream=r.stream, text=r.text, step=r.step)
                    for r in conn.execute(stmt)]

    def list_steps(self, job_id: int) -> list[StepRecord]:
        s = t.job_steps.c
        stmt = sa.select(t.job_steps).where(s.job_id == job_id).order_by(s.position, s.name)
        with self._read() as conn:
            return [_step(row) for row in conn.execute(stmt)]

    def due_jobs(self, now: datetime, limit: int, queues: Sequence[str] | None = None) -> list[QueuedJob]:
        raw = self._raw
        queue_filter = ""
        args: list[Any] = [JobStatus.QUEUED.value, raw.time_in(now)]
        if queues:
            queue_filter = f" AND queue IN ({', '.join('?' for _ in queues)})"
            args.extend(queues)
        with raw.read() as cur:
            cur.execute(raw.sql(
                "SELECT id, priority, task FROM jobs WHERE status IN ('queued', 'running') AND status = ? "
                f"AND (run_after IS NULL OR run_after <= ?){queue_filter} ORDER BY priority DESC, id LIMIT ?"),
                (*args, limit))
            return [QueuedJob(*row) for row in cur.fetchall()]

    def next_due_time(self) -> datetime | None:
        c = t.jobs.c
        stmt = sa.select(sa.func.min(c.run_after)).where(c.status == JobStatus.QUEUED.value,
                                                         c.run_after.is_not(None))
        with self._read() as conn:
            value = conn.execute(stmt).scalar()
        return t.UTCDateTime().process_result_value(value, self._reader.dialect)

    # -- engines -------------------------------------------------------------------------------
    def heartbeat(self, engine_id: str, host: str, pid: int, now: datetime,
                  info: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"heartbeat_at": now}
        if info is not None:
            values["info"] = info
        with self._write() as conn:
            res = conn.execute(sa.update(t.engines).where(t.engines.c.id == engine_id).values(**values))
            if res.rowcount == 0:
                conn.execute(sa.insert(t.engines).values(id=engine_id, host=host, pid=pid, **values))

    def engines(self) -> list[EngineInfo]:
        e, c = t.engines.c, t.jobs.c
        with self._read() as conn:
            rows = conn.execute(sa.select(e.id, e.host, e.pid, e.heartbeat_at, e.info)
                                .order_by(e.heartbeat_at.desc())).all()
            running: dict[str, list[int]] = {}
            for job_id, engine_id in conn.execute(
                    sa.select(c.id, c.engine_id).where(c.status == JobStatus.RUNNING.value).order_by(c.id)):
                running.setdefault(engine_id, []).append(job_id)
        return [EngineInfo(id=r.id, host=r.host, pid=r.pid, heartbeat_at=r.heartbeat_at, info=r.info or {},
                           running=running.get(r.id, [])) for r in rows]

    def remove_engine(self, engine_id: str) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(t.engines).where(t.engines.c.id == engine_id))

    def orphaned_jobs(
        self, now: datetime, stale_after: float, is_dead: Callable[[str, int], bool]
    ) -> list[JobRecord]:
        c, e = t.jobs.c, t.engines.c
        stmt = (
            sa.select(t.jobs, e.host.label("engine_host"), e.pid.label("engine_pid"),
                      e.heartbeat_at.label("engine_beat"))
            .select_from(t.jobs.outerjoin(t.engines, c.engine_id == e.id))
            .where(c.status == JobStatus.RUNNING.value, c.engine_id.is_not(None))
        )
        limit = now - timedelta(seconds=stale_after)
        found = []
        with self._read() as conn:
            for row in conn.execute(stmt):
                beat = row.engine_beat
                if beat is not None and beat.tzinfo is None:
                    beat = t.UTCDateTime().process_result_value(beat, self._reader.dialect)
                if (row.engine_host is None or beat is None or beat < limit
                        or is_dead(row.engine_host, row.engine_pid)):
                    found.append(_record(row))
        return found

    # -- schedules -----------------------------------------------------------------------------
    def schedule_due(self, name: str, first_due: datetime) -> datetime:
        s = t.schedules.c
        with self._read() as conn:
            due = conn.execute(sa.select(s.next_run_at).where(s.name == name)).scalar()
        if due is not None:
            return t.UTCDateTime().process_result_value(due, self._reader.dialect) or first_due
        try:
            with self._write() as conn:
                conn.execute(sa.insert(t.schedules).values(name=name, next_run_at=first_due))
        except sa.exc.IntegrityError:
            return self.schedule_due(name, first_due)
        return first_due

    def fire_schedule(self, name: str, due: datetime, next_due: datetime, job: NewJob | None) -> JobRecord | None:
        s = t.schedules.c
        with self._write() as conn:
            res = conn.execute(
                sa.update(t.schedules).where(s.name == name, s.next_run_at == due)
                .values(next_run_at=next_due, last_run_at=due)
            )
            if res.rowcount != 1 or job is None:
                return None
            row = conn.execute(
                sa.insert(t.jobs).values(
                    task=job.task, status=JobStatus.QUEUED.value, params=job.params, owner=job.owner,
                    priority=job.priority, queue=job.queue, max_attempts=job.max_attempts,
                    created_at=utcnow(), schedule=name,
                ).returning(*t.jobs.c)
            ).one()
            conn.execute(sa.update(t.schedules).where(s.name == name).values(last_job_id=row.id))
        return _record(row)

    # -- retention -----------------------------------------------------------------------------
    def prune(self, task: str, older_than: datetime | None, keep: int | None) -> Deleted:
        c = t.jobs.c
        finished = sa.and_(c.task == task, c.status.in_(_FINISHED_VALUES))
        ids: set[int] = set()
        with self._read() as conn:
            if older_than is not None:
                ids.update(conn.execute(
                    sa.select(c.id).where(finished, c.finished_at < older_than).limit(5000)).scalars())
            if keep is not None:
                ids.update(conn.execute(
                    sa.select(c.id).where(finished).order_by(c.id.desc()).offset(keep).limit(5000)).scalars())
        deleted = Deleted()
        for chunk in _chunks(sorted(ids), 500):
            with self._write() as conn:
                done = _delete_finished(conn, chunk)
            deleted.job_ids.extend(done.job_ids)
            deleted.uploads.extend(done.uploads)
        return deleted

    def delete_job(self, job_id: int) -> Deleted:
        with self._write() as conn:
            return _delete_finished(conn, [job_id])

    def count_by_status(self) -> dict[str, int]:
        c = t.jobs.c
        with self._read() as conn:
            rows = conn.execute(sa.select(c.status, sa.func.count()).group_by(c.status)).all()
        counts = {s.value: 0 for s in JobStatus}
        counts.update({status: n for status, n in rows})
        return counts

    def queue_stats(self) -> list[QueueStats]:
        c = t.jobs.c
        queued = JobStatus.QUEUED.value
        stmt = (
            sa.select(c.queue,
                      sa.func.sum(sa.case((c.status == queued, 1), else_=0)),
                      sa.func.sum(sa.case((c.status == JobStatus.RUNNING.value, 1), else_=0)),
                      sa.func.min(sa.case((c.status == queued, c.created_at), else_=None)))
            .where(c.status.in_([queued, JobStatus.RUNNING.value]))
            .group_by(c.queue).order_by(c.queue)
        )
        with self._read() as conn:
            rows = conn.execute(stmt).all()
        convert = t.UTCDateTime().process_result_value
        return [QueueStats(queue=row[0], queued=int(row[1] or 0), running=int(row[2] or 0),
                           oldest_queued_at=convert(row[3], self._reader.dialect)) for row in rows]


    def timeline(self, since: datetime, bucket_seconds: int = 60) -> list[TimelineBucket]:
        raw = self._raw
        size = max(int(bucket_seconds), 1)
        if self.is_sqlite:
            epoch = "CAST(strftime('%s', finished_at) AS INTEGER)"

            def seconds(a: str, b: str) -> str:
                return f"(julianday({a}) - julianday({b})) * 86400.0"
        else:
            epoch = "CAST(floor(extract(epoch from finished_at)) AS BIGINT)"

            def seconds(a: str, b: str) -> str:
                return f"extract(epoch from ({a} - {b}))"
        wait, run = seconds("started_at", "created_at"), seconds("finished_at", "started_at")
        sql = raw.sql(
            f"SELECT {epoch} / {size} AS bucket, status, count(*), count(started_at), sum({wait}), max({wait}), "
            f"sum({run}), max({run}) FROM jobs WHERE finished_at >= ? GROUP BY 1, 2 ORDER BY 1")
        with raw.read() as cur:
            cur.execute(sql, (raw.time_in(since),))
            rows = cur.fetchall()
        buckets: dict[int, dict[str, Any]] = {}
        for bucket, status, count, started, wait_sum, wait_max, run_sum, run_max in rows:
            entry = buckets.setdefault(int(bucket), {"finished": {}, "started": 0, "wait": 0.0, "wait_max": None,
                                                     "run": 0.0, "run_max": None})
            entry["finished"][status] = int(count)
            if started:
                entry["started"] += int(started)
                entry["wait"] += float(wait_sum)
                entry["run"] += float(run_sum)
                entry["wait_max"] = max(float(wait_max), entry["wait_max"] or 0.0)
                entry["run_max"] = max(float(run_max), entry["run_max"] or 0.0)
        return [TimelineBucket(start=datetime.fromtimestamp(bucket * size, UTC), finished=e["finished"],
                               wait_avg=e["wait"] / e["started"] if e["started"] else None, wait_max=e["wait_max"],
                               run_avg=e["run"] / e["started"] if e["started"] else None, run_max=e["run_max"])
                for bucket, e in sorted(buckets.items())]


def _delete_finished(conn: Connection, job_ids: list[int]) -> Deleted:
    """Delete those of the jobs that are finished, with their logs, steps, artifact and upload
    records; return them and the uploads no job uses any more."""
    c, ju, u = t.jobs.c, t.job_uploads.c, t.uploads.c
    used = conn.execute(sa.select(ju.job_id, ju.upload_id).where(ju.job_id.in_(job_ids))).all()
    if used:
        # Deleting two jobs that share an upload at once: the second waits here, then sees the
        # first gone, so one of them finds the upload unused (PostgreSQL; SQLite writes one at a time).
        conn.execute(sa.select(u.upload_id).where(u.upload_id.in_({upload_id for _, upload_id in used}))
                     .order_by(u.upload_id).with_for_update()).all()
    # Re-checked inside the transaction: a job retried meanwhile is no longer finished.
    gone = list(conn.execute(sa.delete(t.jobs).where(c.id.in_(job_ids), c.status.in_(_FINISHED_VALUES))
                             .returning(c.id)).scalars())
    if not gone:
        return Deleted()
    for table in (t.job_logs, t.job_steps, t.artifacts, t.job_uploads):
        conn.execute(sa.delete(table).where(table.c.job_id.in_(gone)))
    freed = {upload_id for job_id, upload_id in used if job_id in gone}
    unused = conn.execute(sa.select(u.upload_id).where(
        u.upload_id.in_(freed), ~sa.exists().where(ju.upload_id == u.upload_id)).order_by(u.upload_id)).scalars()
    # The upload's row stays: the upload is still its owner's, never another's to claim.
    return Deleted(sorted(gone), list(unused) if freed else [])


def _record(row: Row[Any], artifacts: list[ArtifactInfo] | None = None) -> JobRecord:
    m = row._mapping
    return JobRecord(
        id=m["id"], task=m["task"], status=JobStatus(m["status"]), params=m["params"] or {},
        created_at=m["created_at"], owner=m["owner"], priority=m["priority"], queue=m["queue"],
        idempotency_key=m["idempotency_key"], attempts=m["attempts"], max_attempts=m["max_attempts"],
        run_after=m["run_after"], started_at=m["started_at"], finished_at=m["finished_at"],
        progress=m["progress"], message=m["message"], result=m["result"], error=m["error"],
        traceback=m["traceback"], worker=m["worker"], engine_id=m["engine_id"],
        cancel_requested=bool(m["cancel_requested"]), log_lines=m["log_lines"], schedule=m["schedule"],
        artifacts=artifacts or [],
    )


def _step(row: Row[Any]) -> StepRecord:
    m = row._mapping
    return StepRecord(
        job_id=m["job_id"], name=m["name"], position=m["position"], kind=m["kind"],
        status=StepStatus(m["status"]), depends_on=list(m["depends_on"] or []), description=m["description"],
        allow_failure=bool(m["allow_failure"]), parent=m["parent"], started_at=m["started_at"],
        finished_at=m["finished_at"], progress=m["progress"], message=m["message"], output=m["output"],
        error=m["error"], artifacts=list(m["artifacts"] or []), reused=bool(m["reused"]),
    )


def _artifact(row: Row[Any]) -> ArtifactInfo:
    return ArtifactInfo(name=row.name, size=row.size, content_type=row.content_type, created_at=row.created_at)


_JSON_FIELDS = {"params", "result"}
_TIME_FIELDS = {"run_after", "created_at", "started_at", "finished_at"}
_KNOWN = {c.name for c in t.jobs.c}


def _column(name: str) -> str:
    if name not in _KNOWN:
        raise ValueError(f"no job field {name!r}")
    return name


def _field_in(raw: RawDB, name: str, value: Any) -> Any:
    if name in _JSON_FIELDS:
        return raw.json_in(value)
    if name in _TIME_FIELDS:
        return raw.time_in(value)
    return value


def _integrity_errors() -> tuple[type[Exception], ...]:
    errors: list[type[Exception]] = [sa.exc.IntegrityError, sqlite3.IntegrityError]
    try:
        import psycopg

        errors.append(psycopg.errors.IntegrityError)
    except ImportError:
        pass
    return tuple(errors)


_INTEGRITY_ERRORS = _integrity_errors()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_INSERT_WITH_ID = (
    "WITH job AS (INSERT INTO jobs (id, task, status, params, owner, priority, queue, attempts, max_attempts, "
    "run_after, created_at, cancel_requested, log_lines, schedule) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)) "
    "SELECT nextval(%s::regclass) FROM generate_series(1, %s::int)")


def claim_sql(relaxed: bool) -> str:
    """The claim of one job. `relaxed` (PostgreSQL): its commit does not wait for the disk; the
    setting is the statement's own transaction's, the connection stays durable."""
    update = ("UPDATE jobs SET status = ?, attempts = attempts + 1, started_at = ?, finished_at = NULL, "
              "worker = ?, engine_id = ?, progress = NULL, message = NULL, cancel_requested = ? ")
    where = f"WHERE id = ? AND status = ? AND (run_after IS NULL OR run_after <= ?) RETURNING {COLUMN_LIST}"
    if relaxed:
        return ("WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) "
                f"{update}FROM relaxed {where}")
    return update + where


def _one_statement(changes: Sequence[Change], claim: Claim | None) -> bool:
    """Whether `apply` will run exactly one statement (then it needs no transaction of its own)."""
    if claim is None:
        return len(changes) == 1 and isinstance(changes[0], Transition | ProgressUpdate)
    return not changes and len(claim.job_ids) == 1 and claim.task_limit is None
