"""The database goes away under a running server (issue 18 item 4): a real PostgreSQL server of the
test's own, on a free port, is stopped (immediate shutdown, as a crash) and started again under a
real `mieruka run`. Meanwhile /healthz answers 503 naming the database, the API 503
`database_unavailable` with Retry-After, pages a self-reloading HTML page that needs nothing but
the server's static files; afterwards everything works again without restarting mieruka. A SQLite
file locked by another process at run time is the same 503."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, need_service
from tests.conftest import cli as conftest_cli

PASSWORD = "a long password"
DEADLINE = 30.0


class PrivatePostgres:
    """A PostgreSQL server of this test only: initdb into a temporary folder, pg_ctl on a free
    port. PostgreSQL refuses to run as root: then it runs as the `postgres` user."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            need_service("no PostgreSQL server binaries (apt-get install postgresql)")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mieruka-pg-"))
        self.data = self.folder / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bin / tool), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{tool} failed: {done.stdout}{done.stderr}"

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        """As a crash would: no goodbye to the clients."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def remove(self) -> None:
        subprocess.run(
            [*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return conftest_cli(*args, stdin=stdin)


def log_in(url: str, name: str) -> httpx.Client:
    """A browser's session: the login form's CSRF cookie, then the session cookie."""
    client = httpx.Client(base_url=url, headers={"Accept": "text/html"}, timeout=60)
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert token
    response = client.post("/login", data={"csrf_token": token.group(1), "name": name, "password": PASSWORD})
    assert response.status_code == 303, response.text
    return client


def until(what: str, check: Callable[[], object], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def run_job(url: str, bearer: dict[str, str], a: int) -> dict[str, object]:
    job = httpx.post(f"{url}/api/tasks/add/jobs", json={"a": a, "b": 1}, headers=bearer, timeout=60)
    assert job.status_code == 202, job.text
    done = httpx.get(f"{url}/api/jobs/{job.json()['id']}", params={"wait": 30}, headers=bearer, timeout=60).json()
    assert done["status"] == "succeeded" and done["result"] == a + 1, done
    return dict(done)


def assert_unavailable(response: httpx.Response, port: int) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) > 0
    error = response.json()["error"]
    assert error["code"] == "database_unavailable" and f":{port}/" in error["message"], error


def test_postgres_stopped_and_started_under_a_running_server(postgres: PrivatePostgres, tmp_path: Path) -> None:
    url = postgres.create_database("mieruka_down")
    home = tmp_path / "home"
    added = cli(
        "users",
        "add",
        "ada",
        "--role",
        "admin",
        "--password-stdin",
        "--home",
        str(home),
        "--database-url",
        url,
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    made = cli("tokens", "create", "--user", "ada", "--home", str(home), "--database-url", url)
    assert made.returncode == 0, made.stderr
    bearer = {"Authorization": f"Bearer {made.stdout.strip()}"}
    server = ServerProcess("tests/jobs.py:app", home, "--workers", "1", "--database-url", url)
    browser: httpx.Client | None = None
    try:
        server.wait_ready()
        pid = server.process.pid
        job = run_job(server.url, bearer, 1)
        browser = log_in(server.url, "ada")
        assert browser.get("/").status_code == 200

        postgres.stop()

        health = httpx.get(f"{server.url}/healthz", timeout=60)
        assert health.status_code == 503 and health.json()["status"] == "failing", health.text
        assert f"127.0.0.1:{postgres.port}/mieruka_down" in health.json()["database"], health.text
        assert int(health.headers["retry-after"]) > 0
        # The API, for each way in: a submission, a read, a long poll, an event stream, the metrics.
        assert_unavailable(
            httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": 2}, headers=bearer, timeout=60), postgres.port
        )
        assert_unavailable(httpx.get(f"{server.url}/api/jobs", headers=bearer, timeout=60), postgres.port)
        assert_unavailable(
            httpx.get(f"{server.url}/api/jobs/{job['id']}", params={"wait": 5}, headers=bearer, timeout=60),
            postgres.port,
        )
        assert_unavailable(
            httpx.get(f"{server.url}/api/jobs/{job['id']}/events", headers=bearer, timeout=60), postgres.port
        )
        assert_unavailable(httpx.get(f"{server.url}/metrics", headers=bearer, timeout=60), postgres.port)
        # The API asked by a browser's session still answers JSON.
        assert_unavailable(browser.get("/api/tasks", headers={"Accept": "application/json"}), postgres.port)

        for path in ("/", "/jobs", f"/jobs/{job['id']}", "/tasks/add"):
            page = browser.get(path)
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html"), page.text
            assert "The database is unreachable, retrying" in page.text
            refresh = re.search(r'<meta http-equiv="refresh" content="(\d+)">', page.text)
            assert refresh and int(refresh.group(1)) > 0, page.text
            assert "<script" not in page.text
            # Everything the page loads comes from this server, and comes while the database is away.
            for link in re.findall(r'(?:href|src)="([^"]+)"', page.text):
                assert link.startswith("/"), link
                if link.startswith("/static/"):
                    assert browser.get(link).status_code == 200, link
        posted = browser.post("/tasks/add", data={"a": "3"})  # a form: the page too, not a 500
        assert posted.status_code == 503 and "The database is unreachable" in posted.text

        postgres.start()

        until("/healthz answers 200 again", lambda: httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200)
        until(
            "the API answers again",
            lambda: httpx.get(f"{server.url}/api/jobs", headers=bearer, timeout=10).status_code == 200,
        )
        run_job(server.url, bearer, 5)  # a job submitted after the database came back runs
        until("pages are back", lambda: browser.get("/").status_code == 200)
        assert "The database is unreachable" not in browser.get("/jobs").text
        assert server.process.pid == pid and server.process.poll() is None  # never restarted
        assert "unhandled error" not in server.output(), server.output()
        assert "Traceback" not in server.output(), server.output()
    except BaseException:
        print(server.output())
        raise
    finally:
        if browser is not None:
            browser.close()
        server.stop()


def test_a_sqlite_file_locked_at_run_time_is_503_then_works_again(tmp_path: Path) -> None:
    """Another process takes the write lock of the running server's SQLite file and keeps it past
    the server's busy wait (database_busy_timeout, 30 s by default, 2 s here): a submission is 503
    database_unavailable naming the file, a job is still read, and once the lock is let go
    submissions run again."""
    home = tmp_path / "home"
    server = ServerProcess("tests/jobs.py:app", home, "--workers", "1", env={"MIERUKA_DATABASE_BUSY_TIMEOUT": "2"})
    try:
        server.wait_ready()
        run_job(server.url, {}, 1)
        database = home / "mieruka.db"
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(database)], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            response = httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": 2}, timeout=120)
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "database_unavailable" and str(database) in error["message"], error
            assert int(response.headers["retry-after"]) > 0
            # A write through SQLAlchemy, the first this server makes (it loads SQLAlchemy then, after
            # its error handlers were set up): 503 too, answered and ended there, no traceback logged.
            rule = {"events": ["job.failed"], "target": "webhook:http://127.0.0.1:9/x"}
            response = httpx.post(f"{server.url}/api/notifications/rules", json=rule, timeout=120)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "database_unavailable"
            # Reads wait for no writer: the job is read on the event loop at once, as ever.
            response = httpx.get(f"{server.url}/api/jobs/1", timeout=120)
            assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
        finally:
            holder.kill()
            holder.wait()
            if holder.stdout is not None:
                holder.stdout.close()
        until(
            "submissions work again",
            lambda: httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": 0}, timeout=60).status_code == 202,
        )
        run_job(server.url, {}, 7)
        assert "unhandled error" not in server.output(), server.output()
        assert "Traceback" not in server.output(), server.output()
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()


# Holds the write lock until killed (WAL: readers go on, every writer waits, then gives up).
LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(600)
"""


def test_the_database_error_classes() -> None:
    """What counts as the database being away, and what is a plain error (a bug stays a 500)."""
    import sqlalchemy as sa

    from mieruka.errors import DatabaseUnavailable
    from mieruka.store.outage import is_outage, unavailable

    folder = Path(tempfile.mkdtemp())
    try:
        path = folder / "x.db"
        conn = sqlite3.connect(path)
        with pytest.raises(sqlite3.Error) as syntax:
            conn.execute("SELEC 1")
        assert not is_outage(syntax.value)
        conn.execute("CREATE TABLE t (a INTEGER UNIQUE)")
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(sqlite3.IntegrityError) as duplicate:
            conn.execute("INSERT INTO t VALUES (1)")
        assert not is_outage(duplicate.value)
        conn.close()
        path.write_bytes(b"not a database at all" * 100)
        engine = sa.create_engine(f"sqlite:///{path}")
        with pytest.raises(sa.exc.DatabaseError) as garbage, engine.connect() as c:
            c.exec_driver_sql("SELECT * FROM sqlite_master").all()
        engine.dispose()
        problem = unavailable(garbage.value, f"sqlite:///{path}")
        assert isinstance(problem, DatabaseUnavailable) and str(path) in problem.message
        assert "file is not a database" in problem.message
        assert unavailable(ValueError("x"), "sqlite://") is None
    finally:
        shutil.rmtree(folder)
