"""The data source contract, run against every implementation: SQL on SQLite and on PostgreSQL,
raw ODBC on PostgreSQL (Debian's psqlodbc driver), CSV, Excel and Parquet files, a Python function.
Then each guardrail: bound parameters, row caps, missing extras, psqlodbc's read-only session (the
refused write and the timeout on every database and driver are tests/unit/test_source_drivers.py's)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mieruka.errors import ConfigError, MissingExtraError
from mieruka.sources.base import DataSource, Limits
from mieruka.sources.files import FileSource
from mieruka.sources.frames import optional
from mieruka.sources.function import FunctionSource
from mieruka.sources.odbc import OdbcSource
from mieruka.sources.source import make_source
from mieruka.sources.sql import SqlSource
from tests.conftest import fresh_postgres_database, need_service

ROWS = [("A", 10), ("B", 20), ("C", 30), ("D", 40), ("E", 50)]
LIMITS = Limits(timeout=10, max_rows=1000)
INJECTION = "A' OR '1'='1'; DROP TABLE wards; --"


def odbc_string(url: str) -> str:
    """A raw ODBC connection string for Debian's psqlodbc driver from a PostgreSQL URL."""
    try:
        import pyodbc
    except ImportError:
        need_service("pyodbc is not installed (pip install 'mieruka[odbc]')")
    drivers = [d for d in pyodbc.drivers() if "PostgreSQL Unicode" in d]
    if not drivers:
        need_service("no PostgreSQL ODBC driver (apt-get install unixodbc odbc-postgresql)")
    database = url.rsplit("/", 1)[1]
    return f"DRIVER={{{drivers[0]}}};SERVER=127.0.0.1;PORT=5432;DATABASE={database};UID=postgres;PWD=unused;ReadOnly=1"


def fill_wards(url: str) -> str:
    """The table `wards` (ROWS) in the empty database at `url` (tests/unit/test_source_drivers.py too)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE wards (ward VARCHAR(10) PRIMARY KEY, patients INTEGER)")
        conn.execute(sa.text("INSERT INTO wards VALUES (:w, :p)"), [{"w": w, "p": p} for w, p in ROWS])
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def pg_wards() -> Iterator[str]:
    with fresh_postgres_database("mieruka_sources") as url:
        yield fill_wards(url)


def sqlite_wards(tmp_path: Path) -> str:
    """A new SQLite file wards.db in `tmp_path` with the table `wards`."""
    return fill_wards(f"sqlite:///{tmp_path / 'wards.db'}")


def _files(tmp_path: Path, suffix: str) -> FileSource:
    import pandas as pd

    frame = pd.DataFrame(ROWS, columns=["ward", "patients"])
    path = tmp_path / f"wards{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False)
    else:
        frame.to_parquet(path)
    return FileSource(path)


QUERY = "SELECT ward, patients FROM wards ORDER BY ward"
KINDS: dict[str, Callable[[Path, pytest.FixtureRequest], DataSource]] = {
    "sql-sqlite": lambda tmp, req: SqlSource(sqlite_wards(tmp), QUERY),
    "sql-postgres": lambda tmp, req: SqlSource(req.getfixturevalue("pg_wards"), QUERY),
    "odbc-postgres": lambda tmp, req: OdbcSource(odbc_string(req.getfixturevalue("pg_wards")), QUERY),
    "csv": lambda tmp, req: _files(tmp, ".csv"),
    "excel": lambda tmp, req: _files(tmp, ".xlsx"),
    "parquet": lambda tmp, req: _files(tmp, ".parquet"),
    "function": lambda tmp, req: FunctionSource(lambda: [{"ward": w, "patients": p} for w, p in ROWS]),
}


@pytest.fixture(params=list(KINDS))
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DataSource]:
    adapter = KINDS[request.param](tmp_path, request)
    yield adapter
    adapter.close()


def test_a_source_reads_its_table(source: DataSource) -> None:
    fetched = source.fetch(LIMITS)
    assert list(fetched.frame.columns) == ["ward", "patients"]
    assert [tuple(r) for r in fetched.frame.itertuples(index=False)] == ROWS
    assert not fetched.truncated
    assert source.describe() and "PWD=unused" not in source.describe()


def test_a_source_stops_at_the_row_cap(source: DataSource) -> None:
    fetched = source.fetch(Limits(timeout=10, max_rows=3))
    assert len(fetched.frame) == 3 and fetched.truncated
    assert fetched.frame["ward"].tolist() == ["A", "B", "C"]


def test_a_source_can_be_cancelled_when_idle_and_read_again(source: DataSource) -> None:
    source.cancel()  # nothing runs: a no-op, never an error
    assert len(source.fetch(LIMITS).frame) == 5
    assert len(source.fetch(LIMITS).frame) == 5


def test_a_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    source = _files(tmp_path, ".csv")
    assert source.changed()
    source.fetch(LIMITS)
    assert not source.changed()
    time.sleep(0.01)
    source.path.write_text("ward,patients\nZ,1\n")
    assert source.changed()
    assert source.fetch(LIMITS).frame["ward"].tolist() == ["Z"]
    source.path.unlink()
    with pytest.raises(FileNotFoundError):
        source.fetch(LIMITS)


# -- guardrails --------------------------------------------------------------------------------
def _injection_sources(tmp_path: Path, request: pytest.FixtureRequest) -> list[DataSource]:
    query = "SELECT ward, patients FROM wards WHERE ward = :ward"
    found: list[DataSource] = [SqlSource(sqlite_wards(tmp_path), query, {"ward": INJECTION})]
    pg = request.getfixturevalue("pg_wards")
    found.append(SqlSource(pg, query, {"ward": INJECTION}))
    found.append(OdbcSource(odbc_string(pg), "SELECT ward, patients FROM wards WHERE ward = ?", [INJECTION]))
    return found


def test_a_parameter_carrying_sql_injection_is_harmless(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for source in _injection_sources(tmp_path, request):
        assert len(source.fetch(LIMITS).frame) == 0, source.describe()  # matched literally: no ward has that name
        source.close()
    import sqlalchemy as sa

    for url in (f"sqlite:///{tmp_path / 'wards.db'}", request.getfixturevalue("pg_wards")):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM wards").scalar() == 5
        engine.dispose()


def test_odbc_parameters_are_bound(pg_wards: str) -> None:
    source = OdbcSource(odbc_string(pg_wards), "SELECT ward, patients FROM wards WHERE patients > ?", [25])
    assert source.fetch(LIMITS).frame["ward"].tolist() == ["C", "D", "E"]
    named = OdbcSource(
        odbc_string(pg_wards),
        "SELECT ward, ':x' AS t, patients::text AS p FROM wards WHERE patients > :low AND patients < :high",
        {"high": 45, "low": 25},
    )
    frame = named.fetch(LIMITS).frame
    assert frame["ward"].tolist() == ["C", "D"] and frame["t"].tolist() == [":x", ":x"]
    assert "PWD=(hidden)" in source.describe() and "unused" not in source.describe()


@pytest.mark.parametrize("how", ["connection string", "init statement"])
def test_odbc_sessions_are_read_only(pg_wards: str, how: str) -> None:
    """psqlodbc ignores SQL_ATTR_ACCESS_MODE; ReadOnly=1 or a read-only session protect the data."""
    connection = odbc_string(pg_wards)
    init: list[str] = []
    if how == "init statement":
        connection = connection.replace(";ReadOnly=1", "")
        init = ["SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"]
    source = OdbcSource(connection, "DELETE FROM wards", init=init)
    with pytest.raises(Exception, match="(?i)read.?only"):
        source.fetch(LIMITS)
    check = SqlSource(pg_wards, "SELECT COUNT(*) AS n FROM wards")
    assert check.fetch(LIMITS).frame["n"].tolist() == [5]
    check.close()


def test_a_missing_extra_is_named() -> None:
    with pytest.raises(MissingExtraError, match=r"pip install 'mieruka\[odbc\]'"):
        optional("surely_not_installed_module", "ODBC sources (pyodbc)", "odbc")


@pytest.mark.parametrize(
    "options, message",
    [
        ({}, "exactly one of"),
        ({"sql": "SELECT 1"}, "url= .* or odbc="),
        ({"sql": "SELECT 1", "url": "sqlite://", "params": [1]}, "dict"),
        ({"sql": "SELECT 1", "odbc": "DSN=x", "params": 5}, "list"),
        ({"function": lambda: [], "every": "soon"}, "cannot read duration"),
        ({"function": lambda: [], "cron": "not cron"}, "invalid cron"),
        ({"function": lambda: [], "timeout": 0}, "timeout must be positive"),
        ({"function": lambda: [], "max_rows": 0}, "max_rows"),
        ({"file": "x.unknown"}, "format"),
    ],
)
def test_bad_declarations_say_what_is_wrong(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_source("s", **options)
