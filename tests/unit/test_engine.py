"""The job engine through the Python API, on SQLite and PostgreSQL, with real worker processes: the
local pool, and (on PostgreSQL) a real Celery worker started with `mieruka worker`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

import mieruka
from mieruka import JobStatus
from mieruka.capture import FLUSH_LINES
from mieruka.core.job import JobRecord
from mieruka.engine import waiting
from mieruka.engine.waiting import Ending
from mieruka.errors import ConflictError, JobNotFound, JobTimeoutError, TaskNotFound, ValidationError
from tests.conftest import wait_for, wait_for_file

ENGINES = ("local", "celery")  # tests/conftest.py runs each test using `app` on both
pytestmark = pytest.mark.in_process  # "local" runs on the threads executor, but where marked worker_processes


def test_succeeded_with_result_and_timestamps(app: mieruka.App) -> None:
    job = app.submit("add", a=2, b=3)
    assert job.status is JobStatus.QUEUED
    done = app.wait(job, 30)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == 5
    assert done.attempts == 1
    assert done.created_at.utcoffset() == timedelta(0)
    assert done.started_at is not None and done.finished_at is not None
    assert done.created_at <= done.started_at <= done.finished_at
    assert done.worker and done.progress == 1.0


def test_async_task(app: mieruka.App) -> None:
    assert app.wait(app.submit("async_add", a=41), 30).result == 42


def test_parameters_arrive_typed(app: mieruka.App) -> None:
    done = app.wait(app.submit("echo_types", day="2026-02-03", colour="blue", window={"start": 3}), 30)
    assert done.result == {
        "text": "str",
        "count": "int",
        "ratio": "float",
        "flag": "bool",
        "choice": "str",
        "colour": "Colour",
        "day": "date",
        "moment": "datetime",
        "names": "list",
        "window": "Window",
    }


@pytest.mark.parametrize(
    "params, field",
    [
        ({"a": "two"}, "a"),
        ({}, "a"),
        ({"a": 1, "unknown": 3}, "unknown"),
    ],
)
def test_bad_parameters_are_rejected_before_queueing(app: mieruka.App, params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        app.submit("add", **params)
    assert info.value.fields[0]["field"] == field
    assert app.engine.store.count_by_status()["queued"] == 0


def test_unknown_task_and_job(app: mieruka.App) -> None:
    with pytest.raises(TaskNotFound):
        app.submit("no_such_task")
    with pytest.raises(JobNotFound):
        app.get_job(123456)


def test_failed_job_keeps_error_and_traceback(app: mieruka.App) -> None:
    done = app.wait(app.submit("fail", message="bad input"), 30)
    assert done.status is JobStatus.FAILED
    assert done.error == "ValueError: bad input"
    assert done.traceback is not None
    assert "raise ValueError(message)" in done.traceback
    assert "runner.py" not in done.traceback.splitlines()[1]


@pytest.mark.worker_processes
def test_logs_capture_print_stderr_logging_and_children(app: mieruka.App) -> None:
    done = app.wait(app.submit("noisy", lines=3), 30)
    assert done.status is JobStatus.SUCCEEDED
    lines = app.engine.logs(done.id)
    texts = [line.text for line in lines]
    assert texts[:3] == ["line 0", "line 1", "line 2"]
    assert "to stderr" in texts and "from job.log" in texts and "from a child process" in texts
    assert any("a warning" in t for t in texts)
    assert [line.seq for line in lines] == list(range(1, len(lines) + 1))
    assert {line.stream for line in lines} >= {"stdout", "stderr"}
    assert done.log_lines == len(lines)
    # read by range
    assert [line.seq for line in app.engine.logs(done.id, after=2, limit=2)] == [3, 4]


def test_progress_is_recorded(app: mieruka.App) -> None:
    done = app.wait(app.submit("noisy", lines=1), 30)
    assert done.message == "half way"


def test_a_quick_jobs_last_progress_message_is_kept(app: mieruka.App) -> None:
    """Progress held back by the rate limit when the job ends still has the last word."""
    done = app.wait(app.submit("progress_steps", steps=5, delay=0), 30)
    assert (done.status.value, done.progress, done.message) == ("succeeded", 1.0, "step 5 of 5")


def test_artifacts(app: mieruka.App) -> None:
    done = app.wait(app.submit("with_artifacts"), 30)
    names = {a.name: a for a in done.artifacts}
    assert names["hello.txt"].size == len("hello artifact")
    assert names["hello.txt"].content_type == "text/plain"
    assert names["data.bin"].size == 1024
    data = b"".join(app.engine.artifacts.open_chunks(done.id, "data.bin"))
    assert data == bytes(range(256)) * 4


def test_results_serialise_models_and_dataclasses(app: mieruka.App) -> None:
    assert app.wait(app.submit("model_result"), 30).result == {"start": 1, "end": 2}
    assert app.wait(app.submit("dataclass_result"), 30).result == {"total": 3, "label": "three"}
    bad = app.wait(app.submit("not_json"), 30)
    assert bad.status is JobStatus.FAILED and bad.error is not None and "JSON" in bad.error


def test_large_result_goes_to_an_artifact(app: mieruka.App) -> None:
    done = app.wait(app.submit("big_result", size=2_000_000), 30)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result["artifact"] == "result.json"
    assert [a.name for a in done.artifacts] == ["result.json"]


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


@pytest.mark.worker_processes
def test_cancel_running_job_kills_it_and_its_children(app: mieruka.App, tmp_path: Path) -> None:
    """How fast it goes is measured in bench/ (cancel latency); here: it goes, children included."""
    pidfile = tmp_path / "pids"
    job = app.submit("sleep_in_child", seconds=60, pidfile=str(pidfile))
    worker_pid, child_pid = map(int, wait_for_file(pidfile).split())
    assert not _gone(worker_pid) and not _gone(child_pid)
    started = time.monotonic()
    app.engine.cancel(job.id)
    done = app.wait(job, 30)
    assert done.status is JobStatus.CANCELLED
    while not (_gone(worker_pid) and _gone(child_pid)) and time.monotonic() - started < 30:
        time.sleep(0.01)
    assert _gone(worker_pid) and _gone(child_pid), "worker or its child survived the cancel"
    # the pool replaced the worker and keeps working
    assert app.wait(app.submit("add", a=1), 30).result == 3


def test_cancel_queued_job(app: mieruka.App, tmp_path: Path) -> None:
    blockers = [app.submit("progress_until", marker=str(tmp_path / "never")) for _ in range(2)]
    wait_for(lambda: all(app.get_job(job.id).status is JobStatus.RUNNING for job in blockers), what="both blockers run")
    queued = app.submit("add", a=1)
    cancelled = app.engine.cancel(queued.id)
    assert cancelled.status is JobStatus.CANCELLED
    with pytest.raises(ConflictError):
        app.engine.cancel(queued.id)
    for job in blockers:
        app.engine.cancel(job.id)


@pytest.mark.worker_processes
def test_timeout_kills_the_job(app: mieruka.App) -> None:
    done = app.wait(app.submit("too_slow"), 25)  # it would sleep 30 s: ended before, it was stopped
    assert done.status is JobStatus.FAILED
    assert done.error == "timed out after 0.5s"


@pytest.mark.worker_processes
def test_timeout_is_retried_when_retries_remain(app: mieruka.App) -> None:
    done = app.wait(app.submit("too_slow_retried"), 15)
    assert done.status is JobStatus.FAILED
    assert done.attempts == 2
    assert done.error is not None and "timed out" in done.error


def test_retry_with_backoff_then_success(app: mieruka.App, tmp_path: Path) -> None:
    marker = tmp_path / "count"
    started = time.monotonic()
    done = app.wait(app.submit("fail_then_succeed", marker=str(marker), failures=2), 30)
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == 3 and done.attempts == 3
    assert time.monotonic() - started >= 0.2 + 0.4  # backoff 0.2s then 0.4s
    texts = [line.text for line in app.engine.logs(done.id)]
    assert "--- attempt 3 of 3 ---" in texts


def test_retries_exhausted(app: mieruka.App, tmp_path: Path) -> None:
    done = app.wait(app.submit("fail_then_succeed", marker=str(tmp_path / "c"), failures=5), 30)
    assert done.status is JobStatus.FAILED
    assert done.attempts == 3 and done.error == "RuntimeError: failure 3"


def test_manual_retry_of_failed_job(app: mieruka.App) -> None:
    done = app.wait(app.submit("fail"), 30)
    again = app.engine.retry(done.id)
    assert again.status is JobStatus.QUEUED and again.id == done.id
    final = app.wait(done.id, 30)
    assert final.status is JobStatus.FAILED and final.attempts == 2
    with pytest.raises(ConflictError):
        app.engine.retry(app.wait(app.submit("add", a=1), 30).id)


@pytest.mark.worker_processes
def test_process_exit_fails_the_job_and_the_pool_recovers(app: mieruka.App) -> None:
    done = app.wait(app.submit("exit_hard", code=3), 30)
    assert done.status is JobStatus.FAILED
    assert done.error == "the worker process exited with code 3"
    crashed = app.wait(app.submit("segfault"), 30)
    assert crashed.status is JobStatus.FAILED and crashed.error is not None and "SIGSEGV" in crashed.error
    results = [app.wait(app.submit("add", a=i), 30).result for i in range(4)]
    assert results == [2, 3, 4, 5]


def test_idempotency_key(app: mieruka.App) -> None:
    first, created = app.engine.submit("add", {"a": 1}, idempotency_key="order-42")
    again, created_again = app.engine.submit("add", {"a": 1}, idempotency_key="order-42")
    assert created and not created_again and again.id == first.id


def test_priorities(app: mieruka.App, tmp_path: Path) -> None:
    # Both workers busy while a low and then a high job queue; the first worker set free must take
    # the high one. The blockers end on a signal, one after the other, whatever the machine's pace.
    releases = [tmp_path / "release-a", tmp_path / "release-b"]
    blockers = [app.submit("progress_until", marker=str(release)) for release in releases]
    wait_for(lambda: all(app.get_job(job.id).status is JobStatus.RUNNING for job in blockers), what="both blockers run")
    low = app.engine.submit("sleep", {"seconds": 0.01}, priority=0)[0]
    high = app.engine.submit("sleep", {"seconds": 0.01}, priority=10)[0]
    releases[0].touch()
    wait_for(lambda: any(app.get_job(j.id).started_at is not None for j in (low, high)), what="a job starts")
    releases[1].touch()
    low_done, high_done = app.wait(low, 30), app.wait(high, 30)
    assert high_done.started_at is not None and low_done.started_at is not None
    # The freed worker took the high one; the low one waited for it to end, or for the second worker.
    assert high_done.started_at < low_done.started_at
    for job in blockers:
        app.wait(job, 30)


def test_per_task_concurrency_limit(app: mieruka.App, tmp_path: Path) -> None:
    marker = tmp_path / "spans"
    jobs = [app.submit("one_at_a_time", seconds=0.2, marker=str(marker)) for _ in range(3)]
    for job in jobs:
        assert app.wait(job, 30).status is JobStatus.SUCCEEDED
    spans = sorted(tuple(map(float, line.split())) for line in marker.read_text().splitlines())
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.01, "two runs overlapped"


def test_delay(app: mieruka.App) -> None:
    job, _ = app.engine.submit("add", {"a": 1}, delay=2)
    assert app.get_job(job.id).status is JobStatus.QUEUED  # two seconds from now: not yet, however loaded
    done = app.wait(job, 30)
    assert done.started_at is not None
    assert (done.started_at - done.created_at).total_seconds() >= 1.95


def test_delete_finished_job(app: mieruka.App) -> None:
    done = app.wait(app.submit("with_artifacts"), 30)
    artifact_dir = app.settings.home_path / "artifacts" / str(done.id)
    assert artifact_dir.is_dir()
    app.engine.delete(done.id)
    assert not artifact_dir.exists()
    with pytest.raises(JobNotFound):
        app.get_job(done.id)
    with pytest.raises(JobNotFound):  # not the end this process heard before the deletion
        app.wait(done, 5)


def test_cannot_delete_running_job(app: mieruka.App, tmp_path: Path) -> None:
    pidfile = tmp_path / "p"
    job = app.submit("sleep_in_child", seconds=30, pidfile=str(pidfile))
    wait_for_file(pidfile)
    with pytest.raises(ConflictError):
        app.engine.delete(job.id)
    app.engine.cancel(job.id)


def test_wait_times_out(app: mieruka.App) -> None:
    job = app.submit("sleep", seconds=1)
    with pytest.raises(JobTimeoutError):
        app.wait(job, 0.1)
    app.wait(job, 30)


@pytest.mark.parametrize("size", [10, 100_000])
def test_waiting_reads_the_store_only_when_it_must(
    app: mieruka.App, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """A job queued here is heard of from before it was announced: waiting for it takes no first
    look in the store, and its end event carries it as stored, also for a wait that begins after
    the end if it is small. A job too large to travel in an event (over the Redis bus's limit), or
    to be kept for later waits, is read once."""
    monkeypatch.setattr(app.engine, "settings", replace(app.engine.settings, poll_interval=30.0))
    reads: list[int] = []
    real_get = app.engine.store.get_job

    def get_job(job_id: int) -> object:
        reads.append(job_id)
        return real_get(job_id)

    monkeypatch.setattr(app.engine.store, "get_job", get_job)
    job = app.submit("sleep_then_text", seconds=0.3, size=size)
    done = app.wait(job, 30)
    assert done.status is JobStatus.SUCCEEDED and done.result == "x" * size
    assert done == real_get(job.id)
    large = size > 64 * 1024 and app.engine.settings.executor == "celery"  # the Redis bus leaves it out
    assert reads == ([job.id] if large else [])
    reads.clear()
    assert app.wait(job, 30) == done  # it ended before this wait began: a large record was not kept
    assert reads == ([job.id] if size > waiting.KEEP_RECORD_SIZE else [])
    failed = app.wait(app.submit("fail"), 30)
    app.engine.retry(failed.id)  # queued again: its old end is no answer
    again = app.wait(failed, 30)
    assert again.status is JobStatus.FAILED and again.attempts == 2 and again == real_get(failed.id)


def test_waiting_for_a_job_whose_end_event_is_lost(app: mieruka.App, monkeypatch: pytest.MonkeyPatch) -> None:
    """No end event (a bus that was down): the next look in the store finds the job ended."""
    monkeypatch.setattr(app.engine, "settings", replace(app.engine.settings, poll_interval=0.5))
    monkeypatch.setattr(Ending, "take", lambda self, event: False)
    started = time.monotonic()
    done = app.wait(app.submit("sleep_then_text", seconds=0.1), 30)
    assert done.status is JobStatus.SUCCEEDED and time.monotonic() - started >= 0.5  # found by a look, not an event


def test_many_log_lines_are_batched_and_read_by_range(app: mieruka.App) -> None:
    lines = 20 * FLUSH_LINES  # twenty batches at least; a hundred cost five times the CPU and told no more
    done = app.wait(app.submit("many_lines", lines=lines), 120)
    assert done.status is JobStatus.SUCCEEDED
    assert done.log_lines == lines
    page = app.engine.logs(done.id, after=lines - 10, limit=100)
    assert [line.text.split()[1] for line in page] == [str(i) for i in range(lines - 10, lines)]
    assert [line.text.split()[1] for line in app.engine.logs(done.id, after=4_990, limit=3)] == ["4990", "4991", "4992"]


def test_submit_to_start_is_fast_on_an_idle_pool(app: mieruka.App) -> None:
    """Not a speed target (bench/ has those): proves no polling interval sits in the way."""
    app.wait(app.submit("add", a=1), 30)  # warm up
    gaps = []
    for i in range(5):
        done = app.wait(app.submit("add", a=i), 30)
        assert done.started_at is not None
        gaps.append((done.started_at - done.created_at).total_seconds())
    assert min(gaps) < app.settings.poll_interval / 2, gaps


@pytest.mark.local_engine
@pytest.mark.worker_processes  # threads would finish every job before the other's worker is up
def test_a_second_engine_never_runs_the_same_job(app: mieruka.App, tmp_path: Path) -> None:
    """Claims are atomic in the store: two engines on one database split the work."""
    from tests.jobs import app as jobs_app

    other = mieruka.App("second")
    other.tasks = jobs_app.tasks
    other.ref = "tests.jobs:app"
    other.configure(
        home=str(tmp_path / "other"), database_url=app.settings.effective_database_url, workers=1, poll_interval=0.05
    )
    other.start()
    done: list[JobRecord] = []
    try:
        # Rounds of jobs until both engines have taken some: on a loaded machine the second
        # engine's worker may be up only after the first engine has run a whole round.
        deadline = time.monotonic() + 60
        while len({d.engine_id for d in done}) < 2 and time.monotonic() < deadline:
            jobs = [app.submit("sleep", seconds=0.3) for _ in range(8)]
            done += [app.wait(job, 30) for job in jobs]
    finally:
        other.stop()
    assert all(d.status is JobStatus.SUCCEEDED and d.attempts == 1 for d in done)
    assert len({d.engine_id for d in done}) == 2, "both engines should have taken jobs"


@pytest.mark.local_engine
def test_clean_stop_requeues_running_jobs_without_using_an_attempt(app: mieruka.App, tmp_path: Path) -> None:
    pidfile = tmp_path / "p"
    job = app.submit("sleep_in_child", seconds=30, pidfile=str(pidfile))
    wait_for_file(pidfile)
    home, url = app.settings.home, app.settings.effective_database_url
    app.stop()
    record = app.engine.store.get_job(job.id) if app.running else None
    from mieruka.store.sql import SqlJobStore

    store = SqlJobStore(url)
    record = store.get_job(job.id)
    store.close()
    assert record is not None and record.status is JobStatus.QUEUED and record.attempts == 0
    app.configure(home=home, database_url=url)
    app.start()
    app.engine.cancel(job.id)


@pytest.mark.local_engine
def test_reports_survive_a_store_failure(app: mieruka.App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write (database briefly unavailable) is retried: no finished job is lost."""
    from mieruka.store.base import Applied, Change, Claim, Transition

    store = app.engine.store
    real_apply = store.apply
    failures: list[int] = []

    def flaky_apply(changes: Sequence[Change], claim: Claim | None = None) -> Applied:
        if not failures and any(isinstance(c, Transition) and c.to is JobStatus.SUCCEEDED for c in changes):
            failures.append(len(changes))
            raise RuntimeError("database unavailable")
        return real_apply(changes, claim)

    monkeypatch.setattr(store, "apply", flaky_apply)
    done = app.wait(app.submit("add", a=1), 30)
    assert failures, "the failure was never injected"
    assert done.status is JobStatus.SUCCEEDED and done.result == 3
    assert app.wait(app.submit("add", a=2), 30).result == 4
