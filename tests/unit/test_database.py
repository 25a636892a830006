"""The database's reads for the event loop (`Database.at_once`): a statement that would wait for
another connection's lock says so at once (WouldWait) instead of waiting out the busy timeout."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mieruka.store.base import WouldWait
from mieruka.store.database import Database


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
