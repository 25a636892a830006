"""OrderedPublisher: events go out in the order handed over; a held event waits at most its hold,
and goes out in the same round trip as whatever `now` publishes while it waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import pytest

from mieruka.bus.memory import MemoryBus
from mieruka.bus.ordered import OrderedPublisher
from mieruka.core.events import Event


class BatchRecordingBus(MemoryBus):
    """A MemoryBus that also notes each batch it was handed (one batch = one round trip on Redis)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.batches: list[list[int]] = []
        self.threads: list[str] = []
        self.delay = delay
        self.changed = threading.Condition()

    def publish_many(self, events: Sequence[Event]) -> list[Event]:
        time.sleep(self.delay)  # a slow round trip
        out = super().publish_many(events)
        with self.changed:
            self.batches.append([e.job_id for e in events])
            self.threads.append(threading.current_thread().name)
            self.changed.notify_all()
        return out

    def wait_for(self, count: int, timeout: float = 5.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: sum(map(len, self.batches)) >= count, timeout), self.batches


def ev(job_id: int) -> Event:
    return Event("state", job_id, "t", {"status": "running"})


@pytest.fixture
def bus() -> BatchRecordingBus:
    return BatchRecordingBus()


@pytest.fixture
def publisher(bus: BatchRecordingBus) -> Iterator[OrderedPublisher]:
    pub = OrderedPublisher(bus)
    yield pub
    pub.close()


def test_now_with_nothing_waiting_publishes_in_the_callers_thread(bus: BatchRecordingBus,
                                                                   publisher: OrderedPublisher) -> None:
    publisher.now([ev(1), ev(2)])
    assert bus.batches == [[1, 2]]
    assert bus.threads == [threading.current_thread().name]


def test_later_goes_out_at_once_on_the_thread(bus: BatchRecordingBus, publisher: OrderedPublisher) -> None:
    publisher.later([ev(1)])
    bus.wait_for(1, timeout=1.0)
    assert bus.threads == ["mieruka-publisher"]


def test_a_held_event_waits_its_hold_then_goes_alone(bus: BatchRecordingBus, publisher: OrderedPublisher) -> None:
    start = time.monotonic()
    publisher.later([ev(1)], hold=0.3)
    time.sleep(0.1)
    assert bus.batches == []  # still held
    bus.wait_for(1)
    assert 0.25 <= time.monotonic() - start < 2.0
    assert bus.batches == [[1]]


def test_now_takes_a_held_event_along_in_one_batch(bus: BatchRecordingBus, publisher: OrderedPublisher) -> None:
    publisher.later([ev(1)], hold=5.0)
    start = time.monotonic()
    publisher.now([ev(2)])
    assert time.monotonic() - start < 1.0  # did not wait for the hold
    assert bus.batches == [[1, 2]]
    time.sleep(0.2)
    assert bus.batches == [[1, 2]]  # nothing goes out twice


def test_an_event_due_now_behind_a_held_one_takes_it_along(bus: BatchRecordingBus,
                                                           publisher: OrderedPublisher) -> None:
    publisher.later([ev(1)], hold=5.0)
    publisher.later([ev(2)])  # due at once: what came before goes first, without waiting
    bus.wait_for(2, timeout=1.0)
    assert [job for batch in bus.batches for job in batch] == [1, 2]


def test_now_waits_for_a_batch_in_flight_and_keeps_the_order() -> None:
    bus = BatchRecordingBus(delay=0.2)
    publisher = OrderedPublisher(bus)
    try:
        publisher.later([ev(1)])
        time.sleep(0.05)  # the thread is publishing 1 (slowly)
        publisher.now([ev(2)])
        assert bus.batches == [[1], [2]]
        assert [e.job_id for e in bus.replay(0) or []] == [1, 2]
    finally:
        publisher.close()


def test_events_from_several_threads_each_keep_their_order(bus: BatchRecordingBus,
                                                           publisher: OrderedPublisher) -> None:
    def produce(base: int) -> None:
        for n in range(50):
            if n % 3 == 0:
                publisher.now([ev(base + n)])
            else:
                publisher.later([ev(base + n)], hold=0.01 * (n % 2))

    threads = [threading.Thread(target=produce, args=(base,)) for base in (1000, 2000, 3000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bus.wait_for(150)
    order = [job for batch in bus.batches for job in batch]
    assert sorted(order) == sorted(base + n for base in (1000, 2000, 3000) for n in range(50))  # each once
    for base in (1000, 2000, 3000):
        mine = [job for job in order if base <= job < base + 1000]
        assert mine == sorted(mine)


def test_close_publishes_what_is_held(bus: BatchRecordingBus) -> None:
    publisher = OrderedPublisher(bus)
    publisher.later([ev(1)], hold=60.0)
    publisher.later([ev(2)], hold=60.0)
    start = time.monotonic()
    publisher.close()
    assert time.monotonic() - start < 2.0
    assert [job for batch in bus.batches for job in batch] == [1, 2]
    publisher.later([ev(3)])  # after close: published in the caller's thread
    assert bus.batches[-1] == [3]
