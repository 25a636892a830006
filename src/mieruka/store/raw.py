"""The hot path of the SQL store, on the DB-API connection itself.

Submitting, claiming and finishing jobs happen thousands of times a second; SQLAlchemy's statement
machinery costs more than the database does there. These few statements are plain SQL written
once for both backends ("?" placeholders, turned into "%s" for PostgreSQL). Everything else in the
store uses SQLAlchemy Core. Values are stored exactly as SQLAlchemy would store them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine, make_url

from ..core.job import ArtifactInfo, JobRecord
from ..core.status import JobStatus
from . import tables as t
from .pg_connections import PgConnections
from .pg_text import TextCursor

COLUMNS = [c.name for c in t.jobs.c]
COLUMN_LIST = ", ".join(COLUMNS)
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


class RawDB:
    def __init__(self, url: str, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = url.startswith("sqlite")
        self._sql_cache: dict[str, str] = {}
        if self.is_sqlite:
            self._path = make_url(url).database or ":memory:"
            self._write_conn = self._sqlite_connect()
            # We wait for the write lock ourselves: SQLite's own busy handler sleeps whole milliseconds.
            self._write_conn.execute("PRAGMA busy_timeout=0")
            self._write_lock = threading.Lock()
            self._local = threading.local()
        else:
            self._pg = PgConnections(url)
            self._numbered: dict[str, bytes] = {}

    def _sqlite_connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def sql(self, text: str) -> str:
        cached = self._sql_cache.get(text)
        if cached is None:
            cached = text if self.is_sqlite else text.replace("?", "%s")
            self._sql_cache[text] = cached
        return cached

    @contextmanager
    def write(self, single: bool = False) -> Iterator[Any]:
        """A cursor inside one write transaction, committed on success. `single`: the caller runs
        one statement only, which PostgreSQL makes a transaction of itself (one round trip, not
        three)."""
        if self.is_sqlite:
            with self._write_lock:
                cur = self._write_conn.cursor()
                _begin_immediate(cur)
                try:
                    yield cur
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                cur.execute("COMMIT")
            return
        if single:
            yield self.text_cursor()
            return
        with self._pg.lend() as conn:
            try:
                with conn.transaction(), conn.cursor() as pg_cur:
                    yield pg_cur
            except BaseException:
                # On its ROLLBACK psycopg may deallocate all the connection's prepared statements
                # (once it has prepared some), the one-statement path's too: not to be lent again.
                conn.close()
                raise

    @contextmanager
    def read(self) -> Iterator[Any]:
        if self.is_sqlite:
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self._sqlite_connect()
            yield conn.cursor()
            return
        yield self.text_cursor()

    def text_cursor(self) -> TextCursor:
        """PostgreSQL: a cursor for statements that are each their own transaction (pg_text.py)."""
        return TextCursor(self._pg, self._numbered)

    def close(self) -> None:
        if self.is_sqlite:
            self._write_conn.close()
        else:
            self._pg.close()

    # -- values ----------------------------------------------------------------------------------
    def time_in(self, value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        naive = value.astimezone(UTC).replace(tzinfo=None)
        return naive.strftime(_SQLITE_TIME) if self.is_sqlite else naive

    def json_in(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False)

    def _json_out(self, value: Any) -> Any:
        # SQLite hands back the JSON text; psycopg has already decoded it.
        if self.is_sqlite and isinstance(value, str):
            return json.loads(value)
        return value

    def record(self, row: tuple[Any, ...], artifacts: list[ArtifactInfo] | None = None) -> JobRecord:
        (id_, task, status, params, owner, priority, queue, key, attempts, max_attempts, run_after,
         created_at, started_at, finished_at, progress, message, result, error, tb, worker, engine_id,
         cancel_requested, log_lines, schedule) = row
        return JobRecord(
            id=id_, task=task, status=JobStatus(status), params=self._json_out(params) or {},
            created_at=_time_out(created_at), owner=owner, priority=priority, queue=queue,
            idempotency_key=key, attempts=attempts, max_attempts=max_attempts,
            run_after=_time_out(run_after), started_at=_time_out(started_at),
            finished_at=_time_out(finished_at), progress=progress, message=message,
            result=self._json_out(result), error=error, traceback=tb, worker=worker, engine_id=engine_id,
            cancel_requested=bool(cancel_requested), log_lines=log_lines, schedule=schedule,
            artifacts=artifacts or [],
        )


def _begin_immediate(cur: sqlite3.Cursor, patience: float = 30.0) -> None:
    """BEGIN IMMEDIATE, retrying with short sleeps while another process holds the write lock."""
    delay, deadline = 20e-6, time.monotonic() + patience
    while True:
        try:
            cur.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.002)


def _time_out(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)




def time_out(value: Any) -> datetime:
    result: datetime = _time_out(value)
    return result


assert len(COLUMNS) == 24, "RawDB.record unpacks the jobs columns in table order"
