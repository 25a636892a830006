"""One contract for the executors that run jobs beside the server: the local executor's worker
processes and the thread executor (threads of the server process, executors/threads.py). The same
behaviours run on both through tests/jobs.py's app; what differs by design is skipped on one, with
the reason. Celery runs tests/unit/test_engine.py and tests/servers/test_celery.py."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

import mieruka
from mieruka import JobStatus
from mieruka.core.events import Event
from mieruka.core.steps import StepStatus
from mieruka.executors.threads import ThreadExecutor
from tests.conftest import wait_for_file

ENGINES = ("local", "threads")  # tests/conftest.py runs each test using `app` on both
WAIT = 30.0  # the longest anything here may take; tests go on as soon as it is done


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the stores have a contract of their own."""
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def _kind(app: mieruka.App) -> str:
    return app.settings.executor


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _eventually(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def _thread_runs(app: mieruka.App, job_id: int) -> bool:
    """Whether the thread of a stopped job still runs its code (the thread executor)."""
    executor = app.engine.executor
    assert isinstance(executor, ThreadExecutor)
    return job_id in executor.lingering()


def test_submit_then_result(app: mieruka.App) -> None:
    done = app.wait(app.submit("add", a=2, b=3), WAIT)
    assert (done.status, done.result, done.attempts, done.progress) == (JobStatus.SUCCEEDED, 5, 1, 1.0)
    assert app.wait(app.submit("async_add", a=41), WAIT).result == 42


def test_failure_keeps_error_and_traceback(app: mieruka.App) -> None:
    done = app.wait(app.submit("fail", message="bad input"), WAIT)
    assert done.status is JobStatus.FAILED and done.error == "ValueError: bad input"
    assert done.traceback is not None and "raise ValueError(message)" in done.traceback


def test_progress_log_and_state_events(app: mieruka.App) -> None:
    events: list[Event] = []
    unsubscribe = app.engine.bus.subscribe(events.append)
    try:
        done = app.wait(app.submit("progress_steps", steps=3, delay=0.15), WAIT)
    finally:
        unsubscribe()
    assert done.status is JobStatus.SUCCEEDED and done.message == "step 3 of 3"
    mine = [e for e in events if e.job_id == done.id]
    states = [e.data["status"] for e in mine if e.kind == "state"]
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded"
    assert any(e.kind == "progress" for e in mine)
    logged = [line[2] for e in mine if e.kind == "log" for line in e.data["lines"]]
    assert logged == ["step 1", "step 2", "step 3"]
    assert [line.text for line in app.engine.logs(done.id)] == logged


def test_print_stderr_logging_and_job_log_reach_the_log(app: mieruka.App) -> None:
    done = app.wait(app.submit("noisy", lines=3), WAIT)
    lines = app.engine.logs(done.id)
    texts = [line.text for line in lines]
    assert texts[:3] == ["line 0", "line 1", "line 2"]
    assert "to stderr" in texts and "from job.log" in texts
    assert any("a warning" in t for t in texts)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1)) and done.log_lines == len(lines)


def test_jobs_running_together_keep_their_own_logs(app: mieruka.App) -> None:
    counts = [3000, 5000]
    jobs = [app.submit("many_lines", lines=n) for n in counts]
    for job, n in zip(jobs, counts, strict=True):
        done = app.wait(job, WAIT)
        assert done.status is JobStatus.SUCCEEDED and done.log_lines == n
        texts = [line.text for line in app.engine.logs(done.id, limit=n + 1)]
        assert texts == [f"line {i} " + "x" * 40 for i in range(n)]


def test_output_of_child_processes_reaches_the_log(app: mieruka.App) -> None:
    if _kind(app) == "threads":
        pytest.skip("by design: file descriptors 1 and 2 are the server's; a child writes to the server's output")
    done = app.wait(app.submit("noisy", lines=1), WAIT)
    assert "from a child process" in [line.text for line in app.engine.logs(done.id)]


def test_artifacts_and_large_results(app: mieruka.App) -> None:
    done = app.wait(app.submit("with_artifacts"), WAIT)
    assert {a.name: a.size for a in done.artifacts} == {"hello.txt": 14, "data.bin": 1024}
    big = app.wait(app.submit("big_result", size=2_000_000), WAIT)
    assert big.result["artifact"] == "result.json"


def test_retries_until_success(app: mieruka.App, tmp_path: Path) -> None:
    done = app.wait(app.submit("fail_then_succeed", marker=str(tmp_path / "count"), failures=2), WAIT)
    assert (done.status, done.attempts, done.result) == (JobStatus.SUCCEEDED, 3, 3)
    lines = [line.text for line in app.engine.logs(done.id)]
    assert "--- attempt 3 of 3 ---" in lines


def test_timeout_fails_the_job_and_frees_its_slot(app: mieruka.App) -> None:
    slow = [app.submit("too_slow", seconds=30) for _ in range(2)]  # both slots
    for job in slow:
        done = app.wait(job, WAIT)
        assert (done.status, done.error) == (JobStatus.FAILED, "timed out after 0.5s")
    assert app.wait(app.submit("add", a=1), WAIT).result == 3
    retried = app.wait(app.submit("too_slow_retried"), WAIT)
    assert (retried.status, retried.attempts) == (JobStatus.FAILED, 2)


def test_cancel_kills_a_shell_task_and_its_child(app: mieruka.App, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    job = app.submit("sleep_in_child", seconds=60, pidfile=str(pidfile))
    runner_pid, child_pid = map(int, wait_for_file(pidfile).split())
    assert _alive(child_pid)
    app.engine.cancel(job.id)
    assert app.wait(job, WAIT).status is JobStatus.CANCELLED
    _eventually(lambda: not _alive(child_pid), "the job's child process was killed")
    if _kind(app) == "local":
        _eventually(lambda: not _alive(runner_pid), "the worker process was killed")
    else:
        assert runner_pid == psutil.Process().pid  # the server itself, which goes on
    assert app.wait(app.get_job(job.id).id, WAIT).status is JobStatus.CANCELLED  # its late outcome is dropped
    assert app.wait(app.submit("add", a=1), WAIT).result == 3


def test_cancel_kills_a_pipelines_steps(app: mieruka.App, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    job = app.submit("pipe_sleepy", pidfile=str(pidfile))
    wait_for_file(pidfile, WAIT)
    _eventually(lambda: len(pidfile.read_text().split()) == 2, "the step wrote both pids")
    pids = [int(p) for p in pidfile.read_text().split()]
    assert all(_alive(p) for p in pids)
    app.engine.cancel(job.id)
    assert app.wait(job, WAIT).status is JobStatus.CANCELLED
    _eventually(lambda: not any(_alive(p) for p in pids), "the step's shell and its background child were killed")
    steps = {s.name: s.status for s in app.engine.store.list_steps(job.id)}
    assert steps == {"start": StepStatus.SUCCEEDED, "sleep": StepStatus.CANCELLED}


def test_cancel_stops_a_job_that_reports_progress(app: mieruka.App, tmp_path: Path) -> None:
    """Killed with its worker process, or (threads) stopped by its next progress call."""
    job = app.submit("progress_until", marker=str(tmp_path / "never"))
    _eventually(lambda: app.get_job(job.id).progress is not None, "the job reported progress")
    app.engine.cancel(job.id)
    assert app.wait(job, WAIT).status is JobStatus.CANCELLED
    if _kind(app) == "threads":
        _eventually(lambda: not _thread_runs(app, job.id), "the job's thread ended")
    _eventually(lambda: all(w["job_id"] != job.id for w in app.engine.workers()), "no worker runs it")
    assert app.get_job(job.id).status is JobStatus.CANCELLED


def test_a_cancelled_job_frees_its_slot_at_once(app: mieruka.App) -> None:
    """A job that never checks (it sleeps): killed with its process, or (threads) its thread finishes
    the sleep in the background while the slot runs other jobs; what it returns then is dropped."""
    job = app.submit("sleep", seconds=2)
    _eventually(lambda: app.get_job(job.id).status is JobStatus.RUNNING, "the job started")
    app.engine.cancel(job.id)
    assert app.wait(job, WAIT).status is JobStatus.CANCELLED
    others = [app.submit("sleep", seconds=0.05) for _ in range(4)]
    assert all(app.wait(other, WAIT).status is JobStatus.SUCCEEDED for other in others)
    if _kind(app) == "threads":
        _eventually(lambda: not _thread_runs(app, job.id), "the cancelled job's thread ended")
    done = app.get_job(job.id)
    assert (done.status, done.result) == (JobStatus.CANCELLED, None)


def test_many_jobs_concurrently_never_more_than_the_workers(app: mieruka.App) -> None:
    jobs = [app.submit("sleep", seconds=0.05) for _ in range(30)]
    done = [app.wait(job, WAIT) for job in jobs]
    assert all(d.status is JobStatus.SUCCEEDED for d in done)
    spans = [(d.started_at, d.finished_at) for d in done if d.started_at and d.finished_at]
    assert len(spans) == len(done)
    most = max(sum(1 for s, f in spans if s <= at < f) for at, _ in spans)
    assert most <= app.settings.effective_workers == 2


def test_stop_with_running_jobs_requeues_them(app: mieruka.App, tmp_path: Path) -> None:
    from mieruka.store.sql import SqlJobStore

    pidfile = tmp_path / "pids"
    job = app.submit("sleep_in_child", seconds=30, pidfile=str(pidfile))
    child_pid = int(wait_for_file(pidfile).split()[1])
    home, url, executor = app.settings.home, app.settings.effective_database_url, app.settings.executor
    app.stop()
    store = SqlJobStore(url)
    try:
        record = store.get_job(job.id)
    finally:
        store.close()
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == 0
    _eventually(lambda: not _alive(child_pid), "the job's child process was killed")
    app.configure(home=home, database_url=url, executor=executor, workers=2)
    app.start()
    app.engine.cancel(job.id)


def test_a_job_that_exits_the_process(app: mieruka.App) -> None:
    if _kind(app) == "threads":
        pytest.skip("by design: a job on a thread shares the server's process; os._exit would end the server")
    done = app.wait(app.submit("exit_hard", code=3), WAIT)
    assert (done.status, done.error) == (JobStatus.FAILED, "the worker process exited with code 3")
    assert app.wait(app.submit("add", a=1), WAIT).result == 3


def test_workers_are_listed(app: mieruka.App) -> None:
    _eventually(lambda: sum(1 for w in app.engine.workers() if w["ready"]) == 2, "both workers are ready")
    workers = app.engine.workers()
    assert [set(w) for w in workers] == [{"name", "pid", "ready", "job_id", "jobs_done"}] * 2
    if _kind(app) == "threads":
        assert {w["pid"] for w in workers} == {psutil.Process().pid}


@pytest.mark.parametrize("collecting", [True, False])
def test_a_start_leaves_the_callers_collector_as_it_was(app: mieruka.App, collecting: bool) -> None:
    """app.start() pauses the garbage collector while it imports and starts (a tenth of its CPU):
    the script's collector is on or off afterwards as it was before, and jobs still run."""
    settings = app.settings
    app.stop()
    was = gc.isenabled()
    try:
        (gc.enable if collecting else gc.disable)()
        app.configure(
            home=settings.home, database_url=settings.effective_database_url, executor=settings.executor, workers=2
        )
        app.start()
        assert gc.isenabled() is collecting
    finally:
        (gc.enable if was else gc.disable)()
    assert app.wait(app.submit("add", a=1), WAIT).result == 3
