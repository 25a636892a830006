"""A raw ODBC connection string through pyodbc, for drivers with no SQLAlchemy dialect (e.g. a
hospital's Symfoware). Parameters are bound, never formatted into the text: a list for `?`
placeholders, or a dict for `:name` placeholders (turned into `?` here, as SQLAlchemy does).

Guardrails: the connection asks for read-only access (SQL_ATTR_ACCESS_MODE), which Debian's
psqlodbc, MariaDB and SQLite drivers all ignore. So the database the driver reports (SQL_DBMS_NAME,
and for MariaDB or MySQL the server's version) picks statements that make the session read-only
and time-limited (guards.py): PostgreSQL read-only session characteristics and `statement_timeout`,
MariaDB or MySQL `SET SESSION TRANSACTION READ ONLY` and the server's time-out variable, SQLite
`PRAGMA query_only`. For another database the source's warning says read-only is not enforced,
unless the driver reports a read-only data source or `init=` statements (run after connecting, e.g.
"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY") take that on. A timer cancels the
statement (SQLCancel) at the timeout, since many drivers (psqlodbc among them) refuse a
connection-level query timeout, and at most max_rows + 1 rows are fetched. A connection is opened
for each read: refreshes are seconds apart, and a fresh connection survives a warehouse restart
without any reconnect logic.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..redaction import without_passwords
from . import guards
from .base import Fetched, Limits
from .frames import from_rows, optional, pandas

Params = Sequence[Any] | Mapping[str, Any] | Callable[[], Sequence[Any] | Mapping[str, Any]]
# A :name placeholder outside quotes; quoted text and :: casts are left alone.
_NAMED = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*"|::)|:([A-Za-z_][A-Za-z0-9_]*)""")


def qmark(query: str) -> tuple[str, list[str]]:
    """`query` with each :name placeholder turned into ?, and the names in order (so that one SQL
    text with named parameters serves both SQLAlchemy URLs and raw ODBC connections)."""
    names: list[str] = []

    def swap(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        names.append(match.group(2))
        return "?"

    return _NAMED.sub(swap, query), names


class OdbcSource:
    kind = "odbc"

    def __init__(
        self, connection_string: str, query: str, params: Params | None = None, init: Sequence[str] = ()
    ) -> None:
        self.connection_string = connection_string
        self.query = query
        self.params = params
        self.init = [init] if isinstance(init, str) else list(init)
        self._cursor: Any = None
        self._lock = threading.Lock()
        self._warning: str | None = None

    def fetch(self, limits: Limits) -> Fetched:
        pandas()  # before connecting: a missing extra is said first
        pyodbc = optional("pyodbc", "ODBC sources (pyodbc)", "odbc")
        given = self.params() if callable(self.params) else self.params
        query = self.query
        if isinstance(given, Mapping):
            query, names = qmark(self.query)
            params = [given[name] for name in names]
        else:
            params = list(given or ())
        conn = pyodbc.connect(
            self.connection_string, autocommit=True, readonly=True, timeout=max(1, math.ceil(limits.timeout))
        )
        try:
            cursor = conn.cursor()
            self._warning = self._protect(pyodbc, conn, cursor, limits.timeout)
            for statement in self.init:
                cursor.execute(statement)
            with self._lock:
                self._cursor = cursor
            stopped = threading.Event()

            def stop() -> None:
                stopped.set()
                self.cancel()

            timer = threading.Timer(limits.timeout, stop)
            timer.daemon = True
            timer.start()
            try:
                cursor.execute(query, params) if params else cursor.execute(query)
                columns = [d[0] for d in cursor.description or ()]
                rows = cursor.fetchmany(limits.max_rows + 1)
            except pyodbc.Error as exc:
                if stopped.is_set():  # some drivers' cancelled statement says nothing (MariaDB's: "(0)")
                    raise TimeoutError(f"the read was cancelled at the timeout ({limits.timeout:g}s): {exc}") from exc
                raise
            finally:
                timer.cancel()
                with self._lock:
                    self._cursor = None
        finally:
            conn.close()
        return from_rows(rows, columns, limits.max_rows)

    def _protect(self, pyodbc: Any, conn: Any, cursor: Any, timeout: float) -> str | None:
        """Make the session read-only and time-limited as its database allows; the warning if not."""
        dbms, driver = str(_info(pyodbc, conn, "SQL_DBMS_NAME")), str(_info(pyodbc, conn, "SQL_DRIVER_NAME"))
        what = f"{dbms or 'an unknown database'} through the ODBC driver {driver or '?'}"
        family = guards.ODBC_FAMILIES.get(dbms.lower(), "")
        version = ""
        if family == "mysql":  # the driver names itself, not the server: ask the server
            cursor.execute("SELECT VERSION()")
            version = str(cursor.fetchone()[0])
        guard = guards.guard(family, version, timeout, in_transaction=False)
        if guard is None:
            if self.init or _info(pyodbc, conn, "SQL_DATA_SOURCE_READ_ONLY") in (True, "Y"):
                return None  # the driver says so, or the init= statements take it on
            return guards.not_read_only(what, "mieruka knows no read-only setting")
        for number, statement in enumerate(guard.statements):
            try:
                cursor.execute(statement)
            except pyodbc.Error as exc:
                why = f"{statement!r} failed ({(str(exc).strip().splitlines() or [''])[0][:200]})"
                if number == 0 and guard.read_only:
                    return guards.not_read_only(what, why)
                return f"the database does not stop a read at the timeout: {why} for {what}; it is cancelled instead"
        return None

    def warning(self) -> str | None:
        return self._warning

    def changed(self) -> bool:
        return True

    def cancel(self) -> None:
        # Under the lock: the reading thread clears the cursor under it before closing the connection,
        # so SQLCancel never runs on a freed handle (that aborts the process inside the driver).
        with self._lock:
            if self._cursor is not None:
                try:
                    self._cursor.cancel()
                except Exception:
                    pass

    def describe(self) -> str:
        return "ODBC " + without_passwords(self.connection_string)

    def close(self) -> None:
        pass


def _info(pyodbc: Any, conn: Any, name: str) -> Any:
    """An SQLGetInfo answer, or "" when the driver does not give it."""
    try:
        return conn.getinfo(getattr(pyodbc, name))
    except pyodbc.Error:
        return ""
