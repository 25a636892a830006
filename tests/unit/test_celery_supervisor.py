"""`mieruka worker` supervises its Celery worker (executors/celery_supervisor.py): a Celery worker
that dies is started again and its job is not lost, and SIGTERM to the supervisor is a warm
shutdown. A Redis of the test's own and a fresh PostgreSQL database, as in test_broker_outage."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from mieruka import JobStatus
from tests.unit.test_broker_outage import on_a_worker, own_redis, until


def test_a_consumer_that_dies_is_started_again_and_its_job_is_not_lost(tmp_path: Path) -> None:
    """kill -9 of the Celery worker's main process (the consumer), as a crash of it would be:
    `mieruka worker` starts a new one, the job that ran is queued again (it has a retry left) and
    runs on the new one, and the jobs submitted after run too."""
    with (
        own_redis() as redis_server,
        on_a_worker(tmp_path, redis_server, 2, heartbeat_interval=0.3, engine_stale_after=3) as (app, worker),
    ):
        pidfile = tmp_path / "pid"
        job = app.submit("sleep_first_time", pidfile=str(pidfile))
        until(pidfile.exists, 30, "the job runs")
        consumer = worker.consumer_pid()
        os.kill(consumer, signal.SIGKILL)
        done = app.wait(job, 60)
        assert done.status is JobStatus.SUCCEEDED and done.result == 2, done
        assert worker.consumer_pid() != consumer
        after = app.wait(app.submit("add", a=1), 60)
        assert after.status is JobStatus.SUCCEEDED and after.result == 3, after
        assert worker.process.poll() is None, "the supervisor is still up"
        assert f"the Celery worker (pid {consumer}) was killed by SIGKILL" in worker.output()


def test_sigterm_to_the_supervisor_is_a_warm_shutdown_of_its_worker(tmp_path: Path) -> None:
    """The supervisor passes SIGTERM on and exits with its worker, after the running job ended."""
    import psutil

    with own_redis() as redis_server, on_a_worker(tmp_path, redis_server, 1) as (app, worker):
        consumer = worker.consumer_pid()
        job = app.submit("sleep", seconds=3)
        until(lambda: app.get_job(job.id).status is JobStatus.RUNNING, 30, "the job runs")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=60) == 0
        done = app.get_job(job.id)
        assert done.status is JobStatus.SUCCEEDED and done.result == 3, done
        assert not psutil.pid_exists(consumer) or psutil.Process(consumer).status() == psutil.STATUS_ZOMBIE
        assert "starting it again" not in worker.output()
