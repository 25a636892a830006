"""A database that does not answer: which driver errors mean that, and how mieruka says it.

The job store and the account tables may meet a database that went away: PostgreSQL stopped,
restarted or out of reach, a SQLite file locked by another process, unreadable or damaged.
`unavailable(exc, url)` turns such an error into the one error the rest of mieruka knows,
`DatabaseUnavailable` (HTTP 503 with Retry-After, one line on the command line), naming the
database; any other error (a bug, a constraint) is not one and is left as it is. Its message is
English, as the API answers it and the server logs it (each time the database fails a request);
`said` says it in the current language, as the command line does.

    try:
        store.get_job(1)
    except Exception as exc:
        problem = unavailable(exc, url)
        if problem is None:
            raise
        raise problem from None
"""

from __future__ import annotations

import sqlite3
import sys
from types import ModuleType

from ..errors import DatabaseUnavailable
from ..i18n import _

RETRY_AFTER = 5  # seconds a client is told to wait before trying again
# PostgreSQL error classes of a database that is away rather than of a statement that is wrong:
# connection exception, invalid authorization, invalid catalog name (no such database),
# insufficient resources (too many connections, disk full), operator intervention (shutdown,
# starting up), system error.
_PG_AWAY = ("08", "28", "3D", "53", "57", "58")
# SQLite result codes (extended codes start with these) of a file that cannot be used now.
_SQLITE_AWAY = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_READONLY",
    "SQLITE_FULL",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
    "SQLITE_PROTOCOL",
    "SQLITE_PERM",
    "SQLITE_AUTH",
)


def _sa_exc() -> ModuleType | None:
    """SQLAlchemy's errors, if it is loaded: an error can only be one of them if it is."""
    return sys.modules.get("sqlalchemy.exc")


def driver_error(exc: BaseException) -> BaseException | None:
    """The driver's own error behind `exc` (SQLAlchemy wraps it), or None when there is none."""
    seen: set[int] = set()
    current: BaseException | None = exc
    sa_exc = _sa_exc()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error) or type(current).__module__.startswith("psycopg"):
            return current
        if sa_exc is not None and isinstance(current, sa_exc.DBAPIError) and current.orig is not None:
            current = current.orig
            continue
        current = current.__cause__ or current.__context__
    return None


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database is away (unreachable, locked, unreadable), not that a
    statement was wrong."""
    if isinstance(exc, DatabaseUnavailable):
        return True
    sa_exc = _sa_exc()
    if sa_exc is not None:
        if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came
            return True
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return True
    found = driver_error(exc)
    if isinstance(found, sqlite3.Error):
        name = getattr(found, "sqlite_errorname", "") or ""
        return name.startswith(_SQLITE_AWAY)
    if found is not None:  # psycopg
        import psycopg

        if isinstance(found, psycopg.InterfaceError):  # the connection is closed
            return True
        if isinstance(found, psycopg.OperationalError):
            state = getattr(found, "sqlstate", None)
            return state is None or str(state).startswith(_PG_AWAY)
    return False


def reason(exc: BaseException) -> str:
    """What the driver said, in one line: `connection to server at "127.0.0.1", port 5432 failed:
    Connection refused`, `database is locked`."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.reason
    found = driver_error(exc) or exc
    text = str(getattr(found, "orig", None) or found).strip()
    line = next((part.strip() for part in text.splitlines() if part.strip()), type(found).__name__)
    return line.removeprefix("connection failed: ")


def unavailable(exc: BaseException, url: str) -> DatabaseUnavailable | None:
    """`exc` as DatabaseUnavailable naming the database at `url`, or None if it is no outage."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    if not is_outage(exc):
        return None
    return DatabaseUnavailable(shown(url), reason(exc), RETRY_AFTER)


def said(problem: DatabaseUnavailable) -> str:
    """The message of `problem` in the current language."""
    database = problem.database
    if database.startswith(_FILE):
        database = _("file %(path)s", path=database.removeprefix(_FILE))
    elif database == _IN_MEMORY:
        database = _("in-memory SQLite")
    return _(
        "the database (%(database)s) is unreachable: %(reason)s; retrying", database=database, reason=problem.reason
    )


_FILE = "file "
_IN_MEMORY = "in-memory SQLite"


def shown(url: str) -> str:
    """The database as a person knows it: a SQLite file's path, else the URL without its password."""
    if url.startswith("sqlite"):
        from .database import sqlite_path

        path = sqlite_path(url)
        return _IN_MEMORY if path == ":memory:" else f"{_FILE}{path}"
    return without_password(url)


def without_password(url: str) -> str:
    """A URL as printed: its password, if it has one, as *** (SQLAlchemy's way); the rest as given."""
    scheme, found, rest = url.partition("://")
    if not found:
        return url
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{rest[len(authority) :]}"
