"""What waiters hear of a job's end (mieruka.engine.waiting): the engine's waits build on it."""

from __future__ import annotations

import enum
import time
from dataclasses import replace
from types import MappingProxyType

import pytest

from mieruka.core.clock import utcnow
from mieruka.core.events import Event, state_event
from mieruka.core.job import JobRecord
from mieruka.core.status import JobStatus
from mieruka.engine import waiting
from mieruka.engine.waiting import Ending, Watches


def ended(job_id: int = 1, status: JobStatus = JobStatus.SUCCEEDED) -> tuple[Event, JobRecord]:
    record = JobRecord(id=job_id, task="t", status=status, params={}, created_at=utcnow(), result=[1])
    return state_event(job_id, "t", status.value, {}, record), record


def test_a_waiter_is_told_once_of_the_end_and_gets_the_record_it_carried() -> None:
    ending = Ending()
    told: list[int] = []
    stop = ending.tell(lambda: told.append(1))
    ending.hear(state_event(1, "t", "running", {}))
    ending.hear(Event("progress", 1, "t", {"progress": 0.5}))
    assert told == [] and not ending.ended and ending.record() is None
    event, record = ended()
    ending.hear(event)
    assert told == [1] and ending.ended and ending.record() == record
    stop()
    assert ending.record() is None  # nobody is left to take it, and nobody keeps it (Watches do)


def test_a_waiter_after_the_end_is_told_at_once_and_gets_the_record() -> None:
    ending = Ending()
    event, record = ended()
    assert ending.take(event)
    told: list[int] = []
    ending.tell(lambda: told.append(1))
    assert told == [1] and ending.ended and ending.record() == record


def test_a_retried_job_has_not_ended_any_more(monkeypatch: pytest.MonkeyPatch) -> None:
    ending = Ending()
    ending.hear(ended()[0])
    assert not ending.take(state_event(1, "t", "queued", {}))
    assert not ending.ended and ending.record() is None
    told: list[int] = []
    ending.tell(lambda: told.append(1))
    assert told == []
    event, record = ended(status=JobStatus.FAILED)
    ending.hear(event)
    assert told == [1] and ending.record() == record
    later = time.monotonic() + waiting.RECORD_FRESH_FOR + 1
    monkeypatch.setattr("mieruka.engine.waiting.time.monotonic", lambda: later)
    assert ending.ended and ending.record() is None  # too old to trust: the store is read


def test_an_end_without_the_record_and_a_deletion() -> None:
    ending = Ending()
    ending.tell(lambda: None)
    ending.hear(state_event(1, "t", "failed", {}))  # a bus that left the record out
    assert ending.ended and ending.record() is None
    event, record = ended()
    ending.hear(event)
    assert ending.record() == record
    ending.hear(Event("deleted", 1, "t", {"status": "succeeded"}))
    assert ending.record() is None  # the store tells that it is gone


def test_watches_hear_their_jobs_and_forget_the_oldest() -> None:
    watches = Watches(keep=3)
    for job_id in (1, 2, 3):
        watches.add(job_id)
    first = watches.get(1)  # asked for: now the newest
    watches.add(4)
    assert watches.get(2) is None and len(watches) == 3
    assert first is not None and watches.get(1) is first
    told: list[int] = []
    first.tell(lambda: told.append(1))
    event, record = ended(1)
    watches.hear(event)
    watches.hear(ended(9)[0])  # not watched: ignored
    assert told == [1] and first.record() == record
    other = watches.get(3)
    assert other is not None and not other.ended


def test_watches_keep_the_records_of_the_last_ended_jobs_only() -> None:
    watches = Watches(keep=10, keep_records=2)
    for job_id in (1, 2, 3, 4):
        watches.add(job_id)
    watches.hear(state_event(4, "t", "failed", {}))  # no record carried: nothing kept
    records = {}
    for job_id in (1, 2, 3):
        event, records[job_id] = ended(job_id)
        watches.hear(event)
    endings = {job_id: watches.get(job_id) for job_id in (1, 2, 3, 4)}
    assert watches.records_kept() == 2
    assert [e.ended for e in endings.values() if e is not None] == [True, True, True, True]
    assert [e.record() for e in endings.values() if e is not None] == [None, records[2], records[3], None]


def test_a_large_record_is_kept_only_for_the_waiters_already_there() -> None:
    watches = Watches()
    watches.add(1)
    watches.add(2)
    waited, unwaited = watches.get(1), watches.get(2)
    assert waited is not None and unwaited is not None
    stop = waited.tell(lambda: None)
    for event, _ in (ended(1), ended(2)):
        assert event.record is not None
        watches.hear(replace(event, record={**event.record, "result": "x" * (waiting.KEEP_RECORD_SIZE + 1)}))
    kept = waited.record()
    assert kept is not None and kept.result == "x" * (waiting.KEEP_RECORD_SIZE + 1)
    stop()
    assert waited.record() is None and unwaited.record() is None and unwaited.ended
    assert watches.records_kept() == 0
    # keys 1 + 4 each, list items 1 + their own, strings 2 + length, the rest 8
    assert waiting._size_left({"a": [1, "bc", None], "d": {"e": 2.5}}, 100) == 100 - 5 - 9 - 5 - 9 - 5 - 5 - 8


def test_sizes_of_subclasses_and_other_mappings_read_as_their_base() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Colour(enum.StrEnum):
        RED = "red"

    assert waiting._size_left(Level.HIGH, 100) == waiting._size_left(3, 100) == 92
    assert waiting._size_left(True, 100) == 92
    assert waiting._size_left(Colour.RED, 100) == waiting._size_left("red", 100) == 95
    assert waiting._size_left(MappingProxyType({"ab": (1, b"xy")}), 100) == 100 - 6 - 1 - 8 - 1 - 4
    assert waiting._size_left(object(), 100) == 92
    # stops at the first item past the limit, however many follow
    assert waiting._size_left(["x" * 50, *range(1000)], 10) < 0
