"""On Celery a job goes to the broker while its row is on the way to the store (engine.submit,
store.start_create_job): a worker waits for a row it does not find yet, an engine whose row came
late sends the job again, and a row that never comes leaves nothing running."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import mieruka
from mieruka import JobStatus
from mieruka.core.clock import utcnow
from mieruka.core.events import Event
from mieruka.core.job import JobRecord
from mieruka.errors import StorageUnavailable
from mieruka.executors.celery import CeleryExecutor, make_celery, send_run
from mieruka.settings import Settings
from mieruka.store.base import PendingJob
from mieruka.store.pg_connections import conninfo
from tests.celery_worker import CeleryWorker


@pytest.fixture
def app(celery_worker: CeleryWorker) -> Iterator[mieruka.App]:
    from tests.jobs import app

    celery_worker.reset()
    app._settings = None
    app.configure(
        home=str(celery_worker.home),
        database_url=celery_worker.database_url,
        executor="celery",
        broker_url=celery_worker.broker_url,
        poll_interval=0.2,
    )
    try:
        with app:
            yield app
    finally:
        app._settings = None


def _insert_uncommitted(database_url: str) -> tuple[Any, int]:
    """A transaction that has written a queued `add` job's row and not committed it: (it, job id)."""
    import psycopg

    tx = psycopg.connect(conninfo(database_url))
    row = tx.execute("SELECT nextval(pg_get_serial_sequence('jobs', 'id'))").fetchone()
    assert row is not None
    job_id = int(row[0])
    tx.execute(
        "INSERT INTO jobs (id, task, status, params, priority, queue, attempts, max_attempts, created_at, "
        "cancel_requested, log_lines) VALUES (%s, 'add', 'queued', '{\"a\": 40}', 0, 'default', 0, 1, "
        "now() at time zone 'utc', false, 0)",
        (job_id,),
    )
    return tx, job_id


def test_a_worker_waits_for_a_row_that_comes_after_the_message(app: mieruka.App, celery_worker: CeleryWorker) -> None:
    celery = make_celery(Settings(broker_url=celery_worker.broker_url))
    tx, late = _insert_uncommitted(celery_worker.database_url)
    send_run(celery, celery_worker.broker_url, late, "add", "default", 0)
    time.sleep(1.0)  # the worker has the message and no row
    assert app.engine.store.get_job(late) is None
    tx.commit()
    tx.close()
    done = app.wait(late, 30)
    assert done.status is JobStatus.SUCCEEDED and done.result == 42 and done.attempts == 1

    tx, never = _insert_uncommitted(celery_worker.database_url)
    send_run(celery, celery_worker.broker_url, never, "add", "default", 0)
    time.sleep(0.5)
    tx.rollback()  # the submitter's insert failed: the message is all there is
    tx.close()
    # The worker gives up on it after NEW_JOB_GRACE and goes on; the other pool process meanwhile too.
    assert app.wait(app.submit("add", a=1), 30).result == 3
    assert app.engine.store.get_job(never) is None
    celery.close()


def test_a_row_that_came_late_is_sent_again(app: mieruka.App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The insert finished after half of the time a worker waits for a row: the job goes to the
    broker a second time, and runs once."""
    from mieruka.engine import api as engine_module

    monkeypatch.setattr(engine_module, "NEW_JOB_GRACE", 0.2)
    real_start = app.engine.store.start_create_job
    sent: list[int] = []
    executor = app.engine.executor
    assert isinstance(executor, CeleryExecutor)
    real_send = executor.send

    def slow_start(job: Any) -> PendingJob:
        pending = real_start(job)
        assert pending is not None

        def finish() -> None:
            time.sleep(0.3)
            pending.finish()

        return PendingJob(pending.record, finish)

    def counted_send(record: Any, delay: float = 0.0) -> None:
        sent.append(record.id)
        real_send(record, delay)

    monkeypatch.setattr(app.engine.store, "start_create_job", slow_start)
    monkeypatch.setattr(executor, "send", counted_send)
    job = app.submit("add", a=5)
    done = app.wait(job, 30)
    assert sent == [job.id, job.id]
    assert done.status is JobStatus.SUCCEEDED and done.result == 7 and done.attempts == 1


def test_a_row_the_store_refused_fails_the_submission(app: mieruka.App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The broker has the job, the store said no: the submission fails, the job's announcement is
    taken back, and the worker finds no row to run."""
    events: list[Event] = []
    heard = threading.Event()
    job_id = 10**6

    def hear(event: Event) -> None:
        if event.job_id == job_id:
            events.append(event)
            if event.kind == "deleted":
                heard.set()

    def failing_start(job: Any) -> PendingJob:
        record = JobRecord(id=job_id, task=job.task, status=JobStatus.QUEUED, params=job.params, created_at=utcnow())

        def finish() -> None:
            raise StorageUnavailable("the database went away")

        return PendingJob(record, finish)

    unsubscribe = app.engine.bus.subscribe(hear)
    monkeypatch.setattr(app.engine.store, "start_create_job", failing_start)
    try:
        with pytest.raises(StorageUnavailable, match="went away"):
            app.submit("add", a=5)
        assert heard.wait(10)
    finally:
        unsubscribe()
    assert [(e.kind, e.data.get("status")) for e in events] == [("state", "queued"), ("deleted", "queued")]
    assert app.engine.store.get_job(job_id) is None
