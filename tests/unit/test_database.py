"""The database's one-statement helpers on both backends, and its reads for the event loop
(`Database.at_once`): a statement that would wait for another connection's lock says so at once
(WouldWait) instead of waiting out the busy timeout."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from mieruka.core.clock import utcnow
from mieruka.store.base import WouldWait
from mieruka.store.database import Database, sqlite_wal
from tests.conftest import fresh_postgres_database
from tests.unit.test_imports import loaded_after


def test_a_lock_wait_at_once_is_would_wait_and_the_thread_reads_patiently_again(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = Database(f"sqlite:///{path}", busy_timeout=3600)
    try:
        with db.write_cursor() as cur:
            cur.execute("CREATE TABLE t (n INTEGER)")
            cur.execute("INSERT INTO t VALUES (1)")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t VALUES (2)")
        try:
            with db.at_once(), db.cursor() as cur:
                cur.execute("SELECT n FROM t")  # WAL: the committed rows, no wait for the writer
                assert cur.fetchall() == [(1,)]
            # Would wait for the holder's lock (an hour by the busy timeout, past the test's limit).
            with pytest.raises(WouldWait), db.at_once(), db.cursor() as cur:
                cur.execute("INSERT INTO t VALUES (3)")
        finally:
            holder.execute("COMMIT")
            holder.close()
        with db.cursor() as cur:  # outside the block: the thread's own connection
            cur.execute("SELECT n FROM t ORDER BY n")
            assert cur.fetchall() == [(1,), (2,)]
    finally:
        db.close()


def test_a_new_database_waits_for_a_writer_that_holds_it_in_rollback_mode(tmp_path: Path) -> None:
    """Processes opening a new database together: while one holds the write lock before WAL is on,
    SQLite refuses another's `journal_mode=WAL` at once, busy timeout or not. Opening waits instead,
    up to the busy timeout, and says "locked" after it."""
    import threading

    path = tmp_path / "m.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (n INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        sqlite_wal(sqlite3.connect(path, isolation_level=None, timeout=60), busy_timeout=0.05)
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    db = Database(f"sqlite:///{path}", busy_timeout=60)
    try:
        assert db.rows("PRAGMA journal_mode") == [("wal",)]
        assert db.rows("SELECT n FROM t") == [(1,)]
    finally:
        release.join()
        holder.close()
        db.close()


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.close()


def test_one_statement_reads_and_writes_with_question_marks_on_both_backends(db: Database) -> None:
    """`rows`, `row`, `run` and `run_returning`: each statement its own transaction, "?" placeholders
    on both backends, the rows as the driver returns them and the count of changed rows."""
    now = db.codec.time(utcnow())
    added = db.run_returning(
        "INSERT INTO users (name, role, created_at) VALUES (?, ?, ?) RETURNING id", ("ann", "viewer", now)
    )
    assert len(added) == 1 and isinstance(added[0][0], int)
    db.run("INSERT INTO users (name, role, created_at) VALUES (?, ?, ?)", ("bob", "admin", now))
    assert db.rows("SELECT name, role FROM users ORDER BY name") == [("ann", "viewer"), ("bob", "admin")]
    assert db.row("SELECT name FROM users WHERE id = ?", (added[0][0],)) == ("ann",)
    assert db.row("SELECT name FROM users WHERE name = ?", ("nobody",)) is None
    assert db.run("UPDATE users SET role = ? WHERE role <> ?", ("operator", "operator")) == 2
    assert db.run("DELETE FROM users WHERE name = ?", ("nobody",)) == 0
    with pytest.raises(Exception) as failed:  # the name is unique: nothing written, the store usable
        db.run("INSERT INTO users (name, role, created_at) VALUES (?, ?, ?)", ("ann", "viewer", now))
    assert "unique" in str(failed.value).lower()
    assert db.rows("SELECT count(*) FROM users") == [(2,)]


def test_a_postgresql_store_at_its_newest_schema_starts_and_serves_without_sqlalchemy(tmp_path: Path) -> None:
    """On PostgreSQL the schema check is one query and the statements are plain SQL on psycopg's
    connections: a process that opens the store, checks its schema and writes and reads a job
    imports neither SQLAlchemy nor Alembic (the first migration, here, needs them)."""
    with fresh_postgres_database("mieruka_lean") as url:
        first = Database(url)
        first.migrate()
        first.close()
        script = f"""
from mieruka.store.base import NewJob
from mieruka.store.sql import SqlJobStore

store = SqlJobStore({url!r})
store.migrate()
job, _ = store.create_job(NewJob(task="t", params={{"x": 1}}))
assert store.get_job(job.id).params == {{"x": 1}}
store.close()
"""
        assert loaded_after(script, tmp_path) & {"sqlalchemy", "alembic"} == set()


def test_a_password_is_hidden_where_a_url_is_shown_as_sqlalchemy_hides_it() -> None:
    from sqlalchemy.engine import make_url

    from mieruka.store.outage import without_password

    for url in (
        "postgresql+psycopg://mieruka:secret@127.0.0.1:1/x",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "postgresql+psycopg://u:p%40ss@h/db?sslmode=require",
        "amqp://guest:guest@127.0.0.1:5672//",
        "redis://:pw@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0",
    ):
        assert without_password(url) == make_url(url).render_as_string(hide_password=True)
    # A password with an unescaped "@" is hidden whole (SQLAlchemy would show its end as the host).
    assert without_password("postgresql+psycopg://u:p@ss@h/db") == "postgresql+psycopg://u:***@h/db"
    assert without_password("not a url") == "not a url"
