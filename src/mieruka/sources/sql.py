"""A SQL query on any SQLAlchemy URL, with bound parameters only.

Guardrails, where the dialect allows (see guards.py): the session is read-only (SQLite
`query_only`, PostgreSQL, MariaDB and MySQL read-only transactions), the statement is stopped by
the database after the timeout (PostgreSQL `statement_timeout`, MariaDB `max_statement_time`, MySQL
`max_execution_time`, SQLite's progress handler), and at most max_rows + 1 rows are fetched,
whatever the query returns. On a dialect the guards do not know, the source's warning says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..deferred import deferred
from . import guards
from .base import Fetched, Limits
from .frames import from_rows, pandas

if TYPE_CHECKING:
    import sqlalchemy as sa
else:
    sa = deferred("sqlalchemy")

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
        self._warning: str | None = None

    def _get_engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = (
                sa.create_engine(self.url, pool_pre_ping=True, pool_size=1, max_overflow=0)
                if not self.url.startswith("sqlite")
                else sa.create_engine(self.url)
            )
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
                self._warning = _guard(conn, limits.timeout)
                result = conn.execute(sa.text(self.query), params)
                columns = list(result.keys())
                rows = result.fetchmany(limits.max_rows + 1)
                result.close()
            finally:
                with self._lock:
                    self._active = None
                _unguard(conn)
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
                    except Exception:
                        pass
                    return

    def warning(self) -> str | None:
        return self._warning

    def describe(self) -> str:
        return f"SQL on {sa.make_url(self.url).render_as_string(hide_password=True)}"

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _guard(conn: sa.Connection, timeout: float) -> str | None:
    """Make this read read-only and time-limited; the warning when the dialect is not known."""
    dialect = conn.dialect
    family = guards.SQLALCHEMY_FAMILIES.get(dialect.name, "")
    # SQLAlchemy tells MariaDB from MySQL by the server's version string, whatever the URL says.
    version = "MariaDB" if getattr(dialect, "is_mariadb", False) else ""
    guard = guards.guard(family, version, timeout, in_transaction=True)
    if guard is None:
        return guards.not_read_only(
            f"SQLAlchemy dialect {dialect.name!r}", "mieruka knows no read-only setting or statement time-out"
        )
    for statement in guard.statements:
        conn.exec_driver_sql(statement)
    if family == "sqlite":
        raw: Any = conn.connection.driver_connection
        deadline = time.monotonic() + timeout
        raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    return None


def _unguard(conn: sa.Connection) -> None:
    if conn.dialect.name == "sqlite":
        raw: Any = conn.connection.driver_connection
        raw.set_progress_handler(None, 0)
        # The pooled connection may serve other code of this process later: give back a writable one.
        conn.exec_driver_sql("PRAGMA query_only = OFF")
