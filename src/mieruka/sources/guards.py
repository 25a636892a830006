"""What a source tells the database before a read: make the session read-only and stop a statement
at the timeout, per database and per server.

One table for SQLAlchemy dialects and ODBC drivers alike. The URL or the driver does not decide:
`mysql+pymysql://` and MariaDB's ODBC driver reach MariaDB and MySQL servers, whose time-outs
differ (MariaDB's `max_statement_time` in seconds, MySQL's `max_execution_time` in milliseconds,
SELECT only); the server's version string does.
"""

from __future__ import annotations

from dataclasses import dataclass

# ODBC's SQL_DBMS_NAME -> the family of the table below.
ODBC_FAMILIES = {"postgresql": "postgresql", "mariadb": "mysql", "mysql": "mysql", "sqlite": "sqlite"}
SQLALCHEMY_FAMILIES = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}


@dataclass(frozen=True)
class Guard:
    """Statements to run before the read. `read_only`: they make the session read-only; `timeout`:
    the database stops a statement at the timeout (else only a cancel from outside does)."""

    statements: tuple[str, ...]
    read_only: bool = True
    timeout: bool = True


def is_mariadb(version: str) -> bool:
    """True for a MariaDB server's version string ("10.11.19-MariaDB-0+deb12u1"), False for MySQL's."""
    return "mariadb" in version.lower()


def guard(family: str, version: str, timeout: float, *, in_transaction: bool) -> Guard | None:
    """The guard of a database `family` ("postgresql", "mysql", "sqlite") whose server reports
    `version`; None for a database this table does not know. With `in_transaction` the read runs in
    a transaction that is rolled back afterwards (SQLAlchemy), else each statement commits on its
    own on a connection opened for this read (ODBC)."""
    ms = max(1, int(timeout * 1000))
    if family == "postgresql":
        if in_transaction:
            return Guard(("SET TRANSACTION READ ONLY", f"SET LOCAL statement_timeout = {ms}"))
        return Guard(("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", f"SET statement_timeout = {ms}"))
    if family == "mysql":
        # A session setting: it holds for the transaction SQLAlchemy begins and for each statement
        # of an autocommit ODBC connection alike.
        read_only = "SET SESSION TRANSACTION READ ONLY"
        if is_mariadb(version):
            return Guard((read_only, f"SET SESSION max_statement_time = {ms / 1000:.3f}"))
        return Guard((read_only, f"SET SESSION max_execution_time = {ms}"))
    if family == "sqlite":
        # SQLite has no statement time-out; its reads are interrupted from outside (a progress
        # handler or the driver's SQLCancel).
        return Guard(("PRAGMA query_only = 1",), timeout=False)
    return None


def not_read_only(what: str, why: str) -> str:
    """The warning a source shows when its reads are not known to be read-only."""
    return f"read-only is not enforced: {why} for {what}; give the source a database account that may only read"
