"""A database tried once before serving, working or migrating: a wrong, unreachable, locked,
damaged or unwritable one is one line naming it, not a traceback from a start-up. Loaded by
every command that opens the database, so it loads little: sqlite3 or psycopg, SQLAlchemy only
for a URL neither reads."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import ConfigError, MissingExtraError
from ..i18n import _
from .database import in_memory, make_engine, make_folder, sqlite_path, sqlite_wal
from .outage import reason, without_password
from .pg_connections import conninfo, lean_url

LOCK_WAIT = 5.0  # at most, seconds the start-up check waits for a SQLite file another process holds


def check_database(url: str, busy_timeout: float = LOCK_WAIT) -> None:
    """Connect once, before serving: a wrong, unreachable, locked, damaged or unwritable database
    is one line naming it, not a traceback from the server's or the worker's start-up. A locked
    SQLite file is waited for as a write would (`database_busy_timeout`), up to LOCK_WAIT."""
    if url.startswith("sqlite:"):
        path = sqlite_path(url)
        if path == ":memory:":
            raise in_memory(url)
        check_sqlite_file(Path(path), min(busy_timeout, LOCK_WAIT))
        return  # sqlite3 itself reads it: SQLAlchemy is loaded only when a statement needs it
    if lean_url(url):  # psycopg itself connects
        try:
            import psycopg
        except ImportError:
            raise MissingExtraError("PostgreSQL", "postgres") from None
        try:
            psycopg.connect(conninfo(url), connect_timeout=10).close()
        except psycopg.Error as exc:
            raise ConfigError(
                _("cannot reach the database %(url)s: %(reason)s", url=shown_url(url), reason=reason(exc))
            ) from None
        return
    from sqlalchemy.exc import SQLAlchemyError

    engine = make_engine(url, immediate=False)  # an unknown scheme or a missing driver: one line too
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise ConfigError(
            _("cannot reach the database %(url)s: %(reason)s", url=shown_url(url), reason=reason(exc))
        ) from None
    finally:
        engine.dispose()


def check_sqlite_file(path: Path, lock_wait: float = LOCK_WAIT) -> None:
    """Everything the store will need of a SQLite file, tried now: that it can be made, read and
    written (its write-ahead log beside it), that no other process holds its write lock, and that
    its pages are sound (`PRAGMA quick_check`)."""
    folder = path.parent
    make_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(
            _(
                "cannot use the database %(path)s: this user may not write in the folder %(folder)s "
                "(SQLite keeps its write-ahead log beside the database)",
                path=path,
                folder=folder,
            )
        )
    if path.is_dir():
        raise ConfigError(_("cannot use the database %(path)s: it is a folder, not a file", path=path))
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise ConfigError(_("cannot use the database %(path)s: this user may not read and write it", path=path))
    conn = None
    try:
        conn = sqlite3.connect(path, timeout=lock_wait, isolation_level=None)
        sqlite_wal(conn, lock_wait)
        conn.execute("BEGIN IMMEDIATE")  # the write lock, given back at once: is anyone holding it?
        conn.execute("ROLLBACK")
        problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.Error as exc:
        raise ConfigError(_sqlite_problem(path, exc, lock_wait)) from None
    finally:
        if conn is not None:
            conn.close()
    if problems != ["ok"]:
        lines = [
            line.strip()
            for text in problems
            for line in text.splitlines()
            if line.strip() and not line.startswith("***")
        ]  # "*** in database main ***" heads the list
        raise ConfigError(_damaged(path, "; ".join(lines)[:300]))


def _sqlite_problem(path: Path, exc: sqlite3.Error, lock_wait: float) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    said = str(exc)
    seconds = f"{lock_wait:g}"
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return _(
            "the database %(path)s is locked by another process (still after %(seconds)ss): stop the program "
            "using it (another mieruka with this home?), or give this one its own --home",
            path=path,
            seconds=seconds,
        )
    if name.startswith("SQLITE_NOTADB"):
        return _(
            "%(path)s is not a SQLite database (%(said)s): point --database-url at the right file, or move this one "
            "away",
            path=path,
            said=said,
        )
    if name.startswith("SQLITE_CORRUPT"):
        return _damaged(path, said)
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        return _(
            "cannot open the database %(path)s for writing (%(said)s): check who may write to it and to its folder",
            path=path,
            said=said,
        )
    return _("cannot use the database %(path)s: %(said)s", path=path, said=said)


def _damaged(path: Path, said: str) -> str:
    return _(
        "the database %(path)s is damaged (%(said)s): restore it from a backup, or move it away to start with an "
        "empty one",
        path=path,
        said=said,
    )


def shown_url(url: str) -> str:
    """A database or broker URL as printed: its password hidden."""
    return without_password(url)
