"""Where mieruka runs: without Linux's pidfd (macOS, the BSDs) worker exits are still noticed, and on
a system that is not POSIX it refuses to start, in one line."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mieruka
from mieruka import ConfigError, Settings
from mieruka.core.status import JobStatus
from mieruka.wiring import check_settings


@pytest.fixture
def without_pidfd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[mieruka.App]:
    from tests.jobs import app

    monkeypatch.delattr(os, "pidfd_open", raising=False)
    app._settings = None
    app.configure(home=str(tmp_path / "home"), workers=1, poll_interval=0.2, prune_interval=3600)
    app.start()
    try:
        yield app
    finally:
        app.stop()
        app._settings = None


def test_worker_exits_are_noticed_without_pidfd(without_pidfd: Any) -> None:
    app = without_pidfd
    assert not hasattr(os, "pidfd_open")
    assert app.wait(app.submit("add", a=1), 30).result == 3
    died = app.wait(app.submit("exit_hard", code=3), 30)
    assert died.status is JobStatus.FAILED and died.error == "the worker process exited with code 3"
    assert app.wait(app.submit("add", a=2), 30).result == 4  # a new worker took its place


def test_cancel_kills_without_pidfd(without_pidfd: Any, tmp_path: Path) -> None:
    import time

    import psutil

    app = without_pidfd
    pidfile = tmp_path / "child.pid"
    job = app.submit("sleep_in_child", seconds=60, pidfile=str(pidfile))
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the job's child never started"
        time.sleep(0.05)
    child = int(pidfile.read_text().split()[1])
    app.engine.cancel(job.id)
    assert app.wait(job.id, 30).status is JobStatus.CANCELLED
    deadline = time.monotonic() + 30
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the job's child outlived the cancel"
        time.sleep(0.05)


def test_a_system_that_is_not_posix_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "name", "nt")
    with pytest.raises(ConfigError, match="POSIX systems.*WSL"):
        check_settings(Settings())
