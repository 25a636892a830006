"""Waiting for jobs to end: what a waiter hears of a job's end, and the jobs an engine has watched
since it queued them (waiting for one of those needs no first look in the store: it cannot have
ended unheard)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from .core.events import Event
from .core.job import JobRecord
from .core.status import FINISHED

_FINISHED_VALUES = frozenset(s.value for s in FINISHED)


def finished_event(event: Event) -> bool:
    return event.kind in ("state", "deleted") and event.data.get("status") in _FINISHED_VALUES


class Ending:
    """One job's end as heard on the bus (from the bus's thread); waiters ask to be told of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ended = False
        self._carried: Mapping[str, Any] | None = None
        self._waiters: list[Callable[[], object]] = []

    def hear(self, event: Event) -> None:
        if not finished_event(event):
            return
        with self._lock:
            self.ended = True
            # Kept only for a waiter already there: one that comes later reads the store, and
            # an engine's watches hold no results nobody asked for.
            self._carried = event.record if self._waiters else None
            waiters = list(self._waiters)
        for tell in waiters:
            tell()

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
                if not self._waiters:
                    self._carried = None  # nobody is left to take it

        return stop

    def record(self) -> JobRecord | None:
        """The job as stored at its end, if its end event carried it to a waiter."""
        carried = self._carried
        return None if carried is None else JobRecord.from_json(carried)


class Watches:
    """The jobs this process queued lately, each heard through one bus subscription (all events)
    from before it was announced. The oldest are forgotten beyond `keep`: waiting for one of those
    takes a look in the store, as for any job."""

    def __init__(self, keep: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._endings: OrderedDict[int, Ending] = OrderedDict()
        self._keep = keep

    def hear(self, event: Event) -> None:
        """The bus callback."""
        if event.kind not in ("state", "deleted"):
            return
        with self._lock:
            ending = self._endings.get(event.job_id)
        if ending is not None:
            ending.hear(event)

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
