"""A Celery worker rides out its broker's outage (issue 18, item 1): Redis taken away (SIGTERM or
SIGKILL) while the worker runs a job and waits for another, started again on the same port after a
few seconds. The worker stays up, its running job ends as it would have, and it takes the jobs
submitted after. (What `mieruka worker` does when its Celery worker dies or is told to stop is
tests/unit/test_celery_supervisor.py's, on the same set-up.)"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mieruka import JobStatus
from tests.celery_worker import CeleryWorker, RedisServer, on_celery
from tests.conftest import fresh_postgres_database

if TYPE_CHECKING:
    from mieruka import App


def until(condition: Callable[..., object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.05)


@contextmanager
def own_redis(keep_in: Path | None = None) -> Iterator[RedisServer]:
    """A redis-server of this test, which it may stop and start again."""
    server = RedisServer(keep_in=keep_in)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def on_a_worker(
    tmp_path: Path, redis_server: RedisServer, concurrency: int, **settings: Any
) -> Iterator[tuple[App, CeleryWorker]]:
    """tests/jobs.py's app started on the Celery executor (a fresh PostgreSQL database, the test's
    Redis), with one `mieruka worker` of `concurrency` pool processes, ready."""
    from tests.jobs import app

    with (
        fresh_postgres_database("mieruka_outage") as database_url,
        on_celery(app, tmp_path / "home", database_url, redis_server.url, **settings) as workers,
    ):
        worker = CeleryWorker(
            tmp_path / "worker-home", database_url, redis_server.url, "--concurrency", str(concurrency)
        )
        workers.append(worker)
        worker.wait_ready()
        app.start()
        yield app, worker


@pytest.mark.parametrize(
    "signum, outage", [(signal.SIGTERM, 1.5), (signal.SIGKILL, 8.0)], ids=["SIGTERM, 1.5 s", "SIGKILL, 8 s"]
)
def test_a_worker_with_a_job_and_a_free_slot_rides_out_a_broker_outage(
    tmp_path: Path, signum: int, outage: float
) -> None:
    with (
        own_redis() as redis_server,
        on_a_worker(tmp_path, redis_server, 3, broker_check_interval=0.5) as (app, worker),
    ):
        running = app.submit("sleep", seconds=outage + 4)
        cancelled = app.submit("sleep", seconds=120)
        for job in (running, cancelled):
            until(lambda job=job: app.get_job(job.id).status is JobStatus.RUNNING, 30, "the jobs run")
        redis_server.stop(signum)
        app.engine.cancel(cancelled.id)  # no broadcast reaches the worker: it finds it in the store
        time.sleep(outage)
        redis_server.start()
        done = app.wait(running, 60)
        assert done.status is JobStatus.SUCCEEDED and done.attempts == 1, done
        assert app.wait(cancelled, 60).status is JobStatus.CANCELLED
        after = app.wait(app.submit("add", a=1), 60)
        assert after.status is JobStatus.SUCCEEDED and after.result == 3, after
        assert worker.process.poll() is None, "the worker is still up"
        assert "Unrecoverable error" not in worker.output()
        assert "(1/None)" in worker.output()  # "Trying again in 2 s (try 1 of no limit)": any outage is waited out


def test_messages_a_worker_held_when_the_broker_went_away_go_back_when_it_returns(tmp_path: Path) -> None:
    """A job held back by its task's concurrency limit waits in the worker for its countdown,
    unacknowledged; a lost connection gives such messages back to the queue, which fails while
    Redis is down. Redis keeps its data here, so no server sends the queued jobs again: unless the
    worker gives the message back once it is connected again, the second job waits for the
    visibility timeout (an hour)."""
    with (
        own_redis(keep_in=tmp_path) as redis_server,
        on_a_worker(tmp_path, redis_server, 2, broker_check_interval=0.5) as (app, worker),
    ):
        first = app.submit("one_at_a_time", seconds=6)
        until(lambda: app.get_job(first.id).status is JobStatus.RUNNING, 30, "the first job runs")
        second = app.submit("one_at_a_time", seconds=0.1)  # held back: one at a time
        time.sleep(1)
        redis_server.stop(signal.SIGKILL)
        time.sleep(3)
        redis_server.start()
        for job in (first, second):
            done = app.wait(job, 60)
            assert done.status is JobStatus.SUCCEEDED, done
        assert worker.process.poll() is None
