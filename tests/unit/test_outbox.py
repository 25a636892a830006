"""Outbox: events leave in the order handed over; held events go out with the next batch, in the
same round trip, or when flushed."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from mieruka.bus.memory import MemoryBus
from mieruka.bus.outbox import Outbox
from mieruka.core.events import Event


class BatchRecordingBus(MemoryBus):
    """A MemoryBus that also notes each batch it was handed (one batch = one round trip on Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[int]] = []

    def publish_many(self, events: Sequence[Event]) -> list[Event]:
        self.batches.append([e.job_id for e in events])
        return super().publish_many(events)


def ev(job_id: int) -> Event:
    return Event("state", job_id, "t", {"status": "running"})


def test_send_publishes_one_batch() -> None:
    bus = BatchRecordingBus()
    Outbox(bus).send([ev(1), ev(2)])
    assert bus.batches == [[1, 2]]


def test_held_events_wait_and_go_out_with_the_next_batch() -> None:
    bus = BatchRecordingBus()
    outbox = Outbox(bus)
    outbox.hold([ev(1)])
    outbox.hold([ev(2)])
    assert bus.batches == []
    outbox.send([ev(3)])
    assert bus.batches == [[1, 2, 3]]
    assert [e.job_id for e in bus.replay(0) or []] == [1, 2, 3]
    outbox.send([ev(4)])
    assert bus.batches[-1] == [4]  # nothing goes out twice


def test_flush_sends_what_is_held_and_nothing_when_nothing_is() -> None:
    bus = BatchRecordingBus()
    outbox = Outbox(bus)
    outbox.flush()
    assert bus.batches == []
    outbox.hold([ev(1)])
    outbox.flush()
    assert bus.batches == [[1]]
    outbox.flush()
    assert bus.batches == [[1]]


def test_events_from_several_threads_each_keep_their_order() -> None:
    bus = BatchRecordingBus()
    outbox = Outbox(bus)

    def produce(base: int) -> None:
        for n in range(200):
            if n % 3:
                outbox.hold([ev(base + n)])
            elif n % 2:
                outbox.send([ev(base + n)])
            else:
                outbox.flush()
                outbox.send([ev(base + n)])

    threads = [threading.Thread(target=produce, args=(base,)) for base in (1000, 2000, 3000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outbox.flush()
    order = [job for batch in bus.batches for job in batch]
    assert sorted(order) == sorted(base + n for base in (1000, 2000, 3000) for n in range(200))  # each once
    for base in (1000, 2000, 3000):
        mine = [job for job in order if base <= job < base + 1000]
        assert mine == sorted(mine)


def test_a_failing_bus_drops_the_batch_and_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenBus(MemoryBus):
        def publish_many(self, events: Sequence[Event]) -> list[Event]:
            raise ConnectionError("down")

    outbox = Outbox(BrokenBus())
    outbox.hold([ev(1)])
    outbox.send([ev(2)])
    assert "could not publish 2 events" in caplog.text
    outbox.flush()  # the dropped ones are not tried again
    assert caplog.text.count("could not publish") == 1
