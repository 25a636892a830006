"""The PostgreSQL connections of the store's hot path: psycopg connections in autocommit mode, lent
to one thread at a time.

Why not SQLAlchemy's pool here: through it every statement runs in a transaction that psycopg opens
with its own BEGIN round trip and that we close with a COMMIT round trip, so a one-statement read or
write costs three round trips instead of one, and the pool's checkout and checkin cost about as
much again in Python. In autocommit mode a single statement is its own transaction (atomic and,
with the default `synchronous_commit`, durable); several statements are wrapped in an explicit
transaction by the caller.

Every connection is durable (`synchronous_commit` on). A statement whose commit need not wait for
the disk says so itself (`set_config('synchronous_commit', 'off', true)`, for its own transaction
only), so that one connection serves both kinds: a Celery worker's claim and its final write then
meet the same server process, still warm, instead of two that each had to wake up.

psycopg_pool would serve as well, at the price of its maintenance threads in every process (Celery
pool processes included); what this needs is a list, a lock and a cap, so it is kept here.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import StorageUnavailable

if TYPE_CHECKING:
    import psycopg
    from psycopg.pq.abc import PGconn, PGresult

log = logging.getLogger(__name__)
IDLE_PING_AFTER = 5.0  # seconds a connection may sit unused before it is checked on lending
KEEP_IDLE = 8  # connections kept open per kind when nobody uses them
MAX_OPEN = 20  # connections of one process at a time: a burst of requests waits, the server's limit holds
WAIT_FOR_ONE = 30.0  # seconds a thread waits for a connection before giving up
_IDLE: object = None  # psycopg's idle transaction status, set once psycopg is imported
_OK: object = None  # psycopg's good connection status, likewise
_inherited: list[object] = []  # connections of a parent process, never touched nor freed after a fork


LEAN_SCHEME = "postgresql+psycopg://"  # SQLAlchemy's name of psycopg 3: read here without it


def lean_url(url: str) -> bool:
    """Whether `url` is psycopg's in SQLAlchemy's form, which libpq reads once its scheme is its own."""
    return url.startswith(LEAN_SCHEME)


def conninfo(sqlalchemy_url: str) -> str:
    """postgresql+psycopg://u@h/db (SQLAlchemy's form) as libpq's URI: postgresql://u@h/db. Both
    percent-decode the user, password and database, and pass the query's options on to libpq."""
    if lean_url(sqlalchemy_url):
        return "postgresql://" + sqlalchemy_url[len(LEAN_SCHEME) :]
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class PgConnections:
    """Autocommit psycopg connections, at most one thread on each at a time; opened on demand."""

    def __init__(self, sqlalchemy_url: str) -> None:
        self._conninfo = conninfo(sqlalchemy_url)
        self._lock = threading.Lock()
        self._idle: list[tuple[psycopg.Connection[tuple[object, ...]], float]] = []
        self._pid = os.getpid()
        self._slots = threading.BoundedSemaphore(MAX_OPEN)
        self._closed = False
        self._names: dict[bytes, bytes] = {}  # statement -> its prepared name
        self._prepared: weakref.WeakKeyDictionary[psycopg.Connection[tuple[object, ...]], set[bytes]] = (
            weakref.WeakKeyDictionary()
        )

    @contextmanager
    def lend(self) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        """A connection for the caller's thread until the block ends. One that broke (server
        restarted, network gone) is closed instead of being kept."""
        slots = self._slot()
        try:
            conn = self._take()
            try:
                yield conn
            finally:
                self._give_back(conn)
        finally:
            slots.release()

    def start(self, query: bytes, params: Sequence[bytes | None]) -> Callable[[], list[PGresult]]:
        """Send one statement (its own transaction; parameters in text form) now, and return the
        way to wait for its results later: whatever the caller does meanwhile overlaps the round
        trip. The connection stays lent until then. A failed statement raises psycopg's error for
        it, as `execute` would. (store/pg_text.py reads the results.) Each connection prepares a
        statement the first time it runs it, as psycopg's cursors do after a few times."""
        slots = self._slot()
        conn = None
        try:
            conn = self._take()
            pgconn = conn.pgconn
            name = self._statement_name(query)
            prepared = self._prepared.setdefault(conn, set())
            if name not in prepared:  # once per connection: then the server neither parses nor plans it again
                pgconn.send_prepare(name, query)
                _flush(pgconn)
                _results(conn)
                prepared.add(name)
            pgconn.send_query_prepared(name, params)
            _flush(pgconn)
        except BaseException:
            if conn is not None:
                conn.close()  # half sent: not to be lent again
            slots.release()
            raise

        def results() -> list[PGresult]:
            try:
                return _results(conn)
            finally:  # one whose answer was not read to the end, or that broke, is closed there
                self._give_back(conn)
                slots.release()

        return results

    def _slot(self) -> threading.BoundedSemaphore:
        """One of this process's MAX_OPEN connection slots, taken (release it on the returned semaphore)."""
        self._forget_if_forked()
        slots = self._slots
        if not slots.acquire(timeout=WAIT_FOR_ONE):
            raise StorageUnavailable(
                f"all {MAX_OPEN} database connections of this process stayed busy for {WAIT_FOR_ONE:g}s; try again"
            )
        return slots

    def _statement_name(self, query: bytes) -> bytes:
        name = self._names.get(query)
        if name is None:
            with self._lock:
                name = self._names.setdefault(query, b"mieruka_%d" % len(self._names))
        return name

    def _forget_if_forked(self) -> None:
        """In a forked child, the parent's connections stay the parent's (closing one would end
        the parent's session): they are set aside, never used nor freed."""
        with self._lock:
            if os.getpid() != self._pid:
                _inherited.append(self._idle)
                self._idle = []
                self._pid = os.getpid()
                self._slots = threading.BoundedSemaphore(MAX_OPEN)

    def _take(self) -> psycopg.Connection[tuple[object, ...]]:
        while True:
            with self._lock:
                conn, used_at = self._idle.pop() if self._idle else (None, 0.0)
            if conn is None:
                return self._open()
            if _hung_up(conn):  # the server stopped or restarted since: no statement is lost on it
                conn.close()
                continue
            if time.monotonic() - used_at <= IDLE_PING_AFTER:
                return conn
            try:  # it sat unused: the server may have gone away since
                conn.execute("SELECT 1")
                return conn
            except Exception:
                conn.close()

    def _open(self) -> psycopg.Connection[tuple[object, ...]]:
        global _IDLE, _OK
        import psycopg

        _IDLE, _OK = psycopg.pq.TransactionStatus.IDLE, psycopg.pq.ConnStatus.OK
        return psycopg.connect(self._conninfo, autocommit=True)

    def _give_back(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        if conn.broken and os.getpid() == self._pid:
            # The server went away (stopped, restarted, out of reach): the idle connections opened
            # before are as dead, and each would fail one more statement after it is back.
            with self._lock:
                idle, self._idle = self._idle, []
            for dead, _ in idle:
                dead.close()
        usable = (
            not conn.closed
            and not conn.broken
            and conn.pgconn.status == _OK
            and conn.pgconn.transaction_status == _IDLE
        )
        if usable and os.getpid() == self._pid:
            with self._lock:
                if not self._closed and len(self._idle) < KEEP_IDLE:
                    self._idle.append((conn, time.monotonic()))
                    return
        if os.getpid() == self._pid:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn, _ in idle:
            conn.close()


def _flush(pgconn: PGconn) -> None:
    while pgconn.flush():  # psycopg's connections do not block: the rest goes once the socket takes it
        _wait_for(pgconn.socket, select.POLLOUT)


def _wait_for(fd: int, event: int) -> None:
    poller = select.poll()
    poller.register(fd, event)
    poller.poll()


def _results(conn: psycopg.Connection[tuple[object, ...]]) -> list[PGresult]:
    """The results of the statement sent on `conn`, once its answer has come."""
    import psycopg
    from psycopg import pq

    pgconn = conn.pgconn
    results: list[PGresult] = []
    error: psycopg.Error | None = None
    while True:
        pgconn.consume_input()
        if pgconn.is_busy():
            _wait_for(pgconn.socket, select.POLLIN)
            continue
        result = pgconn.get_result()
        if result is None:
            break
        if result.status in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            results.append(result)
        elif error is None:
            error = psycopg.errors.error_from_result(result, encoding=conn.info.encoding)
    if error is not None:
        raise error
    return results


def _hung_up(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """An idle connection in autocommit is sent nothing unasked: a socket that reads (end of file,
    or the server's farewell notice) belongs to a server that went away. One syscall, no round trip."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
