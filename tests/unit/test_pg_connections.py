"""The store's own PostgreSQL connections (store/pg_connections.py): autocommit and durable, with
statements that may relax their own commit; replaced when the server dropped them, capped per
process, and left alone in a forked child."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mieruka.errors import StorageUnavailable
from mieruka.store import pg_connections
from mieruka.store.pg_connections import PgConnections, conninfo
from tests.conftest import fresh_postgres_database


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with fresh_postgres_database("mieruka_pgconn") as url:
        yield url


@pytest.fixture
def connections(database_url: str) -> Iterator[PgConnections]:
    pool = PgConnections(database_url)
    yield pool
    pool.close()


def _terminate_other_sessions(database_url: str, keep_pid: int | None = None) -> None:
    import psycopg

    with psycopg.connect(conninfo(database_url), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM %s",
            (keep_pid,),
        )


def test_the_url_is_given_to_libpq_without_the_driver_name() -> None:
    assert (
        conninfo("postgresql+psycopg://u:p%40ss@db.example:5433/jobs?sslmode=require")
        == "postgresql://u:p%40ss@db.example:5433/jobs?sslmode=require"
    )


def test_a_statement_commits_by_itself_and_durably(connections: PgConnections) -> None:
    with connections.lend() as conn:
        assert conn.autocommit
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
        conn.execute("CREATE TABLE IF NOT EXISTS t_commit (n int)")
        conn.execute("INSERT INTO t_commit VALUES (1)")
    with connections.lend() as conn:
        assert conn.execute("SELECT count(*) FROM t_commit").fetchone() == (1,)


def test_a_claim_alone_relaxes_its_own_commit_only(database_url: str) -> None:
    """Its commit does not wait for the disk; the next statement on the same connection (a
    worker's final write) does."""
    from mieruka.core.clock import utcnow
    from mieruka.store.base import Claim, NewJob
    from mieruka.store.sql import SqlJobStore, claim_sql

    store = SqlJobStore(database_url)
    try:
        store.migrate()
        first, _ = store.create_job(NewJob(task="t", params={}))
        second, _ = store.create_job(NewJob(task="t", params={}))
        assert [r.id for r in store.apply([], Claim([first.id], "w", "e", utcnow())).claimed] == [first.id]
        with store.db._pg.lend() as conn:  # the connection the claim used, lent again
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
            with conn.transaction(force_rollback=True):
                now = utcnow().replace(tzinfo=None)
                row = conn.execute(
                    claim_sql(relaxed=True).replace("?", "%s"),
                    ("running", now, "w", "e", False, second.id, "queued", now),
                ).fetchone()
                assert row is not None and row[0] == second.id
                assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    finally:
        store.close()


def test_a_connection_is_reused_by_the_next_caller(connections: PgConnections) -> None:
    with connections.lend() as conn:
        first = conn.info.backend_pid
    with connections.lend() as conn:
        assert conn.info.backend_pid == first


def test_one_the_server_dropped_while_idle_is_replaced_unseen(
    connections: PgConnections, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connections.lend() as conn:
        dropped = conn.info.backend_pid
    _terminate_other_sessions(database_url)
    monkeypatch.setattr(pg_connections, "IDLE_PING_AFTER", 0.0)  # as if it had sat idle long
    with connections.lend() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid != dropped


def test_one_that_broke_in_use_is_not_lent_again(connections: PgConnections, database_url: str) -> None:
    import psycopg

    with pytest.raises(psycopg.OperationalError), connections.lend() as conn:
        broken = conn.info.backend_pid
        _terminate_other_sessions(database_url)
        conn.execute("SELECT 1")
    with connections.lend() as conn:
        assert conn.info.backend_pid != broken
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_process_opens_at_most_max_open_and_says_so_when_all_stay_busy(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_connections, "MAX_OPEN", 2)
    monkeypatch.setattr(pg_connections, "WAIT_FOR_ONE", 0.2)
    pool = PgConnections(database_url)
    try:
        busy = "all 2 database connections of this process stayed busy"
        with pool.lend(), pool.lend(), pytest.raises(StorageUnavailable, match=busy), pool.lend():
            pass
        with pool.lend() as conn:  # free again
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        pool.close()


def test_a_forked_child_opens_its_own_and_leaves_the_parents_alone(connections: PgConnections) -> None:
    with connections.lend() as conn:
        parent_pid = conn.info.backend_pid
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through its exit code
        code = 1
        try:
            with connections.lend() as conn:
                code = 0 if conn.info.backend_pid != parent_pid else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with connections.lend() as conn:
        assert conn.info.backend_pid == parent_pid
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_statement_sent_now_is_read_later_on_its_own_connection(connections: PgConnections) -> None:
    from psycopg import errors

    with connections.lend() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS t_start (n int primary key)")
    results = connections.start(b"INSERT INTO t_start VALUES ($1) RETURNING n, pg_backend_pid()", [b"7"])
    with connections.lend() as other:  # the statement's connection stays lent until it is read
        assert other.execute("SELECT count(*) FROM t_start WHERE n = 7").fetchone() in ((0,), (1,))
        other_pid = other.info.backend_pid
    (result,) = results()
    assert result.get_value(0, 0) == b"7" and int(result.get_value(0, 1) or b"") != other_pid
    with pytest.raises(errors.UniqueViolation):  # psycopg's own error, as execute raises it
        connections.start(b"INSERT INTO t_start VALUES ($1) RETURNING n, pg_backend_pid()", [b"7"])()
    (again,) = connections.start(b"INSERT INTO t_start VALUES ($1) RETURNING n, pg_backend_pid()", [b"8"])()
    assert again.get_value(0, 0) == b"8"  # the connection went on after the error


def test_a_statement_is_prepared_once_per_connection(connections: PgConnections) -> None:
    query = b"SELECT $1::int + 1"
    for n in range(3):
        (result,) = connections.start(query, [str(n).encode()])()
        assert result.get_value(0, 0) == str(n + 1).encode()
    with connections.lend() as conn:  # the one connection all three used
        prepared = conn.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'mieruka_%'").fetchall()
    assert [row[0] for row in prepared] == [query.decode()]


def test_a_connection_the_server_closed_is_not_used_again(connections: PgConnections, database_url: str) -> None:
    """A server that went away (stopped, restarted, or ended the session) closes its side: the idle
    connection is seen dead before a statement is put on it, and the statement gets another."""
    import time

    import psycopg

    (first,) = connections.start(b"SELECT pg_backend_pid()", [])()
    old = first.get_value(0, 0)
    assert old is not None
    _terminate_other_sessions(database_url)
    deadline = time.monotonic() + 30
    with psycopg.connect(conninfo(database_url), autocommit=True) as admin:
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (int(old),)).fetchone() != (0,):
            assert time.monotonic() < deadline, "the session did not end"
            time.sleep(0.05)
    (second,) = connections.start(b"SELECT pg_backend_pid()", [])()
    assert second.get_value(0, 0) != old
