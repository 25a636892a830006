"""Sources on every database and driver they meet in the field: MariaDB through SQLAlchemy URLs
(`mysql+pymysql://`, `mariadb+pymysql://`), and raw ODBC through each of Debian's drivers
(odbc-postgresql, odbc-mariadb, libsqliteodbc). On each: the table is read, a write is refused (the
data is unchanged afterwards), a slow statement stops at the timeout and the next read works. A
database whose read-only setting mieruka does not know says so in the source's warning."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mieruka.sources import guards
from mieruka.sources.base import DataSource, Limits
from mieruka.sources.odbc import OdbcSource
from mieruka.sources.sql import SqlSource
from tests.conftest import fresh_mariadb_database, fresh_postgres_database, need_service
from tests.unit.test_sources import ROWS, fill_wards, sqlite_wards

LIMITS = Limits(timeout=10, max_rows=1000)
QUERY = "SELECT ward, patients FROM wards ORDER BY ward"
COUNT = "SELECT COUNT(*) AS n FROM wards"
SLOW = {
    "mariadb": "SELECT SLEEP(30) AS s",
    "postgres": "SELECT pg_sleep(30)",
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT COUNT(*) FROM n",
}
# What each database says when a statement is stopped (MariaDB: max_statement_time exceeded).
STOPPED = "(?i)interrupt|timeout|cancel|max_statement_time"
REFUSED = "(?i)read.?only"


@pytest.fixture(scope="module")
def maria() -> Iterator[str]:
    with fresh_mariadb_database("mieruka_drivers") as url:
        yield fill_wards(url)


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    with fresh_postgres_database("mieruka_drivers") as url:
        yield fill_wards(url)


@pytest.fixture
def lite(tmp_path: Path) -> str:
    return sqlite_wards(tmp_path)


def odbc_driver(name: str, package: str) -> str:
    """The registered name of an ODBC driver (as `odbcinst -q -d` lists it), or skip/fail."""
    try:
        import pyodbc
    except ImportError:
        need_service("pyodbc is not installed (pip install 'mieruka[odbc]')")
    if name not in pyodbc.drivers():
        need_service(f"no ODBC driver {name!r} (apt-get install unixodbc {package})")
    return name


def odbc_string(kind: str, url: str) -> str:
    """A connection string with no read-only option of the driver's own: mieruka must see to it."""
    database = url.rsplit("/", 1)[1]
    if kind == "postgres":
        driver = odbc_driver("PostgreSQL Unicode", "odbc-postgresql")
        return f"DRIVER={{{driver}}};SERVER=127.0.0.1;PORT=5432;DATABASE={database};UID=postgres;PWD=unused"
    if kind == "mariadb":
        driver = odbc_driver("MariaDB Unicode", "odbc-mariadb")
        return f"DRIVER={{{driver}}};SERVER=127.0.0.1;PORT=3306;DATABASE={database};UID=root"
    driver = odbc_driver("SQLite3", "libsqliteodbc")
    return f"DRIVER={{{driver}}};Database={url.split('///', 1)[1]}"


# (kind, database) -> a source of `query` on it; the database's SQLAlchemy URL comes from a fixture.
SOURCES: dict[str, tuple[str, Callable[[str, str], DataSource]]] = {
    "mysql+pymysql on MariaDB": ("mariadb", lambda url, q: SqlSource(url, q)),
    "mariadb+pymysql on MariaDB": ("mariadb", lambda url, q: SqlSource(url.replace("mysql+", "mariadb+", 1), q)),
    "odbc-mariadb": ("mariadb", lambda url, q: OdbcSource(odbc_string("mariadb", url), q)),
    "odbc-postgresql": ("postgres", lambda url, q: OdbcSource(odbc_string("postgres", url), q)),
    "libsqliteodbc": ("sqlite", lambda url, q: OdbcSource(odbc_string("sqlite", url), q)),
    "sqlalchemy on PostgreSQL": ("postgres", lambda url, q: SqlSource(url, q)),
    "sqlalchemy on SQLite": ("sqlite", lambda url, q: SqlSource(url, q)),
}


@pytest.fixture(params=list(SOURCES))
def make(request: pytest.FixtureRequest) -> Iterator[tuple[str, Callable[[str], DataSource]]]:
    database, build = SOURCES[request.param]
    fixture = {"mariadb": "maria", "postgres": "pg", "sqlite": "lite"}[database]
    url: str = request.getfixturevalue(fixture)
    made: list[DataSource] = []

    def source(query: str) -> DataSource:
        made.append(build(url, query))
        return made[-1]

    yield database, source
    for adapter in made:
        adapter.close()


def test_each_driver_reads_the_table_with_no_warning(make: tuple[str, Callable[[str], DataSource]]) -> None:
    _, source = make
    reader = source(QUERY)
    fetched = reader.fetch(LIMITS)
    assert [tuple(r) for r in fetched.frame.itertuples(index=False)] == ROWS
    assert reader.warning() is None  # every guardrail holds on these databases


def test_each_driver_refuses_a_write(make: tuple[str, Callable[[str], DataSource]]) -> None:
    _, source = make
    for statement in ("DELETE FROM wards", "UPDATE wards SET patients = 0", "DROP TABLE wards"):
        with pytest.raises(Exception, match=REFUSED):
            source(statement).fetch(LIMITS)
    assert source(COUNT).fetch(LIMITS).frame["n"].tolist() == [len(ROWS)]
    total = sum(patients for _, patients in ROWS)
    assert source("SELECT SUM(patients) AS s FROM wards").fetch(LIMITS).frame["s"].tolist() == [total]


def test_each_driver_stops_a_slow_statement_at_the_timeout(make: tuple[str, Callable[[str], DataSource]]) -> None:
    database, source = make
    started = time.monotonic()
    with pytest.raises(Exception, match=STOPPED):
        source(SLOW[database]).fetch(Limits(timeout=1, max_rows=10))
    assert time.monotonic() - started < 25  # stopped, not run to its end (30 s)
    assert source(COUNT).fetch(LIMITS).frame["n"].tolist() == [len(ROWS)]  # and the next read works


def test_mariadb_gets_its_own_time_out_whatever_the_url_says(maria: str) -> None:
    """The server decides: both URLs reach MariaDB, which knows max_statement_time (seconds), not
    MySQL's max_execution_time."""
    for url in (maria, maria.replace("mysql+", "mariadb+", 1)):
        source = SqlSource(url, "SELECT @@session.max_statement_time AS t, @@session.tx_read_only AS ro")
        frame = source.fetch(Limits(timeout=2.5, max_rows=10)).frame
        assert float(frame["t"][0]) == 2.5 and int(frame["ro"][0]) == 1
        source.close()
    odbc = OdbcSource(odbc_string("mariadb", maria), "SELECT @@session.max_statement_time AS t")
    assert float(odbc.fetch(Limits(timeout=4, max_rows=10)).frame["t"][0]) == 4.0


def test_the_guards_speak_each_servers_dialect() -> None:
    maria = guards.guard("mysql", "10.11.19-MariaDB-0+deb12u1", 2.5, in_transaction=True)
    mysql = guards.guard("mysql", "8.0.36", 2.5, in_transaction=True)
    assert maria is not None and mysql is not None
    assert "SET SESSION max_statement_time = 2.500" in maria.statements
    assert "SET SESSION max_execution_time = 2500" in mysql.statements
    assert all("READ ONLY" in g.statements[0] for g in (maria, mysql))
    assert guards.guard("oracle", "", 1, in_transaction=False) is None


def test_a_dialect_without_known_guards_says_reads_are_not_read_only(tmp_path: Path) -> None:
    """A database behind a SQLAlchemy dialect the guards do not know (here SQLite under another
    dialect name): the read works, and the source's warning says writes are not refused."""
    from sqlalchemy.dialects import registry
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    class UnknownDialect(SQLiteDialect_pysqlite):
        name = "unknownsql"
        supports_statement_cache = True

    registry.impls["unknownsql"] = lambda: UnknownDialect
    path = sqlite_wards(tmp_path).split("///", 1)[1]
    source = SqlSource(f"unknownsql:///{path}", QUERY)
    assert isinstance(source._get_engine().dialect, UnknownDialect)
    assert len(source.fetch(LIMITS).frame) == len(ROWS)
    warning = source.warning()
    assert warning is not None and "read-only is not enforced" in warning and "'unknownsql'" in warning
    source.close()
    del registry.impls["unknownsql"]
