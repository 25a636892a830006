"""The Celery executor beyond the engine suite (which runs on it too, see test_engine.py): real
`mieruka worker` and `mieruka run` processes, live events across server processes, and workers
killed mid-job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from mieruka import JobStatus
from tests.celery_worker import CeleryWorker
from tests.conftest import (
    TESTS,
    assert_collector_on,
    fresh_postgres_database,
    need_service,
    running_server,
    wait_for_file,
)
from tests.servers.test_server import iter_events

FAST_RECOVERY = {"MIERUKA_HEARTBEAT_INTERVAL": "0.3", "MIERUKA_ENGINE_STALE_AFTER": "3"}


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def _server_env(worker: CeleryWorker) -> dict[str, str]:
    return {
        "MIERUKA_EXECUTOR": "celery",
        "MIERUKA_BROKER_URL": worker.broker_url,
        "MIERUKA_DATABASE_URL": worker.database_url,
    }


def test_two_servers_see_live_events_from_a_celery_worker(celery_worker: CeleryWorker) -> None:
    """Behind a load balancer: submitted to one server, run by a Celery worker, followed live on
    the other server's event stream (the events travel over Redis)."""
    env = _server_env(celery_worker)
    home = celery_worker.home
    with (
        running_server(home, env=env) as first,
        running_server(home, env=env) as second,
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{second.url}/api/events", params={"task": "noisy"}) as response,
    ):
        job = client.post(f"{first.url}/api/tasks/noisy/jobs", json={"lines": 2}).json()
        seen: list[tuple[str, object]] = []
        for event in iter_events(response):
            data = event["data"]
            if data.get("job_id") != job["id"]:
                continue
            seen.append((event["event"], data.get("status")))
            if data.get("status") == "succeeded":
                break
        assert ("state", "running") in seen and ("log", None) in seen, seen
        done = client.get(f"{second.url}/api/jobs/{job['id']}").json()
        assert done["status"] == "succeeded" and done["worker"].startswith("celery@"), done
        logs = client.get(f"{first.url}/api/jobs/{job['id']}/logs").json()["lines"]
        assert [line["text"] for line in logs][:2] == ["line 0", "line 1"]
        health = client.get(f"{first.url}/healthz").json()
        assert health["status"] == "ok", health


def test_a_workers_state_events_arrive_in_order_for_quick_and_slow_jobs(celery_worker: CeleryWorker) -> None:
    """A worker holds a job's "running" event: a quick job's start goes out with its end (in
    order), a slow job's is seen while the job still runs."""

    app = celery_worker.jobs_app()
    seen: list[tuple[int, str]] = []
    with app:
        app.engine.bus.subscribe(lambda e: seen.append((e.job_id, str(e.data.get("status")))))
        quick = [app.submit("add", a=n) for n in range(5)]
        for job in quick:
            assert app.wait(job, 20).status is JobStatus.SUCCEEDED
        slow = app.submit("sleep", seconds=2.0)
        _wait_until(lambda: (slow.id, "running") in seen, 1.5, "the slow job's running event, while it runs")
        assert app.get_job(slow.id).status is JobStatus.RUNNING
        assert app.wait(slow, 20).status is JobStatus.SUCCEEDED
        ends = {(job.id, "succeeded") for job in [*quick, slow]}
        _wait_until(lambda: ends <= set(seen), 5, "the end events")
        for job in [*quick, slow]:
            mine = [status for job_id, status in seen if job_id == job.id]
            assert mine == ["queued", "running", "succeeded"], (job.id, mine)
    app._settings = None


def test_a_killed_pool_process_fails_its_job_with_the_reason(celery_worker: CeleryWorker, tmp_path: Path) -> None:
    """The kernel's OOM killer or a stray kill -9 on the process running a job."""

    celery_worker.reset()
    app = celery_worker.jobs_app()
    with app:
        job = app.submit("sleep_in_child", seconds=60, pidfile=str(tmp_path / "p"))
        pool_pid, child_pid = map(int, wait_for_file(tmp_path / "p").split())
        os.kill(pool_pid, signal.SIGKILL)
        done = app.wait(job, 20)
        assert done.status is JobStatus.FAILED
        assert done.error == "the worker process was killed by SIGKILL (out of memory?)"
        _wait_until(lambda: _gone(child_pid), 5, "the job's child process is killed too")
        assert app.wait(app.submit("add", a=1), 20).result == 3  # the pool replaced the process
    app._settings = None


def test_a_cancel_never_kills_a_pool_process_while_it_tells_how_its_job_ended(
    celery_worker: CeleryWorker, tmp_path: Path
) -> None:
    """A pool process writing how its job ended (it finished, or its watcher found the cancel first)
    holds its settling lock; the cancel broadcast waits for it. Killed in between, the job would be
    stored as ended and never told (seen as a cancel missing from the metrics). Here the test holds
    the lock, as a pool process mid-way would: nobody kills, then exactly one end is told."""
    import fcntl

    from mieruka.executors.celery_worker import settling_lock

    celery_worker.reset()
    app = celery_worker.jobs_app()
    seen: list[tuple[int, str]] = []
    with app:
        app.engine.bus.subscribe(lambda e: seen.append((e.job_id, str(e.data.get("status")))))
        job = app.submit("sleep_in_child", seconds=60, pidfile=str(tmp_path / "p"))
        pool_pid, child_pid = map(int, wait_for_file(tmp_path / "p").split())
        lock = settling_lock(celery_worker.consumer_pid(), pool_pid)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            app.engine.cancel(job.id)
            _wait_until(lambda: app.get_job(job.id).cancel_requested, 10, "the cancel requested")
            time.sleep(1.5)  # long enough for the broadcast, and for two looks of the pool's watcher
            assert not _gone(pool_pid) and not _gone(child_pid)
            assert app.get_job(job.id).status is JobStatus.RUNNING
        finally:
            os.close(fd)
        assert app.wait(job, 20).status is JobStatus.CANCELLED
        _wait_until(lambda: _gone(pool_pid) and _gone(child_pid), 10, "the job's processes killed")
        _wait_until(lambda: (job.id, "cancelled") in seen, 10, "the cancelled event")
        assert [status for job_id, status in seen if job_id == job.id].count("cancelled") == 1, seen
        shutil.rmtree(lock.parent)  # a cleaner of the temporary folder, on a worker up for weeks: jobs still end
        for a in range(4):
            assert app.wait(app.submit("add", a=a), 20).result == a + 2
    app._settings = None


@pytest.fixture
def own_store(broker_url: str) -> Iterator[tuple[str, str]]:
    """A database and a broker database of its own: workers here are killed, and other modules'
    workers must never take these jobs."""
    with fresh_postgres_database("mieruka_kill") as url:
        yield url, broker_url.rsplit("/", 1)[0] + "/3"


def test_a_worker_killed_mid_job_never_leaves_it_running(
    own_store: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the whole worker: its pool processes take their jobs down with them, a server
    sees the worker is gone and fails the job without retries and re-queues the one with retries,
    which a second worker runs; the message delivered again later never runs it twice."""
    from tests.jobs import app

    database_url, broker = own_store
    for key, value in FAST_RECOVERY.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MIERUKA_BROKER_VISIBILITY_TIMEOUT", "2")
    home = tmp_path / "home"
    first = CeleryWorker(home, database_url, broker, "--concurrency", "2")
    second: CeleryWorker | None = None
    app._settings = None
    app.configure(home=str(home), database_url=database_url, executor="celery", broker_url=broker)
    try:
        first.wait_ready()
        with app:
            plain = app.submit("sleep_in_child", seconds=60, pidfile=str(tmp_path / "plain"))
            retried = app.submit("sleep_first_time", pidfile=str(tmp_path / "retried"))
            pool_pid, child_pid = map(int, wait_for_file(tmp_path / "plain").split())
            retried_pid = int(wait_for_file(tmp_path / "retried"))
            os.kill(first.process.pid, signal.SIGKILL)
            first.process.wait()
            _wait_until(
                lambda: all(map(_gone, (pool_pid, child_pid, retried_pid))),
                5,
                "the pool processes and the job's children end when their worker dies",
            )
            failed = app.wait(plain, 20)
            assert failed.status is JobStatus.FAILED
            assert failed.error == "interrupted: its worker stopped while it ran"
            # Re-queued by the same recovery pass, one statement after `plain` failed.
            _wait_until(
                lambda: app.get_job(retried.id).status is JobStatus.QUEUED,
                10,
                "the job with retries left is queued again",
            )
            second = CeleryWorker(tmp_path / "home2", database_url, broker, "--concurrency", "1")
            second.wait_ready()
            done = app.wait(retried, 30)
            assert done.status is JobStatus.SUCCEEDED and done.result == 2 and done.attempts == 2
            time.sleep(3)  # past the visibility timeout: the first worker's message comes back
            again = app.get_job(retried.id)
            assert again.status is JobStatus.SUCCEEDED and again.attempts == 2
            assert app.get_job(plain.id).status is JobStatus.FAILED
    except BaseException:
        print(first.output())
        if second is not None:
            print(second.output())
        raise
    finally:
        app._settings = None
        first.stop()
        if second is not None:
            second.stop()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mieruka.cli", *args],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(TESTS.parent), **(env or {})},
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "executor 'celery' needs a broker: set MIERUKA_BROKER_URL"),
        (("--broker-url", "redis://127.0.0.1:1/0", "--concurrency", "0"), "--concurrency must be at least 1"),
        (("--broker-url", "redis://127.0.0.1:1/0", "--queues", " , "), "--queues needs at least one queue name"),
        (
            (
                "--broker-url",
                "redis://127.0.0.1:1/0",
                "--database-url",
                "postgresql+psycopg://mieruka:secret@127.0.0.1:1/x",
            ),
            "cannot reach the database postgresql+psycopg://mieruka:***@127.0.0.1:1/x: connection to server at "
            '"127.0.0.1", port 1 failed: Connection refused',
        ),
    ],
)
def test_worker_command_refuses_bad_settings_in_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = _cli("worker", "tests/jobs.py:app", "--home", str(tmp_path), *args, env={"MIERUKA_BROKER_URL": ""})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mieruka: {message}")


def test_jobs_submitted_while_the_broker_is_down_run_once_it_is_back(tmp_path: Path) -> None:
    """The job is in the database at once; the server sends it when the broker answers again."""
    from tests.celery_worker import on_celery, private_redis
    from tests.conftest import free_port
    from tests.jobs import app

    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    with (
        fresh_postgres_database("mieruka_brokerdown") as database_url,
        on_celery(app, tmp_path / "home", database_url, broker) as workers,
    ):
        with private_redis(port):
            workers.append(CeleryWorker(tmp_path / "home", database_url, broker, "--concurrency", "1"))
            workers[0].wait_ready()
            app.start()
            assert app.wait(app.submit("add", a=1), 30).result == 3
        # the broker is gone
        job = app.submit("add", a=2)
        assert app.get_job(job.id).status is JobStatus.QUEUED
        time.sleep(1)
        with private_redis(port):
            done = app.wait(job, 60)
            assert done.status is JobStatus.SUCCEEDED and done.result == 4


def test_on_a_rabbitmq_broker_jobs_run_and_cancel_reaches_the_worker(
    tmp_path: Path, broker_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RabbitMQ carries the jobs and the cancel broadcast; live events travel over Redis."""
    from tests.celery_worker import on_celery
    from tests.jobs import app
    from tests.unit.test_celery_send import RABBITMQ_URL, purge_rabbitmq_queue

    purge_rabbitmq_queue("default")  # messages a killed run left behind
    bus = broker_url.rsplit("/", 1)[0] + "/10"
    monkeypatch.setenv("MIERUKA_EVENT_BUS", bus)  # for the worker's process too
    with (
        fresh_postgres_database("mieruka_rabbitmq") as database_url,
        on_celery(app, tmp_path / "home", database_url, RABBITMQ_URL, event_bus=bus) as workers,
    ):
        workers.append(CeleryWorker(tmp_path / "home", database_url, RABBITMQ_URL, "--concurrency", "2"))
        workers[0].wait_ready()
        app.start()
        done = app.wait(app.submit("noisy", lines=2), 60)
        assert done.status is JobStatus.SUCCEEDED and done.worker and done.worker.startswith("celery@"), done
        assert [line.text for line in app.engine.logs(done.id)][:2] == ["line 0", "line 1"]
        pidfile = tmp_path / "pids"
        job = app.submit("sleep_in_child", seconds=60, pidfile=str(pidfile))
        worker_pid, child_pid = map(int, wait_for_file(pidfile, 30).split())
        app.engine.cancel(job.id)
        ended = app.wait(job, 15)
        assert ended.status is JobStatus.CANCELLED, ended
        _wait_until(lambda: _gone(worker_pid) and _gone(child_pid), 10, "the job's processes are killed")
        assert app.wait(app.submit("add", a=1), 30).result == 3  # the worker goes on


@pytest.mark.parametrize(
    "env, message",
    [
        ({"MIERUKA_EXECUTOR": "celery", "MIERUKA_BROKER_URL": ""}, "executor 'celery' needs a broker"),
        (
            {"MIERUKA_EXECUTOR": "celery", "MIERUKA_BROKER_URL": "amqp://guest@127.0.0.1:1//"},
            "executor 'celery' with a broker other than Redis needs an event bus its workers can reach",
        ),
        ({"MIERUKA_EXECUTOR": "processes"}, "unknown executor 'processes'; available: local, threads, celery"),
        ({"MIERUKA_ARTIFACT_STORAGE": "ftp://files"}, "unknown artifact storage 'ftp://files'"),
        (
            {"MIERUKA_DATABASE_URL": "sqlite:////dev/null/jobs.db"},
            "cannot create the folder /dev/null for the database",
        ),
        ({"MIERUKA_DATABASE_URL": "nosuchdb://x"}, "invalid database URL 'nosuchdb://x'"),
        (
            {"MIERUKA_DATABASE_URL": "postgresql+psycopg://mieruka:secret@127.0.0.1:1/x"},
            "cannot reach the database postgresql+psycopg://mieruka:***@127.0.0.1:1/x: connection to server at "
            '"127.0.0.1", port 1 failed: Connection refused',
        ),
    ],
)
def test_run_refuses_engine_settings_in_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = _cli("run", "tests/jobs.py:app", "--home", str(tmp_path), "--port", "1", env=env)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"mieruka: {message}")


def test_pipelines_run_on_celery_workers_and_cancel_closes_their_steps(
    celery_worker: CeleryWorker, tmp_path: Path
) -> None:
    from mieruka.core.steps import StepStatus

    celery_worker.reset()
    app = celery_worker.jobs_app()
    try:
        with app:
            done = app.wait(app.submit("pipe_values"), 60)
            assert done.status is JobStatus.SUCCEEDED and done.result == {
                "sorted": ["apple", "fig", "pear"],
                "words": 3,
            }
            assert [(s.name, s.status) for s in app.engine.store.list_steps(done.id)] == [
                ("count", StepStatus.SUCCEEDED),
                ("sort", StepStatus.SUCCEEDED),
                ("read", StepStatus.SUCCEEDED),
            ]
            pidfile = tmp_path / "pids"
            job = app.submit("pipe_sleepy", pidfile=str(pidfile))
            _wait_until(lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2, 30, "the step started")
            app.engine.cancel(job.id)
            assert app.wait(job, 10).status is JobStatus.CANCELLED
            steps = {s.name: s.status for s in app.engine.store.list_steps(job.id)}
            assert steps == {"start": StepStatus.SUCCEEDED, "sleep": StepStatus.CANCELLED}
            pids = [int(p) for p in pidfile.read_text().split()]
            _wait_until(lambda: all(map(_gone, pids)), 5, "the step's processes are killed")
    finally:
        app._settings = None


@pytest.mark.parametrize("elsewhere", [False, True], ids=["same machine", "another machine"])
def test_a_dead_worker_is_seen_and_its_jobs_recovered_within_the_documented_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, elsewhere: bool
) -> None:
    """kill -9 of a whole `mieruka worker` (docs/scaling.md, "A whole worker dies"): on this machine
    the servers see its process gone, and neither count it nor leave its job running, within a
    second or two, long before its heartbeat would tell; a worker on another machine (its own host
    name here) after `engine_stale_after` and one heartbeat period."""
    from tests.celery_worker import on_celery, private_redis
    from tests.jobs import app

    if elsewhere and (not shutil.which("unshare") or subprocess.run(["unshare", "--uts", "true"]).returncode):
        need_service("unshare --uts (util-linux, as root) gives a worker another host name")
    heartbeat, stale = (1.0, 4.0) if elsewhere else (30.0, 90.0)
    # Generous: the same machine's bound is a second; another machine's, stale + one period.
    bound = stale + min(heartbeat, stale / 3) + 5.0 if elsewhere else heartbeat / 3
    monkeypatch.setenv("MIERUKA_HEARTBEAT_INTERVAL", str(heartbeat))  # for the worker too
    monkeypatch.setenv("MIERUKA_ENGINE_STALE_AFTER", str(stale))
    with (
        fresh_postgres_database("mieruka_deadworker") as database_url,
        private_redis() as broker,
        on_celery(
            app, tmp_path / "home", database_url, broker, heartbeat_interval=heartbeat, engine_stale_after=stale
        ) as workers,
    ):
        worker = CeleryWorker(
            tmp_path / "worker-home",
            database_url,
            broker,
            "--concurrency",
            "2",
            host="elsewhere" if elsewhere else None,
        )
        workers.append(worker)
        worker.wait_ready()
        app.start()
        job = app.submit("sleep_in_child", seconds=120, pidfile=str(tmp_path / "pids"))
        wait_for_file(tmp_path / "pids", 30)
        _wait_until(lambda: len(app.engine.workers()) == 2, 30, "the server counts the worker's two slots")
        os.kill(worker.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        worker.process.wait()
        _wait_until(lambda: not app.engine.workers(), bound + 30, "the dead worker is no longer counted")
        uncounted = time.monotonic() - killed
        _wait_until(lambda: app.get_job(job.id).status is not JobStatus.RUNNING, bound + 30, "the job is recovered")
        recovered = time.monotonic() - killed
        print(f"counted {uncounted:.2f}s, running {recovered:.2f}s after the kill (bound {bound:g}s)")
        assert uncounted <= bound and recovered <= bound, (uncounted, recovered, bound)
        ended = app.get_job(job.id)
        assert ended.status is JobStatus.FAILED and ended.error == "interrupted: its worker stopped while it ran"
        if not elsewhere:  # the Workers page and /metrics agree with /healthz: down, not "up" until stale
            from mieruka.web.metrics import Metrics
            from mieruka.web.monitor import nodes

            listed = [n for n in nodes(app.runtime) if n["kind"] == "celery"]
            assert listed and not any(n["up"] for n in listed), listed
            scrape = Metrics(app.runtime).exposition({}).decode()
            assert 'mieruka_nodes{kind="celery",state="down"} 1.0' in scrape, scrape
            assert 'kind="celery",state="up"' not in scrape, scrape


def test_a_celery_pool_process_runs_jobs_with_the_collector_on(celery_worker: CeleryWorker) -> None:
    """`mieruka worker` starts with the collector paused (as the server does): on again in the pool
    processes it forks, with what the start made frozen."""
    with running_server(celery_worker.home, env=_server_env(celery_worker)) as server:
        assert_collector_on(server)
