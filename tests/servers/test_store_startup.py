"""A database that cannot be used is one line before anything is served (issue 18 item 6): every
command that opens the store (run, demo, worker, users, tokens, db upgrade) says what is wrong
with which database and exits non-zero, without a traceback and without printing "serving".
The faults are real: another process holding the write lock (BEGIN EXCLUSIVE), a real database
overwritten with garbage in the middle, a file that is no database, a folder this user may not
write, a PostgreSQL port nobody listens on, a PostgreSQL database that does not exist."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_ADMIN_URL, TESTS, free_port, need_service

COMMANDS: dict[str, Callable[[Path, str], list[str]]] = {
    "run": lambda home, url: [
        "run",
        "tests/jobs.py:app",
        "--port",
        str(free_port()),
        "--home",
        str(home),
        "--database-url",
        url,
    ],
    "demo": lambda home, url: ["demo", "--port", str(free_port()), "--home", str(home), "--database-url", url],
    "worker": lambda home, url: [
        "worker",
        "tests/jobs.py:app",
        "--home",
        str(home),
        "--database-url",
        url,
        "--broker-url",
        f"redis://127.0.0.1:{free_port()}/0",
    ],
    "users": lambda home, url: ["users", "ls", "--home", str(home), "--database-url", url],
    "tokens": lambda home, url: ["tokens", "ls", "--home", str(home), "--database-url", url],
    "db upgrade": lambda home, url: ["db", "upgrade", "--home", str(home), "--database-url", url],
}


def mieruka(
    args: list[str], as_user: list[str] | None = None, settings: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env["PYTHONPATH"] = str(TESTS.parent)
    env.update(settings or {})
    return subprocess.run(
        [*(as_user or []), sys.executable, "-m", "mieruka.cli", *args],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        env=env,
        timeout=120,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *wanted: str) -> str:
    """Exit != 0, nothing served, and stderr one line saying each of `wanted`."""
    said = result.stderr.strip()
    assert result.returncode != 0, (result.stdout, said)
    assert "serving" not in result.stdout and "Traceback" not in said, (result.stdout, said)
    assert len(said.splitlines()) == 1 and said.startswith("mieruka: "), said
    for text in wanted:
        assert text in said, said
    return said


def real_database(path: Path) -> None:
    """A database made by mieruka, with enough jobs to fill many pages."""
    from mieruka.store.base import NewJob
    from mieruka.store.sql import SqlJobStore

    store = SqlJobStore(f"sqlite:///{path}")
    store.migrate()
    for i in range(400):
        store.create_job(NewJob("add", {"a": i, "note": "x" * 400}))
    store.close()
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


@pytest.fixture(params=list(COMMANDS))
def command(request: pytest.FixtureRequest) -> Callable[[Path, str], list[str]]:
    return COMMANDS[request.param]


def test_a_locked_database_file(tmp_path: Path, command: Callable[[Path, str], list[str]]) -> None:
    path = tmp_path / "home" / "mieruka.db"
    path.parent.mkdir()
    real_database(path)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        # The check waits for the lock as a write would (database_busy_timeout, at most 5 s).
        result = mieruka(command(path.parent, f"sqlite:///{path}"), settings={"MIERUKA_DATABASE_BUSY_TIMEOUT": "0.5"})
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    assert_one_line(result, str(path), "locked by another process", "still after 0.5s")


LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///"])
def test_an_in_memory_database(tmp_path: Path, command: Callable[[Path, str], list[str]], url: str) -> None:
    """Every connection to an in-memory SQLite database sees an empty one of its own: each command,
    and the accounts' too, refuses it in one line (each was a traceback, "no such table")."""
    assert_one_line(mieruka(command(tmp_path / "home", url)), repr(url), "in memory", "sqlite:///mieruka.db")


def test_a_home_that_is_a_file(tmp_path: Path, command: Callable[[Path, str], list[str]]) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    assert_one_line(mieruka(command(home, f"sqlite:///{home}/mieruka.db")), str(home))


def test_an_app_started_on_an_in_memory_database_says_why_not(tmp_path: Path) -> None:
    from mieruka import App
    from mieruka.errors import ConfigError

    app = App("memory", home=tmp_path / "home", database_url="sqlite://", executor="threads")
    with pytest.raises(ConfigError, match="is in memory"):
        app.start()


def test_a_database_damaged_in_the_middle(tmp_path: Path, command: Callable[[Path, str], list[str]]) -> None:
    path = tmp_path / "home" / "mieruka.db"
    path.parent.mkdir()
    real_database(path)
    size = path.stat().st_size
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    assert size > 40 * page  # the middle is far from the header
    with path.open("r+b") as file:
        file.seek((size // 2) // page * page)
        file.write(os.urandom(4 * page))
    assert_one_line(mieruka(command(path.parent, f"sqlite:///{path}")), str(path), "damaged")


def test_a_file_that_is_not_a_database(tmp_path: Path, command: Callable[[Path, str], list[str]]) -> None:
    path = tmp_path / "home" / "mieruka.db"
    path.parent.mkdir()
    path.write_text("name,value\nada,1\n" * 500)
    assert_one_line(mieruka(command(path.parent, f"sqlite:///{path}")), str(path), "not a SQLite database")


@pytest.fixture
def unwritable_folder() -> Iterator[tuple[Path, list[str]]]:
    """A folder this user may not write in, holding its database (SQLite writes its log beside
    it), and how to run a command as that user: as root, whom permissions do not stop, the
    command runs as `nobody`."""
    as_user: list[str] = []
    top = Path(tempfile.mkdtemp(prefix="mieruka-ro-"))
    folder = top / "home"
    folder.mkdir()
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(top, nobody.pw_uid, nobody.pw_gid)
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    real_database(folder / "mieruka.db")  # made by that user, before the folder was closed
    if as_user:
        os.chown(folder / "mieruka.db", nobody.pw_uid, nobody.pw_gid)
    top.chmod(0o755)
    folder.chmod(0o555)
    try:
        yield folder, as_user
    finally:
        folder.chmod(0o755)
        shutil.rmtree(top)


def test_a_folder_without_write_permission(
    unwritable_folder: tuple[Path, list[str]], command: Callable[[Path, str], list[str]]
) -> None:
    folder, as_user = unwritable_folder
    path = folder / "mieruka.db"
    assert_one_line(mieruka(command(folder, f"sqlite:///{path}"), as_user), str(folder), "may not write")
    # A home below it that cannot be made: the same one line, naming what could not be made.
    below = folder / "below"
    assert_one_line(mieruka(command(below, f"sqlite:///{below / 'mieruka.db'}"), as_user), str(below))


def test_postgres_on_a_port_nobody_listens_on(tmp_path: Path, command: Callable[[Path, str], list[str]]) -> None:
    pytest.importorskip("psycopg")
    port = free_port()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/mieruka"
    assert_one_line(mieruka(command(tmp_path / "home", url)), f"127.0.0.1:{port}/mieruka", "Connection refused")


def test_postgres_without_that_database(tmp_path: Path, command: Callable[[Path, str], list[str]]) -> None:
    pytest.importorskip("psycopg")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    host_port = base.rsplit("@", 1)[-1]
    host, _, port = host_port.partition(":")
    try:
        socket.create_connection((host, int(port or 5432)), timeout=5).close()
    except OSError:
        need_service(f"PostgreSQL is not reachable at {host_port}")
    url = f"{base}/no_such_database_here"
    assert_one_line(mieruka(command(tmp_path / "home", url)), "no_such_database_here", "does not exist")


def test_a_database_that_refuses_the_schema(tmp_path: Path) -> None:
    """PostgreSQL answers but this user may not create the tables: the start-up's migration fails,
    in one line naming the database, before "serving"."""
    pytest.importorskip("psycopg")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from tests.conftest import fresh_postgres_database

    role = f"mieruka_no_create_{os.getpid()}"
    with fresh_postgres_database("mieruka_refuse") as url:
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
                conn.exec_driver_sql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            limited = make_url(url).set(username=role).render_as_string(hide_password=False)
            name = make_url(url).database
            assert name
            result = mieruka(COMMANDS["run"](tmp_path / "home", limited))
            assert_one_line(result, name, "permission denied")
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"REASSIGN OWNED BY {role} TO postgres")
                conn.exec_driver_sql(f"DROP OWNED BY {role}")
            admin.dispose()
    cleanup = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with cleanup.connect() as conn:
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
    cleanup.dispose()
