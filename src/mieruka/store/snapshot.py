"""A new SQLite database made at once from the schema the migrations build, instead of by running them.

Every fresh home starts a new database (a first `mieruka run`, each `mieruka demo`, every test's
server): importing Alembic and replaying each migration took most of a server's start-up work there.
`sqlite_schema.sql` is what the migrations leave in an empty SQLite database, dumped by SQLite itself
(tables, indexes, triggers, rows, `alembic_version`); a test rebuilds it from the migrations and fails
when it differs (`python -m mieruka.store.migrate` writes it again). A database that already has
anything in it, or a snapshot older than the newest migration, goes the Alembic way.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SCRIPT = Path(__file__).with_name("sqlite_schema.sql")
_VERSION = re.compile(r"^INSERT INTO \"alembic_version\" VALUES\('([^']+)'\);$", re.MULTILINE)


def revision() -> str | None:
    """The revision the snapshot is at (None when there is no snapshot)."""
    found = _VERSION.search(SCRIPT.read_text(encoding="utf-8")) if SCRIPT.is_file() else None
    return found.group(1) if found else None


def create(engine: Engine) -> bool:
    """`create_on` the SQLAlchemy engine's database."""
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        assert isinstance(conn, sqlite3.Connection)
        conn.isolation_level = None  # our own BEGIN IMMEDIATE: the emptiness check and the schema in one
        return create_on(conn)
    finally:
        raw.close()


def create_on(conn: sqlite3.Connection) -> bool:
    """Make the schema of an empty SQLite database from the snapshot: False (nothing done) when the
    database is not empty (another process made it meanwhile, or it is not new). `conn` is in
    autocommit mode (isolation_level None)."""
    statements = list(_statements(SCRIPT.read_text(encoding="utf-8")))
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            conn.execute("ROLLBACK")
            return False
        for statement in statements:
            conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return True


def dump(database: Path) -> str:
    """An SQLite database's schema and rows as the script `create` runs."""
    with sqlite3.connect(database) as conn:
        lines = [line for line in conn.iterdump() if line not in ("BEGIN TRANSACTION;", "COMMIT;")]
    conn.close()
    return "\n".join(lines) + "\n"


def _statements(script: str) -> Iterator[str]:
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        raise ValueError(f"{SCRIPT.name} ends inside a statement: {pending[:80]!r}")
