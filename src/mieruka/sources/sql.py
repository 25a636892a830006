"""A SQL query on any SQLAlchemy URL, with bound parameters only.

Guardrails, where the dialect allows: the session is read-only (SQLite `query_only`, PostgreSQL
and MySQL read-only transactions), the statement is stopped by the database after the timeout
(PostgreSQL `statement_timeout`, MySQL `max_execution_time`, SQLite's progress handler), and at
most max_rows + 1 rows are fetched, whatever the query returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from .base import Fetched, Limits
from .frames import from_rows, pandas

Params = Mapping[str, Any] | Callable[[], Mapping[str, Any]]


class SqlSource:
    kind = "sql"

    def __init__(self, url: str, query: str, params: Params | None = None) -> None:
        self.url = url
        self.query = query
        self.params = params
        self._engine: sa.Engine | None = None
        self._active: Any = None  # the DB-API connection of the running read, to cancel it
        self._lock = threading.Lock()

    def _get_engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(self.url, pool_pre_ping=True, pool_size=1, max_overflow=0) \
                if not self.url.startswith("sqlite") else sa.create_engine(self.url)
        return self._engine

    def fetch(self, limits: Limits) -> Fetched:
        pandas()  # before connecting: a missing extra is said first
        params = dict(self.params() if callable(self.params) else (self.params or {}))
        engine = self._get_engine()
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            with self._lock:
                self._active = raw
            try:
                _guard(conn, engine.dialect.name, limits.timeout)
                result = conn.execute(sa.text(self.query), params)
                columns = list(result.keys())
                rows = result.fetchmany(limits.max_rows + 1)
                result.close()
            finally:
                with self._lock:
                    self._active = None
                _unguard(conn, engine.dialect.name)
                conn.rollback()
        return from_rows(rows, columns, limits.max_rows)

    def changed(self) -> bool:
        return True

    def cancel(self) -> None:
        # Under the lock the reader clears before it hands the connection back: a late cancel must not
        # stop the next query that borrows the same pooled connection.
        with self._lock:
            raw = self._active
            if raw is None:
                return
            for method in ("interrupt", "cancel"):  # sqlite3, psycopg
                stop = getattr(raw, method, None)
                if stop is not None:
                    try:
                        stop()
                    except Exception:  # noqa: BLE001, S110 - best effort: the read may just have ended
                        pass
                    return

    def describe(self) -> str:
        return f"SQL on {sa.make_url(self.url).render_as_string(hide_password=True)}"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _guard(conn: sa.Connection, dialect: str, timeout: float) -> None:
    if dialect == "sqlite":
        raw: Any = conn.connection.driver_connection
        conn.exec_driver_sql("PRAGMA query_only = ON")
        deadline = time.monotonic() + timeout
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    elif dialect == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
    elif dialect in ("mysql", "mariadb"):
        conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
        conn.exec_driver_sql(f"SET SESSION max_execution_time = {max(1, int(timeout * 1000))}")


def _unguard(conn: sa.Connection, dialect: str) -> None:
    if dialect == "sqlite":
        raw: Any = conn.connection.driver_connection
        raw.set_progress_handler(None, 0)
        # The pooled connection may serve other code of this process later: give back a writable one.
        conn.exec_driver_sql("PRAGMA query_only = OFF")
