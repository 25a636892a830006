"""The database connection the account, audit and presence tables share."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Connection

from ..store.sql import make_engine


class AuthDB:
    """SQLAlchemy engines on the job store's database. Writers are serialised in this process on
    SQLite (which would make them wait anyway), as the job store does."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite") and "///" in url and not url.endswith(":memory:"):
            Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        self._writer = make_engine(url, immediate=True)
        self._reader = make_engine(url, immediate=False) if url.startswith("sqlite") else self._writer
        self._lock = threading.Lock() if url.startswith("sqlite") else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        if self._lock is None:
            with self._writer.begin() as conn:
                yield conn
            return
        with self._lock, self._writer.begin() as conn:
            yield conn

    @contextmanager
    def write_alone(self, table: str) -> Iterator[Connection]:
        """A write transaction that no other `write_alone(table)` runs alongside, in any process on
        the database: on SQLite every writer is alone already (BEGIN IMMEDIATE); on PostgreSQL the
        table is locked until the commit (other transactions still read it)."""
        with self.write() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    def migrate(self) -> None:
        from ..store.migrate import upgrade

        upgrade(self._writer)

    def close(self) -> None:
        self._writer.dispose()
        if self._reader is not self._writer:
            self._reader.dispose()
