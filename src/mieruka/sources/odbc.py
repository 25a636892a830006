"""A raw ODBC connection string through pyodbc, for drivers with no SQLAlchemy dialect (e.g. a
hospital's Symfoware). Parameters are bound, never formatted into the text: a list for `?`
placeholders, or a dict for `:name` placeholders (turned into `?` here, as SQLAlchemy does).

Guardrails: the connection asks for read-only access (SQL_ATTR_ACCESS_MODE). Some drivers ignore
that attribute (psqlodbc does; it honours `ReadOnly=1` in the connection string instead), so
`init=` statements run after connecting, e.g. "SET SESSION CHARACTERISTICS AS TRANSACTION READ
ONLY"; a timer cancels the statement (SQLCancel) at the timeout, since many drivers
(psqlodbc among them) refuse a connection-level query timeout, and at most max_rows + 1 rows are
fetched. A connection is opened for each read: refreshes are seconds apart,
and a fresh connection survives a warehouse restart without any reconnect logic.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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

    def __init__(self, connection_string: str, query: str, params: Params | None = None,
                 init: Sequence[str] = ()) -> None:
        self.connection_string = connection_string
        self.query = query
        self.params = params
        self.init = [init] if isinstance(init, str) else list(init)
        self._cursor: Any = None
        self._lock = threading.Lock()

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
        conn = pyodbc.connect(self.connection_string, autocommit=True, readonly=True,
                              timeout=max(1, math.ceil(limits.timeout)))
        try:
            cursor = conn.cursor()
            for statement in self.init:
                cursor.execute(statement)
            with self._lock:
                self._cursor = cursor
            timer = threading.Timer(limits.timeout, self.cancel)
            timer.daemon = True
            timer.start()
            try:
                cursor.execute(query, params) if params else cursor.execute(query)
                columns = [d[0] for d in cursor.description or ()]
                rows = cursor.fetchmany(limits.max_rows + 1)
            finally:
                timer.cancel()
                with self._lock:
                    self._cursor = None
        finally:
            conn.close()
        return from_rows(rows, columns, limits.max_rows)

    def changed(self) -> bool:
        return True

    def cancel(self) -> None:
        # Under the lock: the reading thread clears the cursor under it before closing the connection,
        # so SQLCancel never runs on a freed handle (that aborts the process inside the driver).
        with self._lock:
            if self._cursor is not None:
                try:
                    self._cursor.cancel()
                except Exception:  # noqa: BLE001, S110 - best effort: the read may just have ended
                    pass

    def describe(self) -> str:
        # Never show a password: drop PWD=... and Password=... from the connection string.
        return "ODBC " + re.sub(r"(?i)\b(pwd|password)\s*=\s*(\{[^}]*\}|[^;]*)", r"\1=***", self.connection_string)

    def close(self) -> None:
        pass
