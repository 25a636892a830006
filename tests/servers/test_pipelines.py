"""Pipelines run by real workers: DAG order and parallelism, outputs between steps, failure and
retry from the failed step, cancel killing a shell step's process tree, the progress protocol."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import psutil
import pytest

import mieruka
from mieruka import JobStatus
from mieruka.core.steps import StepRecord, StepStatus
from tests.conftest import wait_for_file

pytestmark = pytest.mark.in_process  # jobs on threads of this process; cancel kills steps alike


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # The store's side of steps runs on every backend in tests/contracts/test_store_contract.py.
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def steps_of(app: mieruka.App, job_id: int) -> dict[str, StepRecord]:
    return {s.name: s for s in app.engine.store.list_steps(job_id)}


def span(step: StepRecord) -> tuple[datetime, datetime]:
    """When a step that ran started and finished."""
    assert step.started_at is not None and step.finished_at is not None, step
    return step.started_at, step.finished_at


def test_dag_order_and_parallel_steps(app: mieruka.App, tmp_path: Path) -> None:
    done = app.wait(app.submit("pipe_diamond", meet_dir=str(tmp_path)), 60)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == ["first", "left", "right"]
    steps = steps_of(app, done.id)
    assert [s.name for s in app.engine.store.list_steps(done.id)] == ["first", "left", "right", "last"]
    assert all(s.status is StepStatus.SUCCEEDED for s in steps.values())
    assert steps["last"].depends_on == ["first", "left", "right"]
    first, left, right, last = (steps[n] for n in ("first", "left", "right", "last"))
    assert first.output["end"] <= left.output["start"] and first.output["end"] <= right.output["start"]
    # left and right each waited for the other to start (see tests/jobs.py meet): they ran in parallel
    assert left.output["start"] < right.output["end"] and right.output["start"] < left.output["end"]
    assert span(last)[0] >= max(span(left)[1], span(right)[1])
    assert all(span(s)[0] <= span(s)[1] for s in steps.values())
    logs = app.engine.store.read_logs(done.id, step="left")
    assert [line.text for line in logs] == ["left ran"]
    assert {line.step for line in app.engine.store.read_logs(done.id)} == {"first", "left", "right"}


def test_outputs_files_artifacts_and_progress_protocol(app: mieruka.App) -> None:
    done = app.wait(app.submit("pipe_values", text="pear apple fig"), 60)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == {"sorted": ["apple", "fig", "pear"], "words": 3}
    steps = steps_of(app, done.id)
    assert steps["count"].output == {"words": 3, "first": "pear"}
    assert steps["count"].artifacts == ["words.txt"]
    assert steps["sort"].artifacts == ["sorted.txt"]
    assert {a.name for a in done.artifacts} == {"words.txt", "sorted.txt"}
    sort_log = [line.text for line in app.engine.store.read_logs(done.id, step="sort")]
    assert sort_log == ["first word: pear"]  # protocol lines are read, not logged
    events: list[object] = []
    assert steps["sort"].status is StepStatus.SUCCEEDED
    del events


def test_failure_then_retry_reruns_only_what_did_not_succeed(app: mieruka.App, tmp_path: Path) -> None:
    counter, marker = tmp_path / "counter", tmp_path / "marker"
    job = app.submit("pipe_flaky", counter=str(counter), marker=str(marker))
    done = app.wait(job, 60)
    assert done.status is JobStatus.FAILED
    assert done.error is not None and "flaky" in done.error and "marker missing" in done.error
    steps = steps_of(app, job.id)
    assert steps["prepare"].status is StepStatus.SUCCEEDED
    assert steps["optional"].status is StepStatus.FAILED and steps["optional"].allow_failure
    assert steps["flaky"].status is StepStatus.FAILED
    assert steps["after"].status is StepStatus.SKIPPED
    assert "RuntimeError: marker missing" in "\n".join(
        line.text for line in app.engine.store.read_logs(job.id, step="flaky")
    )
    marker.write_text("here")
    app.engine.retry(job.id)
    done = app.wait(job.id, 60)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == "PREPARED+FLAKY"
    steps = steps_of(app, job.id)
    assert steps["prepare"].reused and steps["prepare"].status is StepStatus.SUCCEEDED
    assert counter.read_text() == "ran\n"  # the succeeded step did not run again
    assert not steps["flaky"].reused and steps["flaky"].status is StepStatus.SUCCEEDED
    assert steps["after"].status is StepStatus.SUCCEEDED
    assert steps["optional"].status is StepStatus.FAILED  # allowed to fail: runs again, fails again


def test_cancel_kills_the_running_shell_step_and_its_children(app: mieruka.App, tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    job = app.submit("pipe_sleepy", pidfile=str(pidfile))
    text = wait_for_file(pidfile, 30)
    deadline = time.monotonic() + 30
    while len(pidfile.read_text().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [int(p) for p in pidfile.read_text().split()]
    assert len(pids) == 2, text
    assert all(psutil.pid_exists(p) for p in pids)
    # The step writes the pids before its progress line: wait for that too, then cancel.
    while steps_of(app, job.id)["sleep"].progress is None and time.monotonic() < deadline:
        time.sleep(0.05)
    app.engine.cancel(job.id)
    done = app.wait(job.id, 30)
    assert done.status is JobStatus.CANCELLED
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
    steps = steps_of(app, job.id)
    assert steps["start"].status is StepStatus.SUCCEEDED
    assert steps["sleep"].status is StepStatus.CANCELLED
    assert steps["sleep"].progress == pytest.approx(0.1)


def _alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_step_timeout_and_allowed_failures(app: mieruka.App) -> None:
    started = time.monotonic()
    done = app.wait(app.submit("pipe_timeout"), 60)
    assert time.monotonic() - started < 20
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == {
        "steps": {"slow": "failed", "needs": "skipped", "independent": "succeeded", "missing": "failed"}
    }
    steps = steps_of(app, done.id)
    assert steps["slow"].error == "timed out after 0.5s"
    assert steps["missing"].error == "cannot start 'no-such-program-here': no such program"
    assert [line.text for line in app.engine.store.read_logs(done.id, step="independent")] == ["independent"]


RUN_ALONE = """
import sys, types
from pathlib import Path
from mieruka.pipeline.graph import Pipeline
from mieruka.pipeline.run import PipelineRun

class Reporter:
    def lines(self, job_id, lines, step=None): pass
    def steps_planned(self, job_id, steps): pass
    def step_saved(self, step): pass
    def progress(self, job_id, fraction, message): pass

class Artifacts:
    def work_dir(self, job_id): return Path(sys.argv[1]) / "work"

context = types.SimpleNamespace(id=1, task="t", params={}, attempt=1, max_attempts=1, upload_root=None,
                                _reporter=Reporter(), _artifacts=Artifacts(), progress=lambda f, m: None)
pipe = Pipeline(context)
pipe.shell("sleep 120 & echo $! > {pidfile}; wait", pidfile=str(Path(sys.argv[1]) / "pid"), name="sleep")
PipelineRun(pipe, context, "unused:app", 1).run()
"""


def test_sigterm_to_the_process_running_a_pipeline_stops_its_steps(tmp_path: Path) -> None:
    """Executors that stop a job with SIGTERM (not the local one, which kills the whole group)."""
    import subprocess
    import sys

    runner = subprocess.Popen([sys.executable, "-c", RUN_ALONE, str(tmp_path)], start_new_session=True)
    pid = 0
    try:
        pid = int(wait_for_file(tmp_path / "pid", 30))
        assert _alive(pid)
        runner.terminate()  # SIGTERM to the runner's process only, not its group
        assert runner.wait(timeout=10) != 0
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        if runner.poll() is None:
            runner.kill()
        if pid and _alive(pid):  # this test's own sleep, left behind only when it fails
            psutil.Process(pid).kill()


def test_the_example_in_docs_pipelines_md_runs_as_shown(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[2] / "docs" / "pipelines.md").read_text()
    code = docs.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "words.py").write_text(code)
    from mieruka.loader import load_app

    words_app = load_app(str(tmp_path / "words.py"))
    words_app.configure(home=str(tmp_path / "home"), workers=1)
    document = tmp_path / "home" / "uploads" / "u1" / "doc.txt"
    document.parent.mkdir(parents=True)
    document.write_text("the cat and the dog and the bird")
    with words_app:
        ref = {"upload_id": "u1", "filename": "doc.txt", "size": document.stat().st_size, "content_type": "text/plain"}
        done = words_app.wait(words_app.submit("word_report", document=ref, top=2), 60)
        assert done.status is JobStatus.SUCCEEDED, done.error
        assert done.result == {"top": ["the", "and"], "words": 8}
        steps = {s.name: s for s in words_app.engine.store.list_steps(done.id)}
        assert list(steps) == ["clean", "sort", "count", "report"]
        assert steps["report"].depends_on == ["count", "clean", "sort"]
        assert [a.name for a in done.artifacts] == ["report.html"]


def test_a_clean_stop_requeues_the_job_and_closes_its_steps(app: mieruka.App, tmp_path: Path) -> None:
    from mieruka.store.sql import SqlJobStore

    pidfile = tmp_path / "pids"
    job = app.submit("pipe_sleepy", pidfile=str(pidfile))
    wait_for_file(pidfile, 30)
    url = app.settings.effective_database_url
    app.stop()
    store = SqlJobStore(url)
    try:
        record = store.get_job(job.id)
        assert record is not None and record.status is JobStatus.QUEUED
        steps = {s.name: s.status for s in store.list_steps(job.id)}
        assert steps == {"start": StepStatus.SUCCEEDED, "sleep": StepStatus.CANCELLED}
    finally:
        store.close()
