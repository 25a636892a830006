"""The store's one-statement reads and writes on PostgreSQL, on psycopg's libpq wrapper itself.

psycopg's cursor spends more of a Celery worker's CPU than the database's answer does: its query
conversion, prepared-statement bookkeeping and result handling ran to a quarter of a pool process's
Python time, per job (a claim and a final write). These statements are sent with their parameters
in PostgreSQL's text form, the column types read them, and the rows come back as text, typed here by
column type the way psycopg types them (json decoded, timestamps naive, as stored).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg.pq.abc import PGresult

    from .pg_connections import PgConnections


def _text(raw: bytes) -> str:
    return raw.decode()


def _bool(raw: bytes) -> bool:
    return raw == b"t"


def _decimal(raw: bytes) -> Decimal:
    return Decimal(raw.decode())


def _time(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode())


# By type oid; any other type comes back as text.
_TYPED: dict[int, Callable[[bytes], Any]] = {
    16: _bool,
    20: int,
    21: int,
    23: int,
    700: float,
    701: float,
    114: json.loads,
    3802: json.loads,
    1114: _time,
    1184: _time,
    1700: _decimal,
}


_PLACEHOLDER = re.compile("%%|%s")


def param(value: object) -> bytes | None:
    """A parameter in PostgreSQL's text form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return b"t" if value else b"f"
    if isinstance(value, datetime):
        return value.isoformat(" ").encode()
    if isinstance(value, str):
        if "\x00" in value:  # libpq's text form ends at a NUL: 'ada\x00x' would be 'ada'
            import psycopg

            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return value.encode()
    if isinstance(value, int | float):
        return str(value).encode()
    raise TypeError(f"no text form for a {type(value).__name__} parameter")


def numbered(query: str) -> bytes:
    """A statement with psycopg's %s placeholders as libpq's $1, $2, ... (and its %% as %)."""
    count = itertools.count(1)
    return _PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else f"${next(count)}", query).encode()


def rows_of(results: list[PGresult]) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of a statement's results, typed, and how many rows it touched."""
    rows: list[tuple[Any, ...]] = []
    count = -1
    for result in results:
        typed = [_TYPED.get(result.ftype(c), _text) for c in range(result.nfields)]
        for r in range(result.ntuples):
            rows.append(
                tuple(None if (v := result.get_value(r, c)) is None else typed[c](v) for c in range(len(typed)))
            )
        status = result.command_tuples
        if status is not None:
            count = status
    return rows, count


class TextCursor:
    """The cursor of one-statement transactions (autocommit): `execute`, `fetchone`, `fetchall`,
    `rowcount`, as psycopg's; each statement takes a connection for its round trip only."""

    def __init__(self, connections: PgConnections, numbered_cache: dict[str, bytes]) -> None:
        self._connections = connections
        self._numbered = numbered_cache
        self._rows: list[tuple[Any, ...]] = []
        self.rowcount = -1

    def execute(self, query: str, params: Sequence[object] = ()) -> None:
        self._rows, self.rowcount = rows_of(self.start(query, params)())

    def start(self, query: str, params: Sequence[object] = ()) -> Callable[[], list[PGresult]]:
        """Send the statement now; its results come from the returned function."""
        text = self._numbered.get(query)
        if text is None:
            text = self._numbered[query] = numbered(query)
        return self._connections.start(text, [param(v) for v in params])

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._rows = self._rows, []
        return rows
