"""The job ids a process holds ahead of its jobs (store/job_ids.py)."""

from __future__ import annotations

import pytest

from mieruka.store.job_ids import JobIds


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    clock = [100.0]
    monkeypatch.setattr("mieruka.store.job_ids.time.monotonic", lambda: clock[0])
    return clock


def test_a_busy_process_holds_as_many_as_it_took_in_the_last_second(now: list[float]) -> None:
    ids = JobIds(keep=4)
    assert ids.take() is None and ids.wanted() == 0  # one job now and then: its id comes with it
    now[0] += 0.5
    assert ids.take() is None and ids.wanted() == 1
    for _ in range(4):
        ids.take()
    assert ids.wanted() == 4  # at most keep
    ids.add([13, 14])
    ids.add([11, 12])  # a second write's answer came first
    assert ids.wanted() == 0
    assert [ids.take() for _ in range(5)] == [11, 12, 13, 14, None]
    now[0] += 5
    assert ids.take() is None and ids.wanted() == 0  # quiet again


def test_ids_held_too_long_are_dropped(now: list[float]) -> None:
    ids = JobIds(keep=4, fresh_for=1.0)
    ids.add([1, 2, 3])
    assert ids.take() == 1
    now[0] += 1.5
    assert ids.take() is None  # a job's id is at most a second older than the job
