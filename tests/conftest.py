"""Shared fixtures. Tests needing PostgreSQL skip on a bare machine and fail instead when
MIERUKA_REQUIRE_SERVICES=1 (CI sets it)."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlparse

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page, Route
    from starlette.types import ASGIApp

    from mieruka import App
    from tests.celery_worker import CeleryWorker

REQUIRE_SERVICES = os.environ.get("MIERUKA_REQUIRE_SERVICES") == "1"
# The developer's own settings (MIERUKA_HOME, MIERUKA_WORKERS, ...) would change what the tests run:
# only the variables that steer the test run itself stay.
_RUN_VARIABLES = ("MIERUKA_REQUIRE_SERVICES", "MIERUKA_TEST_", "MIERUKA_DEV_VENV", "MIERUKA_ALLOW_NO_TESTS")
for _name in [n for n in os.environ if n.startswith("MIERUKA_") and not n.startswith(_RUN_VARIABLES)]:
    del os.environ[_name]
# The servers, workers and CLI commands the tests start hash passwords with 1 MiB, not 64 MiB (a
# quarter of a second of CPU per hash, hundreds of them): still argon2id. The quick start and the
# tests that clear MIERUKA_* keep the default.
os.environ["MIERUKA_PASSWORD_HASH_MEMORY"] = "1024"
# The commands the tests start speak the locale's language (LANG=ja_JP.UTF-8: Japanese) and the tests
# read their English, whatever the developer's locale; a test passes LANG to hear another language.
for _name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
    os.environ.pop(_name, None)
os.environ["LANG"] = "C.UTF-8"
POSTGRES_ADMIN_URL = os.environ.get(
    "MIERUKA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MARIADB_ADMIN_URL = os.environ.get("MIERUKA_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
TESTS = Path(__file__).parent
BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", autouse=True)
def in_process_requests_come_from_this_machine() -> Iterator[None]:
    """Starlette's TestClient says it is "testclient" talking to "testserver": neither is an address
    of this machine, and a server with no users trusts only its own machine. In-process requests
    here are what a browser on the server's machine sends (127.0.0.1 to 127.0.0.1:8000)."""
    from starlette.testclient import TestClient

    original = TestClient.__init__

    def local(
        self: TestClient,
        app: ASGIApp,
        base_url: str = "http://127.0.0.1:8000",
        *args: Any,  # the rest of TestClient's arguments, passed on as they came
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("client", ("127.0.0.1", 50000))
        original(self, app, base_url, *args, **kwargs)

    TestClient.__init__ = local  # type: ignore[method-assign]
    yield
    TestClient.__init__ = original  # type: ignore[method-assign]


def need_service(reason: str) -> None:
    """Skip, or fail when services are required."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@contextmanager
def fresh_postgres_database(prefix: str = "mieruka_test") -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards (skips or fails when unreachable)."""
    with _fresh_database("PostgreSQL", POSTGRES_ADMIN_URL, "psycopg", "postgres", prefix, " WITH (FORCE)") as url:
        yield url


@contextmanager
def fresh_mariadb_database(prefix: str = "mieruka_test") -> Iterator[str]:
    """A new, empty MariaDB database (SQLAlchemy URL), dropped afterwards (skips or fails when
    MariaDB or pymysql is missing)."""
    with _fresh_database("MariaDB", MARIADB_ADMIN_URL, "pymysql", "mysql", prefix) as url:
        yield url


@contextmanager
def _fresh_database(
    server: str, admin_url: str, driver: str, extra: str, prefix: str, drop_options: str = ""
) -> Iterator[str]:
    import importlib.util

    import sqlalchemy as sa

    if importlib.util.find_spec(driver) is None:
        need_service(f"{driver} is not installed (pip install 'mieruka[{extra}]')")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    except sa.exc.OperationalError as exc:
        admin.dispose()
        need_service(f"{server} is not reachable at {admin_url}: {str(exc).splitlines()[0]}")
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}{drop_options}")
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    with fresh_postgres_database() as url:
        yield url


def clean_postgres(url: str) -> None:
    """Empty every mieruka table so each test starts from nothing."""
    import sqlalchemy as sa

    from mieruka.store.sql import SqlJobStore
    from mieruka.store.tables import metadata

    store = SqlJobStore(url)
    store.migrate()
    store.close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        empty_tables(conn, list(metadata.tables))  # every table of ours, whoever adds one
        owned = conn.exec_driver_sql(
            "SELECT s.relname FROM pg_class s JOIN pg_depend d ON d.objid = s.oid "
            "JOIN pg_class t ON d.refobjid = t.oid WHERE s.relkind = 'S' AND t.relname = ANY(%(tables)s)",
            {"tables": list(metadata.tables)},
        )
        for (sequence,) in owned.all():  # ids start at 1 again
            conn.exec_driver_sql(f'ALTER SEQUENCE "{sequence}" RESTART')
    engine.dispose()


def empty_tables(conn: Any, names: list[str]) -> None:
    """DELETE every row of mieruka's tables `names` and of the tables that refer to them (as
    TRUNCATE ... CASCADE), those that refer to others first: on tables this small, ten times
    quicker than TRUNCATE, which makes each table's files anew (0.4 s a test)."""
    from mieruka.store.tables import metadata

    chosen = set(names)
    while True:
        referring = {t.name for t in metadata.sorted_tables for fk in t.foreign_keys if fk.column.table.name in chosen}
        if referring <= chosen:
            break
        chosen |= referring
    for table in reversed(metadata.sorted_tables):
        if table.name in chosen:
            conn.exec_driver_sql(f'DELETE FROM "{table.name}"')


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The job store URL: SQLite in the test's folder, or a clean PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"
    url: str = request.getfixturevalue("postgres_url")
    clean_postgres(url)
    return url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module that sets ENGINES = ("local", "celery") runs its `app` tests on both engines (Celery
    on PostgreSQL only: see pytest_collection_modifyitems)."""
    engines = getattr(metafunc.module, "ENGINES", None)
    if metafunc.definition.get_closest_marker("local_engine"):
        engines = None
    if engines and in_process(metafunc.definition):
        engines = tuple(dict.fromkeys("threads" if kind == "local" else kind for kind in engines))
    if engines and "app" in metafunc.fixturenames:
        metafunc.parametrize("engine_kind", engines, indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Celery workers share the store with the servers over the network: PostgreSQL, not SQLite.
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        celery_on_sqlite = params.get("engine_kind") == "celery" and params.get("database_url") == "sqlite"
        (drop if celery_on_sqlite else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    items[:] = longest_modules_first(items)


def pytest_configure(config: pytest.Config) -> None:
    # xdist would hand out the modules (--dist loadfile) by their number of tests: ours go in the
    # order longest_modules_first leaves them.
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the run's controller, not each test process
        session.config.stash[_ROOT_FILES_KEY] = _root_files()


def pytest_collection_finish(session: pytest.Session) -> None:
    # What collection imported (the package, its frameworks, every test module) lives as long as
    # the test process: the collector no longer walks it at each full collection (6% of the CPU of
    # the in-process tests).
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test (or a job it ran, whose working directory is the repository) that writes a file by a
    relative path litters the checkout: the run fails, naming the files."""
    before = session.config.stash.get(_ROOT_FILES_KEY, None)
    if before is None:
        return
    left = sorted(_root_files() - before)
    if left:
        writer = session.config.get_terminal_writer()
        writer.line()
        writer.line(f"tests left files in the repository's root (write to tmp_path instead): {left}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _root_files() -> frozenset[str]:
    return frozenset(p.name for p in TESTS.parent.iterdir() if p.is_file())


_ROOT_FILES_KEY = pytest.StashKey[frozenset[str]]()


def longest_modules_first(items: list[pytest.Item]) -> list[pytest.Item]:
    """The modules by their total time in tests/durations.json, longest first, so that the parallel
    run ends on short modules (scripts/test_durations.py makes the file). A module not in it counts
    as its number of tests at the suite's mean time per test."""
    import json

    known: dict[str, float] = json.loads((TESTS / "durations.json").read_text())
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    timed = [m for m in modules if m in known]
    per_test = sum(known[m] for m in timed) / max(sum(len(modules[m]) for m in timed), 1)
    order = sorted(modules, key=lambda m: -known.get(m, per_test * len(modules[m])))
    return [item for module in order for item in modules[module]]


def in_process(node: pytest.Item) -> bool:
    """A test marked in_process (or in a module so marked) runs its jobs on threads of the test
    process (executor 'threads'): no worker interpreters to start; unless marked worker_processes."""
    return node.get_closest_marker("in_process") is not None and node.get_closest_marker("worker_processes") is None


@pytest.fixture
def engine_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "threads" if in_process(request.node) else "local"))


@pytest.fixture
def app(tmp_path: Path, database_url: str, engine_kind: str, request: pytest.FixtureRequest) -> Iterator[App]:
    """tests/jobs.py's app, started on a fresh store with two workers: local worker processes,
    threads of this process (engine_kind "threads": tests marked in_process), or (engine_kind
    "celery") the module's Celery worker, see tests/celery_worker.py."""
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    if engine_kind == "celery":
        worker: CeleryWorker = request.getfixturevalue("celery_worker")
        worker.reset()
        jobs_app.configure(
            home=str(worker.home),
            database_url=worker.database_url,
            executor="celery",
            broker_url=worker.broker_url,
            poll_interval=0.2,
            prune_interval=3600,
        )
    else:
        jobs_app.configure(
            home=str(tmp_path / "home"),
            database_url=database_url,
            executor="threads" if engine_kind == "threads" else "local",
            workers=2,
            poll_interval=0.2,
            prune_interval=3600,
        )
    jobs_app.start()
    try:
        yield jobs_app
    finally:
        jobs_app.stop()
        jobs_app._settings = None


@pytest.fixture
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with small costs, so tests that log in many times stay fast (still real argon2)."""
    from argon2 import PasswordHasher

    from mieruka.auth import accounts

    monkeypatch.setattr(accounts, "new_hasher", lambda memory_cost: PasswordHasher(1, 1024, 1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A real `mieruka run` server in a subprocess on a free port; its output is shown on failure.
    A test may kill it (kill -9, after a SIGSTOP if it likes) and start it again on the same port and
    home."""

    def __init__(self, app_ref: str, home: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log_path = home.parent / f"server-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("w")
        self._command = [
            sys.executable,
            "-m",
            "mieruka.cli",
            "run",
            app_ref,
            "--port",
            str(self.port),
            "--home",
            str(home),
            *extra,
        ]
        self._env = {**os.environ, "PYTHONPATH": str(TESTS.parent), **(env or {})}
        self.starts = 0
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        if self.starts > 1:
            self._log.write(f"\n--- start {self.starts} ---\n")
            self._log.flush()
        return subprocess.Popen(
            self._command, cwd=TESTS.parent, stdout=self._log, stderr=subprocess.STDOUT, env=self._env
        )

    def wait_ready(self, timeout: float = 60) -> None:
        wait_healthy(self.url, self.process, self.output, timeout)

    def kill(self) -> None:
        """SIGKILL the server (stopped with SIGSTOP first or not): its workers run on."""
        self.process.kill()
        self.process.wait()

    def restart(self) -> None:
        """Start it again (after kill) on the same port and home, and wait until it is ready."""
        self.process = self._spawn()
        self.wait_ready()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def wait_healthy(url: str, process: subprocess.Popen[bytes], output: Callable[[], str], timeout: float = 60) -> None:
    """Until GET /healthz answers 200; the server's output in the error if it exits or never does.
    Each request may take long: on a loaded machine a server's first answer took over a second, and
    a one-second request timeout then never saw it ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{output()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=max(1.0, min(15.0, deadline - time.monotonic()))).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"server not ready after {timeout}s:\n{output()}")


class _Subprocess(Protocol):
    def wait_ready(self) -> None: ...
    def stop(self) -> None: ...
    def output(self) -> str: ...


P = TypeVar("P", bound=_Subprocess)
T = TypeVar("T")


@contextmanager
def shared_server(proc: P, request: pytest.FixtureRequest) -> Iterator[P]:
    """A server (or worker) shared by a module's tests; its output is printed if any of them failed."""
    failed_before = request.session.testsfailed
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()
        if request.session.testsfailed > failed_before:
            print(proc.output())


@contextmanager
def running_server(
    home: Path, *extra: str, app_ref: str = "tests/jobs.py:app", env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    """A ready server; stopped afterwards, its output printed if the test failed meanwhile."""
    proc = ServerProcess(app_ref, home, *extra, env=env)
    try:
        proc.wait_ready()
        yield proc
    except BaseException:
        proc.stop()
        print(proc.output())
        raise
    proc.stop()


def assert_collector_on(server: ServerProcess) -> None:
    """A job of tests/jobs.py's `collector` ran with the garbage collector on and the start frozen
    (a server or worker starts with it paused, and turns it on once it runs)."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        job_id = client.post("/api/tasks/collector/jobs", json={}).json()["id"]
        job = client.get(f"/api/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] == "succeeded", job
    assert job["result"]["enabled"] is True
    assert job["result"]["frozen"] > 10_000


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server running tests/jobs.py's app with two workers."""
    with running_server(tmp_path / "server-home", "--workers", "2") as proc:
        yield proc


def wait_for(check: Callable[[], T], seconds: float = 30.0, what: str = "the condition") -> T:
    """What `check` returns once it is truthy; polled, with a generous deadline."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:g}s for {what}")
        time.sleep(0.02)


def wait_for_file(path: Path, timeout: float = 20) -> str:
    """The file's text once something was written to it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was never written")


# -- a real browser: Debian's Chromium through Playwright ------------------------------------
CHROMIUM = "/usr/bin/chromium"
UI_WAIT = 60_000  # ms: a page on a loaded 2-core machine running three test processes and their browsers
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class _Chromium:
    """One Playwright driver and one Chromium for the whole test process, launched when first
    asked for (each start and close of a node driver and a browser is about 0.9 s of CPU), and again should
    the browser have gone away."""

    def __init__(self) -> None:
        self._playwright: Any = None
        self._browser: Browser | None = None
        self._parked: asyncio.AbstractEventLoop | None = None

    def park(self) -> None:
        """Between the modules that use it: Playwright's sync API keeps its event loop marked as
        running in this thread (it runs in a greenlet), which would refuse other tests' asyncio.run."""
        self._parked = asyncio._get_running_loop()
        asyncio._set_running_loop(None)

    def _unpark(self) -> None:
        if self._parked is not None:
            asyncio._set_running_loop(self._parked)
            self._parked = None

    def get(self) -> Browser:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            need_service("the playwright package is not installed (pip install playwright)")
        if not shutil.which(CHROMIUM):
            need_service(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
        self._unpark()
        if self._playwright is None:
            self._playwright = sync_playwright().start()
        if self._browser is None or not self._browser.is_connected():
            self._browser = self._playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        return self._browser

    def close(self) -> None:
        self._unpark()
        if self._browser is not None and self._browser.is_connected():
            self._browser.close()
        if self._playwright is not None:
            self._playwright.stop()


@pytest.fixture(scope="session")
def _chromium() -> Iterator[_Chromium]:
    chromium = _Chromium()
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def browser(_chromium: _Chromium) -> Iterator[Browser]:
    """The test process's Chromium; what a module opened in it (pages, contexts, their live
    streams) is closed when the module ends."""
    browser = _chromium.get()
    try:
        yield browser
    finally:
        if browser.is_connected():
            for context in browser.contexts:
                context.close()
        _chromium.park()


def open_page(browser: Browser, server: ServerProcess, outside: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    local = urlparse(server.url).netloc

    def guard(route: Route) -> None:
        url = route.request.url
        if urlparse(url).netloc != local and not url.startswith("data:"):
            outside.append(url)
            route.abort()
        else:
            route.continue_()

    page.route("**/*", guard)
    return page


def text_of(locator: Locator) -> str:
    """The element's textContent (Playwright types it optional: only a document or doctype has none)."""
    text = locator.text_content()
    assert text is not None, locator
    return text


def attribute_of(locator: Locator, name: str) -> str:
    """The element's attribute `name`, which must be there."""
    value = locator.get_attribute(name)
    assert value is not None, f"{locator} has no {name}"
    return value


# -- the Celery executor: a private Redis and one worker per module --------------------------------
@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    from tests.celery_worker import private_redis

    with private_redis() as url:
        yield url


@pytest.fixture(scope="module")
def celery_worker(
    request: pytest.FixtureRequest, broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    """A `mieruka worker` for tests/jobs.py (concurrency 2) on its own PostgreSQL database."""
    from tests.celery_worker import CeleryWorker

    home = tmp_path_factory.mktemp("celery") / "home"
    with (
        fresh_postgres_database("mieruka_celery") as url,
        shared_server(CeleryWorker(home, url, broker_url, "--concurrency", "2"), request) as worker,
    ):
        yield worker


def cli(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """`mieruka ARGS` as a newcomer's shell runs it: none of this run's MIERUKA_* settings, `extra_env` added."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env["PYTHONPATH"] = str(TESTS.parent)
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "mieruka.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        env=env,
        timeout=120,
    )


def mieruka_cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`mieruka ARGS --home HOME` as a newcomer's shell runs it (see cli)."""
    return cli(*args, "--home", str(home), stdin=stdin)
