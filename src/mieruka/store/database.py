"""One database's connections, for everything mieruka keeps there: jobs, pools, accounts, the audit
log, presence and stream history.

Two ways in, over the same plumbing. Statements are plain SQL written once for both backends
("?" placeholders, see `sql`) on the DB-API connection itself: `rows`, `row`, `run` and
`run_returning` for a statement of its own, `cursor()` and `write_cursor()` for several (a write
cursor's statements are one transaction). SQLAlchemy's statement machinery would cost more than
the database does. Values go through store/codec.py. SQLAlchemy itself (`read()`, `write()`, its
engines) is kept for Alembic's migrations on PostgreSQL and for tests, and made at its first use:
a server on SQLite never imports it.

On SQLite every connection has the same pragmas, and writers of this process take one lock
(SQLite would make them wait anyway, and the lock lets the hot path's writer wait without
SQLite's whole-millisecond sleeps). On PostgreSQL the hot path has its own autocommit
connections (pg_connections.py explains why).
"""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..deferred import deferred
from ..errors import ConfigError, MissingExtraError
from ..i18n import _
from .base import WouldWait
from .codec import Codec
from .pg_text import TextCursor

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine

else:
    sa = deferred("sqlalchemy")

IDLE_PING_AFTER = 5.0  # seconds a pooled PostgreSQL connection may sit unused before it is checked
BUSY_TIMEOUT = 30.0  # SQLite: seconds a writer waits for another process's lock (settings' default)


def sqlite_wal(conn: Any, busy_timeout: float) -> None:
    """Put the database in write-ahead-log mode, waiting up to `busy_timeout` seconds for other
    processes. While another connection holds the write lock of a database not yet in WAL mode
    (processes opening a new database together), SQLite answers "database is locked" at once,
    without its busy handler: this retries where the busy handler would have waited."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
            if not busy or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _sqlite_pragmas(conn: Any, busy_timeout: float) -> None:
    sqlite_wal(conn, busy_timeout)
    cur = conn.cursor()
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str, immediate: bool, busy_timeout: float = BUSY_TIMEOUT) -> Engine:
    """A SQLAlchemy engine on `url`; on SQLite, `immediate`: its transactions take the write lock
    at BEGIN, and a statement waits up to `busy_timeout` seconds for another process's lock. An
    unknown scheme, a bad URL or a missing driver is one ConfigError line."""
    if url.startswith("sqlite"):
        path = sqlite_path(url)
        if path != ":memory:":
            make_folder(Path(path).parent)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout},
            json_serializer=_json_serializer,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
            _sqlite_pragmas(dbapi_conn, busy_timeout)

        # Writers take the lock at BEGIN so two writers never deadlock upgrading a read lock.
        begin_sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin_sql)

        return engine
    try:
        engine = sa.create_engine(url, pool_size=10, max_overflow=20, json_serializer=_json_serializer)
    except ModuleNotFoundError as exc:
        if "psycopg" in str(exc):
            raise MissingExtraError("PostgreSQL", "postgres") from None
        raise ConfigError(_("cannot use database %(url)s: %(reason)s", url=repr(url), reason=exc)) from None
    except sa.exc.ArgumentError as exc:
        raise ConfigError(_("invalid database URL %(url)s: %(reason)s", url=repr(url), reason=exc)) from None

    # Like pool_pre_ping, but only for a connection that sat idle: a ping on every checkout costs a
    # round trip per statement, a third of a busy worker's time. A connection that breaks while
    # in use is discarded by SQLAlchemy on the error, and the next checkout opens a fresh one.
    @sa.event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        now = time.monotonic()
        if now - record.info.get("used_at", now) > IDLE_PING_AFTER:
            try:
                with dbapi_conn.cursor() as cur:
                    cur.execute("SELECT 1")
                dbapi_conn.rollback()
            except Exception as exc:
                raise sa.exc.DisconnectionError(str(exc)) from exc

    @sa.event.listens_for(engine, "checkin")
    def _used(_dbapi_conn: Any, record: Any) -> None:
        record.info["used_at"] = time.monotonic()

    return engine


def sqlite_path(url: str) -> str:
    """The file of an SQLite URL as SQLAlchemy reads it (sqlite:///relative, sqlite:////absolute),
    or ":memory:"; the URL's query, if any, is not part of it."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    path = rest[1:] if rest.startswith("/") else ""
    return unquote(path.split("?", 1)[0]) or ":memory:"


def in_memory(url: str) -> ConfigError:
    """An in-memory SQLite database as mieruka's own: each connection would see an empty one."""
    return ConfigError(
        _(
            "the database %(url)s is in memory, where each connection sees an empty database of its own: the "
            "server, its workers and the commands need one they share; give a file (sqlite:///mieruka.db) or a "
            "PostgreSQL URL",
            url=repr(url),
        )
    )


def make_folder(folder: Path) -> None:
    """Create the database's folder (or the data folder it lives in) if need be: a file in its
    place, or a folder this user may not create, is one line naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            _(
                "cannot create the folder %(folder)s for the database: %(reason)s",
                folder=folder,
                reason=exc.strerror or exc,
            )
        ) from None


def _json_serializer(value: Any) -> str:
    from .codec import json_text

    return json_text(value) or "null"


class Database:
    """The connections to the database at `url`: open one per process and hand it to the stores
    that use it (SqlJobStore, SqlPoolStore, the account tables, stream history). On SQLite a write
    waits up to `busy_timeout` seconds for another process's lock, then fails as an outage (503)."""

    def __init__(self, url: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.codec = Codec(self.is_sqlite)
        self.busy_timeout = busy_timeout
        self._engines: tuple[Engine, Engine] | None = None  # SQLAlchemy's writer and reader, at first use
        self._engines_lock = threading.Lock()
        self._sql_cache: dict[str, str] = {}
        # One writer at a time inside this process on SQLite, whichever way it comes in.
        self._write_lock = threading.Lock()
        if self.is_sqlite:
            self._path = sqlite_path(url)
            if self._path == ":memory:":
                raise in_memory(url)
            make_folder(Path(self._path).parent)
            self._write_conn = self._sqlite_connect()
            # We wait for the write lock ourselves: SQLite's own busy handler sleeps whole milliseconds.
            self._write_conn.execute("PRAGMA busy_timeout=0")
            self._local = threading.local()
        else:
            from .pg_connections import PgConnections, lean_url

            if not lean_url(url):  # SQLAlchemy says what is wrong with another URL, or its driver, at once
                self._engines = self._make_engines()
            elif importlib.util.find_spec("psycopg") is None:
                raise MissingExtraError("PostgreSQL", "postgres")
            self._pg = PgConnections(url)
            self._numbered: dict[str, bytes] = {}

    # -- SQLAlchemy ----------------------------------------------------------------------------
    @property
    def engine(self) -> Engine:
        """SQLAlchemy's engine for writes (and reads, on PostgreSQL), made at its first use."""
        return (self._engines or self._first_engines())[0]

    @property
    def _reader(self) -> Engine:
        return (self._engines or self._first_engines())[1]

    def _first_engines(self) -> tuple[Engine, Engine]:
        with self._engines_lock:
            if self._engines is None:
                self._engines = self._make_engines()
            return self._engines

    def _make_engines(self) -> tuple[Engine, Engine]:
        writer = make_engine(self.url, immediate=True, busy_timeout=self.busy_timeout)
        if not self.is_sqlite:
            from .tables import on_postgresql

            on_postgresql()  # before any schema is made or compared there
            return writer, writer
        return writer, make_engine(self.url, immediate=False, busy_timeout=self.busy_timeout)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A Connection inside one write transaction, committed on success."""
        if not self.is_sqlite:
            with self.engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._reader.connect() as conn:
            yield conn

    # -- the hot path: DB-API cursors ----------------------------------------------------------
    def sql(self, text: str) -> str:
        """A statement written with "?" placeholders, in this backend's form."""
        cached = self._sql_cache.get(text)
        if cached is None:
            cached = text if self.is_sqlite else text.replace("?", "%s")
            self._sql_cache[text] = cached
        return cached

    @contextmanager
    def write_cursor(self, single: bool = False) -> Iterator[Any]:
        """A cursor inside one write transaction, committed on success. `single`: the caller runs
        one statement only, which PostgreSQL makes a transaction of itself (one round trip, not
        three)."""
        if self.is_sqlite:
            with self._write_lock:
                cur = self._write_conn.cursor()
                _begin_immediate(cur, self.busy_timeout)
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
    def write_alone(self, table: str) -> Iterator[Any]:
        """A write cursor (one transaction) that no other `write_alone(table)` runs alongside, in any
        process on the database: on SQLite every writer is alone already (BEGIN IMMEDIATE); on
        PostgreSQL the table is locked until the commit (other transactions still read it)."""
        with self.write_cursor() as cur:
            if not self.is_sqlite:
                cur.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
            yield cur

    @contextmanager
    def cursor(self) -> Iterator[Any]:
        """A cursor for reads (each statement its own transaction)."""
        if self.is_sqlite:
            local = self._local
            conn = local.impatient if getattr(local, "at_once", False) else getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = self._sqlite_connect()
            yield conn.cursor()
            return
        yield self.text_cursor()

    def rows(self, statement: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read written with "?" placeholders (its own transaction), as the driver
        returns them (codec.py reads times and JSON)."""
        with self.cursor() as cur:
            cur.execute(self.sql(statement), args)
            return list(cur.fetchall())

    def row(self, statement: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one read, or None."""
        found = self.rows(statement, args)
        return found[0] if found else None

    def run(self, statement: str, args: Sequence[Any] = ()) -> int:
        """One write statement, its own transaction: the number of rows it changed."""
        with self.write_cursor(single=True) as cur:
            cur.execute(self.sql(statement), args)
            return int(cur.rowcount)

    def run_returning(self, statement: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One write statement with a RETURNING clause, its own transaction: the rows it returned."""
        with self.write_cursor(single=True) as cur:
            cur.execute(self.sql(statement), args)
            return list(cur.fetchall())

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """Reads in this block, on this thread, never wait: on SQLite they use a connection of the
        thread's that does not wait for a lock, and a read that would raises WouldWait (as does
        entering the block on PostgreSQL, a round trip away). A point read of a file in WAL mode
        waits for no writer, so this lets the event loop read a job itself: handing the read to a
        thread and back cost more than the read, and halved the hot GET's rate under load."""
        if not self.is_sqlite:
            raise WouldWait
        local = self._local
        try:
            if getattr(local, "impatient", None) is None:
                local.impatient = self._sqlite_connect(busy_timeout=0)
            local.at_once = True
            yield
        except sqlite3.OperationalError as exc:
            if (getattr(exc, "sqlite_errorname", "") or "").startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise WouldWait from None
            raise
        finally:
            local.at_once = False

    def text_cursor(self) -> TextCursor:
        """PostgreSQL: a cursor for statements that are each their own transaction (pg_text.py)."""
        return TextCursor(self._pg, self._numbered)

    def _sqlite_connect(self, busy_timeout: float | None = None) -> sqlite3.Connection:
        patience = self.busy_timeout if busy_timeout is None else busy_timeout
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None, timeout=patience)
        try:
            _sqlite_pragmas(conn, patience)
        except BaseException:
            conn.close()
            raise
        return conn

    # -- life ----------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Create or upgrade the schema to the newest version (SQLAlchemy and Alembic are loaded only
        when the schema is behind, or on SQLite new)."""
        from .migrate import head_revisions, sqlite_ready, upgrade

        if self.is_sqlite:
            conn = self._sqlite_connect()  # waits for another process's lock, as Alembic's would
            try:
                with self._write_lock:
                    if sqlite_ready(conn):
                        return
            finally:
                conn.close()
        elif {self._pg_revision()} == head_revisions():
            return
        upgrade(self.engine)

    def _pg_revision(self) -> str | None:
        """PostgreSQL: the schema's revision in one query; None when there is none to tell (no
        `alembic_version` table yet, or several rows: then Alembic decides)."""
        import psycopg

        try:
            rows = self.rows("SELECT version_num FROM alembic_version")
        except psycopg.ProgrammingError:  # no such table (a new database), or not ours to read
            return None
        return str(rows[0][0]) if len(rows) == 1 else None

    def close(self) -> None:
        if self.is_sqlite:
            self._write_conn.close()
        else:
            self._pg.close()
        if self._engines is not None:
            for engine in dict.fromkeys(self._engines):
                engine.dispose()


def _begin_immediate(cur: sqlite3.Cursor, patience: float) -> None:
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


def marks(count: int) -> str:
    """The placeholders of `count` values, for IN (...): the values go as parameters, always."""
    return ", ".join("?" * count)


def integrity_errors() -> tuple[type[Exception], ...]:
    """The drivers' errors of a violated constraint, to catch when a write fails: psycopg's and
    SQLAlchemy's are in only once they are loaded (one raised the error if it is in use), so that
    a store on SQLite imports neither."""
    errors: list[type[Exception]] = [sqlite3.IntegrityError]
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is not None:
        errors.append(sa_exc.IntegrityError)
    if "psycopg" in sys.modules:
        import psycopg

        errors.append(psycopg.errors.IntegrityError)
    return tuple(errors)
