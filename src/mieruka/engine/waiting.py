"""Waiting for jobs to end: what a waiter hears of a job's end, the jobs an engine has watched
since it queued them (waiting for one of those needs no first look in the store: it cannot have
ended unheard; and if it has ended lately, its end event brought it as stored), and the engine's
waits built on them (`Waiter`)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..bus.base import EventBus, Unsubscribe
from ..core.events import Event
from ..core.job import JobRecord
from ..core.status import FINISHED
from ..errors import JobTimeoutError

_FINISHED_VALUES = frozenset(s.value for s in FINISHED)
KEEP_RECORDS = 1000  # ended jobs whose record a process keeps for waiters yet to come
KEEP_RECORD_SIZE = 4096  # about the bytes of JSON a kept one may take (a larger one is read again)
RECORD_FRESH_FOR = 60.0  # seconds: an older one is read from the store again


def finished_event(event: Event) -> bool:
    return event.kind in ("state", "deleted") and event.data.get("status") in _FINISHED_VALUES


class Ending:
    """One job's end as heard on the bus (from the bus's thread); waiters ask to be told of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ended = False
        self._carried: Mapping[str, Any] | None = None
        self._heard_at = 0.0
        self._kept = False
        self._waiters: list[Callable[[], object]] = []

    def hear(self, event: Event) -> None:
        """The bus callback."""
        self.take(event)

    def take(self, event: Event) -> bool:
        """Take in one of the job's events; True if it brought the job as stored at its end, and
        that record is small enough to be kept once no waiter is left."""
        if event.kind not in ("state", "deleted"):
            return False
        if not finished_event(event):  # queued or running again (a retry): not ended any more
            with self._lock:
                self.ended, self._carried, self._kept = False, None, False
            return False
        small = event.record is not None and _size_left(event.record, KEEP_RECORD_SIZE) >= 0
        with self._lock:
            self.ended = True
            # A large one only for the waiters already there: a process keeps no large results.
            self._carried = event.record if small or self._waiters else None
            self._heard_at = time.monotonic()
            waiters = list(self._waiters)
        for tell in waiters:
            tell()
        return small

    def tell(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call `callback` once the job has ended (now, if it has); returns the way to stop."""
        with self._lock:
            ended = self.ended
            if not ended:
                self._waiters.append(callback)
        if ended:
            callback()

        def stop() -> None:
            with self._lock:
                if callback in self._waiters:
                    self._waiters.remove(callback)
                if not self._waiters and not self._kept:
                    self._carried = None  # nobody is left to take it, and it is not one to keep

        return stop

    def record(self) -> JobRecord | None:
        """The job as stored at its end, if its end event carried it, lately."""
        with self._lock:
            carried = self._carried if self.ended else None
            if carried is not None and time.monotonic() - self._heard_at > RECORD_FRESH_FOR:
                carried = self._carried = None
        return None if carried is None else JobRecord.from_json(carried)

    def keep_record(self) -> None:
        """Keep the record once no waiter is left (Watches keeps a bounded number)."""
        with self._lock:
            self._kept = True

    def forget_record(self) -> None:
        with self._lock:
            self._carried, self._kept = None, False


class Watches:
    """The jobs this process queued lately, each heard through one bus subscription (all events)
    from before it was announced. The oldest are forgotten beyond `keep`: waiting for one of those
    takes a look in the store, as for any job. Of the jobs that ended, the records of the last
    `keep_records` are kept, so that waiting for a job that ended before the wait began (a batch
    queued, then waited for one by one) reads nothing either."""

    def __init__(self, keep: int = 10_000, keep_records: int = KEEP_RECORDS) -> None:
        self._lock = threading.Lock()
        self._endings: OrderedDict[int, Ending] = OrderedDict()
        self._holding: OrderedDict[int, Ending] = OrderedDict()
        self._keep = keep
        self._keep_records = keep_records

    def hear(self, event: Event) -> None:
        """The bus callback."""
        if event.kind not in ("state", "deleted"):
            return
        with self._lock:
            ending = self._endings.get(event.job_id)
        if ending is None or not ending.take(event):
            return
        ending.keep_record()
        with self._lock:
            self._holding[event.job_id] = ending
            self._holding.move_to_end(event.job_id)
            while len(self._holding) > self._keep_records:
                self._holding.popitem(last=False)[1].forget_record()

    def add(self, job_id: int) -> None:
        with self._lock:
            self._endings[job_id] = Ending()
            if len(self._endings) > self._keep:
                self._endings.popitem(last=False)

    def get(self, job_id: int) -> Ending | None:
        with self._lock:
            ending = self._endings.get(job_id)
            if ending is not None:
                self._endings.move_to_end(job_id)
        return ending

    def __len__(self) -> int:
        return len(self._endings)

    def records_kept(self) -> int:
        with self._lock:
            return len(self._holding)


def _size_left(value: object, left: int) -> int:
    """`left` less about the bytes of `value` as JSON; it stops early once below 0, so that a
    large value costs no more to size than a small one. Run for every job that ends: the scalars
    that make up most of a record are told by their type before any isinstance (an ABC's is slow)."""
    if left < 0:
        return left
    if type(value) in _SCALARS:
        return left - 8
    if isinstance(value, str | bytes):
        return left - len(value) - 2
    if isinstance(value, dict | Mapping):
        for key, item in value.items():
            left = _size_left(item, left - len(str(key)) - 4)
            if left < 0:
                break
        return left
    if isinstance(value, list | tuple):
        for item in value:
            left = _size_left(item, left - 1)
            if left < 0:
                break
        return left
    return left - 8


_SCALARS = frozenset({type(None), bool, int, float})


class Waiter:
    """Blocks until a job has finished. Woken by the job's end event, which mostly carries the job
    as stored (then the store is not read again); it also looks in the store now and then, in case
    an event never arrives (another server on the in-memory bus, a bus that was briefly down)."""

    def __init__(
        self,
        bus: EventBus,
        watches: Watches,
        get: Callable[[int], JobRecord],
        get_async: Callable[[int], Awaitable[JobRecord]],
        poll_interval: float,
    ) -> None:
        self.bus = bus
        self.watches = watches
        self.get = get
        self.get_async = get_async
        self.poll_interval = poll_interval
        self.watching: Unsubscribe | None = None  # while the engine runs: its watches hear the bus

    def wait(self, job_id: int, timeout: float) -> JobRecord:
        done = threading.Event()
        ending, unsubscribe = self._ending_of(job_id)
        untell = ending.tell(done.set)
        deadline = time.monotonic() + timeout
        try:
            record = ending.record()
            if record is None and _must_look(ending, unsubscribe):
                record = self.get(job_id)
            while record is None or not record.finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done.wait(min(remaining, self.poll_interval))
                record = ending.record() or self.get(job_id)
        finally:
            untell()
            if unsubscribe is not None:
                unsubscribe()
        return _waited(job_id, record if record is not None else self.get(job_id), timeout)

    async def wait_async(self, job_id: int, timeout: float) -> JobRecord:
        import asyncio  # loaded by now: this runs on an event loop (an engine in a script never needs it)

        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        ending, unsubscribe = self._ending_of(job_id)
        untell = ending.tell(lambda: loop.call_soon_threadsafe(done.set))
        deadline = time.monotonic() + timeout
        try:
            record = ending.record()
            if record is None and _must_look(ending, unsubscribe):
                record = await self.get_async(job_id)
            while record is None or not record.finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(done.wait(), min(remaining, self.poll_interval))
                except TimeoutError:
                    pass
                carried = ending.record()
                record = carried if carried is not None else await self.get_async(job_id)
        finally:
            untell()
            if unsubscribe is not None:
                unsubscribe()
        if record is None:
            record = await self.get_async(job_id)
        return _waited(job_id, record, timeout)

    def _ending_of(self, job_id: int) -> tuple[Ending, Unsubscribe | None]:
        """The job's end as this engine has heard it since queueing the job, or else as heard from
        now on (with the subscription to end)."""
        watched = self.watches.get(job_id)
        if watched is not None:
            return watched, None
        ending = Ending()
        return ending, self.bus.subscribe(ending.hear, [f"job:{job_id}"])


def _must_look(ending: Ending, unsubscribe: Unsubscribe | None) -> bool:
    """Whether a wait without the job's end record starts with a look in the store: not for a job
    watched since it was queued whose end is not heard yet (it runs still, or its end event was
    lost, which the next look finds)."""
    return unsubscribe is not None or ending.ended


def _waited(job_id: int, record: JobRecord, timeout: float) -> JobRecord:
    if not record.finished:
        raise JobTimeoutError(f"job {job_id} is still {record.status.value} after {timeout:g}s")
    return record
