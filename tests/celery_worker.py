"""A real `mieruka worker` (Celery) in a subprocess, and a private Redis server as its broker, for
the tests that run on the Celery executor. One worker per test module: the module's tests share
it, each on emptied tables (ids keep counting, so a message left over from an earlier test names
a job that no longer exists and is dropped)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.conftest import TESTS, empty_tables, free_port, need_service

if TYPE_CHECKING:
    from mieruka import App


class RedisServer:
    """A redis-server of our own on a free port, that a test can stop (with a real signal) and
    start again on the same port: other test runs on this machine never see our messages (a
    cancel broadcast names a job id, and ids repeat across databases)."""

    def __init__(self, port: int | None = None, keep_in: Path | None = None) -> None:
        """`keep_in`: a folder where it keeps its data (append-only file, synced at every write),
        so that it comes back with it; else it comes back empty."""
        binary = shutil.which("redis-server")
        if binary is None:
            need_service("redis-server is not installed (apt-get install redis-server)")
        assert binary is not None
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.persistence = (
            ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(keep_in)]
            if keep_in
            else ["--appendonly", "no"]
        )

    def start(self) -> None:
        """Start it and wait until it answers."""
        import redis

        self.process = process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *self.persistence],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise AssertionError("redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def private_redis(port: int | None = None) -> Iterator[str]:
    """A running RedisServer's URL, for as long as the block lasts."""
    server = RedisServer(port)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


class CeleryWorker:
    def __init__(self, home: Path, database_url: str, broker_url: str, *extra: str, host: str | None = None) -> None:
        """`host`: run it under that host name (in a UTS namespace of its own), as on another machine."""
        self.home = home
        self.database_url = database_url
        self.broker_url = broker_url
        home.mkdir(parents=True, exist_ok=True)
        self.log_path = home.parent / f"worker-{home.name}.log"
        self._log = self.log_path.open("w")
        elsewhere = ["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh"] if host else []
        self.process = subprocess.Popen(
            [
                *elsewhere,
                sys.executable,
                "-m",
                "mieruka.cli",
                "worker",
                "tests/jobs.py:app",
                "--home",
                str(home),
                "--database-url",
                database_url,
                "--broker-url",
                broker_url,
                "--loglevel",
                "warning",
                *extra,
            ],
            cwd=TESTS.parent,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
        )

    def jobs_app(self, **overrides: object) -> App:
        """tests/jobs.py's app, configured afresh to send its jobs to this worker (not started)."""
        from tests.jobs import app

        app._settings = None
        app.configure(
            **{
                "home": str(self.home),
                "database_url": self.database_url,
                "executor": "celery",
                "broker_url": self.broker_url,
                **overrides,
            }
        )
        return app

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def pids(self) -> set[int]:
        """`mieruka worker` (the supervisor) and the Celery worker it runs (the consumer)."""
        import psutil

        try:
            return {self.process.pid, *(c.pid for c in psutil.Process(self.process.pid).children())}
        except psutil.NoSuchProcess:
            return set()

    def consumer_pid(self) -> int:
        """The Celery worker's main process, the one that beats in the store."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                rows = {row[0] for row in conn.exec_driver_sql("SELECT pid FROM engines").all()}
        finally:
            engine.dispose()
        found = (self.pids() - {self.process.pid}) & rows
        assert len(found) == 1, (found, rows)
        return found.pop()

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the worker beats in the store (it does once its pool is up)."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.database_url)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()}")
                try:
                    with engine.connect() as conn:
                        rows = conn.exec_driver_sql("SELECT pid FROM engines").all()
                    if any(row[0] in self.pids() for row in rows):
                        return
                except sa.exc.ProgrammingError:
                    pass  # tables not created yet
                time.sleep(0.05)
        finally:
            engine.dispose()
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.output()}")

    def reset(self) -> None:
        """Empty the job tables; keep the worker's liveness row."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.database_url)
        with engine.begin() as conn:
            empty_tables(conn, ["jobs", "job_logs", "artifacts", "schedules", "pools", "pool_events"])
        engine.dispose()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@contextmanager
def on_celery(
    app: App, home: Path, database_url: str, broker_url: str, **settings: Any
) -> Iterator[list[CeleryWorker]]:
    """The app set up for the Celery executor for one test. Workers the test starts go in the list
    it gets: they print what they said if the test fails, and stop with it, after the app."""
    workers: list[CeleryWorker] = []
    app._settings = None
    app.configure(home=str(home), database_url=database_url, executor="celery", broker_url=broker_url, **settings)
    try:
        yield workers
    except BaseException:
        for worker in workers:
            print(worker.output())
        raise
    finally:
        app.stop()
        app._settings = None
        for worker in workers:
            worker.stop()
