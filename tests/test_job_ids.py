"""The job ids a process holds ahead of its jobs (store/job_ids.py)."""

from __future__ import annotations

import pytest

from mieruka.store import job_ids
from mieruka.store.job_ids import JobIds


def test_ids_are_taken_in_order_and_topped_up_to_keep() -> None:
    ids = JobIds(keep=4)
    assert ids.take() is None and ids.wanted() == 4
    ids.add([13, 14])
    ids.add([11, 12])  # a second write's answer came first
    assert ids.wanted() == 0
    assert [ids.take() for _ in range(5)] == [11, 12, 13, 14, None]


def test_ids_held_too_long_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(job_ids.time, "monotonic", lambda: now[0])
    ids = JobIds(keep=4, fresh_for=1.0)
    ids.add([1, 2, 3])
    assert ids.take() == 1
    now[0] += 1.5
    assert ids.take() is None and ids.wanted() == 4  # a job's id is at most a second older than the job
