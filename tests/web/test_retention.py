"""Retention: old and excess finished jobs are pruned with their logs, artifacts and uploads."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import mieruka
from mieruka import JobStatus
from mieruka.errors import JobNotFound

pytestmark = pytest.mark.in_process  # jobs run on threads of this process: no worker interpreters to start


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def test_per_task_count_limit_prunes_jobs_logs_and_artifacts(app: mieruka.App) -> None:
    done = [app.wait(app.submit("kept_short", x=i), 30) for i in range(5)]
    assert all(d.status is JobStatus.SUCCEEDED for d in done)
    app.engine._prune()
    for old in done[:3]:
        with pytest.raises(JobNotFound):
            app.get_job(old.id)
        assert app.engine.store.read_logs(old.id) == []
        assert not (app.settings.home_path / "artifacts" / str(old.id)).exists()
    for kept in done[3:]:
        assert app.get_job(kept.id).artifacts
        assert (app.settings.home_path / "artifacts" / str(kept.id) / "x.txt").exists()


def test_age_limit_prunes_finished_jobs_only(app: mieruka.App, tmp_path: Path) -> None:
    old = app.wait(app.submit("add", a=1), 30)
    running = app.submit("sleep", seconds=3)
    app.engine.settings = app.settings.with_overrides(retention_max_age=0.5)
    time.sleep(0.8)
    app.engine._prune()
    with pytest.raises(JobNotFound):
        app.get_job(old.id)
    assert app.get_job(running.id).status in (JobStatus.QUEUED, JobStatus.RUNNING)
    app.engine.cancel(running.id)


def test_pruning_removes_uploaded_files(app: mieruka.App) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app.asgi()) as client:
        job = client.post("/api/tasks/read_upload/jobs", files=[("document", ("a.txt", b"abc", "text/plain"))]).json()
        client.get(f"/api/jobs/{job['id']}", params={"wait": 30})
    upload_dir = app.settings.home_path / "uploads" / job["params"]["document"]["upload_id"]
    assert upload_dir.is_dir()
    app.engine.settings = app.settings.with_overrides(retention_max_jobs=0)
    app.engine._prune()
    assert not upload_dir.exists()


def test_prune_runs_on_its_own(tmp_path: Path, database_url: str) -> None:
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    jobs_app.configure(
        home=str(tmp_path / "home"), database_url=database_url, workers=1, retention_max_jobs=1, prune_interval=0.3
    )
    with jobs_app:
        first = jobs_app.wait(jobs_app.submit("add", a=1), 30)
        jobs_app.wait(jobs_app.submit("add", a=2), 30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                jobs_app.get_job(first.id)
            except JobNotFound:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the older job was never pruned")
    jobs_app._settings = None


def test_a_store_with_nothing_to_prune_is_not_asked_task_by_task(
    app: mieruka.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    store = app.engine.store
    prune = store.prune

    def counted(task: str, *args: object) -> object:
        asked.append(task)
        return prune(task, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "prune", counted)
    done = [app.wait(app.submit("kept_short", x=i), 30) for i in range(2)]
    app.engine._prune()
    assert asked == []  # two finished jobs, kept_short keeps two, none is a month old
    assert all(app.get_job(d.id) for d in done)
    third = app.wait(app.submit("kept_short", x=2), 30)
    app.engine._prune()
    assert "kept_short" in asked and len(asked) == len(app.tasks)
    with pytest.raises(JobNotFound):
        app.get_job(done[0].id)
    assert app.get_job(third.id)
