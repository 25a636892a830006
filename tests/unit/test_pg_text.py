"""One-statement reads and writes on libpq itself (store/pg_text.py): parameters in text form,
rows typed as psycopg types them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pytest

from mieruka.store.pg_connections import PgConnections
from mieruka.store.pg_text import TextCursor, numbered, param
from tests.conftest import fresh_postgres_database


@pytest.fixture(scope="module")
def connections() -> Iterator[PgConnections]:
    with fresh_postgres_database("mieruka_pgtext") as url:
        pool = PgConnections(url)
        yield pool
        pool.close()


def test_parameters_in_text_form_and_numbered_placeholders() -> None:
    assert [param(v) for v in (None, True, False, 3, 1.5, "ü", datetime(2026, 1, 2, 3, 4, 5, 6))] == [
        None,
        b"t",
        b"f",
        b"3",
        b"1.5",
        "ü".encode(),
        b"2026-01-02 03:04:05.000006",
    ]
    with pytest.raises(TypeError, match="no text form for a dict"):
        param({"a": 1})
    assert (
        numbered("UPDATE t SET a = %s WHERE id = %s AND b IN (%s)")
        == b"UPDATE t SET a = $1 WHERE id = $2 AND b IN ($3)"
    )
    assert numbered("SELECT 100 %% 7, %s, '%%s'") == b"SELECT 100 % 7, $1, '%s'"


def test_rows_come_typed_as_psycopg_types_them(connections: PgConnections) -> None:
    with connections.lend() as conn:
        conn.execute(
            "CREATE TABLE typed (id serial primary key, name varchar(20), doc json, at timestamp, "
            "ok boolean, ratio double precision, n bigint, note text)"
        )
        expected = conn.execute(
            "INSERT INTO typed (name, doc, at, ok, ratio, n, note) VALUES ('ü', '{\"a\": [1, null]}', "
            "'2026-11-22 10:00:00.5', true, 0.25, 9007199254740993, NULL), "
            "(NULL, 'null', '2026-11-22 10:00:00', false, NULL, NULL, 'x') RETURNING *"
        ).fetchall()
    cursor = TextCursor(connections, {})
    cursor.execute("SELECT * FROM typed WHERE id > %s ORDER BY id", (0,))
    rows = cursor.fetchall()
    assert rows == expected and cursor.fetchone() is None
    assert rows[0][2] == {"a": [1, None]} and rows[0][6] == 9007199254740993
    cursor.execute("SELECT extract(epoch from at), count(*) FROM typed GROUP BY 1 ORDER BY 1")
    assert cursor.fetchall() == [(Decimal("1795341600.000000"), 1), (Decimal("1795341600.500000"), 1)]
    cursor.execute("UPDATE typed SET note = %s WHERE ok = %s", ("y", False))
    assert cursor.rowcount == 1 and cursor.fetchone() is None
    cursor.execute("UPDATE typed SET note = %s WHERE id = %s RETURNING note, at", (None, 1))
    assert cursor.fetchone() == (None, datetime(2026, 11, 22, 10, 0, 0, 500000)) and cursor.rowcount == 1


def test_text_with_a_nul_is_refused_as_psycopg_refuses_it(connections: PgConnections) -> None:
    """libpq's text form ends at a NUL: sent as is, 'ada\\x00x' would be compared as 'ada' (and match
    her row). psycopg refuses such text; so does the text form, before anything is sent."""
    import psycopg

    with connections.lend() as conn:
        conn.execute("CREATE TABLE named (name text)")
        conn.execute("INSERT INTO named VALUES ('ada')")
    cursor = TextCursor(connections, {})
    with pytest.raises(psycopg.DataError, match="NUL"):
        cursor.execute("SELECT name FROM named WHERE name = %s", ("ada\x00x",))
    with connections.lend() as conn, pytest.raises(psycopg.DataError, match="NUL"):
        conn.execute("SELECT name FROM named WHERE name = %s", ("ada\x00x",))
    cursor.execute("SELECT name FROM named WHERE name = %s", ("ada",))  # the connections still serve
    assert cursor.fetchall() == [("ada",)]
