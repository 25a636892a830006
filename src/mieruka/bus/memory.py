"""The in-process event bus: one server process, a ring buffer of recent events for resume. Its ids
start at `first_id()`, so they never repeat those of an earlier run of the server."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Collection, Sequence

from ..core.events import Event
from .base import Unsubscribe, first_id
from .subscribers import Callback, Subscribers


class MemoryBus:
    def __init__(self, keep: int = 20_000, start: int | None = None) -> None:
        self._lock = threading.Lock()
        self._first_id = first_id() if start is None else start
        self._next_id = self._first_id
        self._ring: deque[Event] = deque(maxlen=keep)
        self._subscribers = Subscribers()

    def publish(self, event: Event) -> Event:
        with self._lock:
            event = event.numbered(self._next_id)
            self._next_id += 1
            # The ring serves replays (browsers): the job's record is for live subscribers only.
            self._ring.append(event if event.record is None else event.numbered(event.id, keep_record=False))
        for callback in self._subscribers.matching(event):
            callback(event)
        return event

    def publish_many(self, events: Sequence[Event]) -> list[Event]:
        return [self.publish(event) for event in events]

    def start_publish(self, events: Sequence[Event]) -> Callable[[], list[Event]]:
        published = self.publish_many(events)
        return lambda: published

    def subscribe(self, callback: Callback, topics: Collection[str] | None = None) -> Unsubscribe:
        return self._subscribers.add(callback, topics)

    def replay(self, after_id: int, topics: Collection[str] | None = None) -> list[Event] | None:
        with self._lock:
            events = list(self._ring)
            newest = self._next_id - 1
        if after_id == 0:  # every event of this run, if all are kept
            after_id = self._first_id - 1
        if after_id == newest:
            return []
        if after_id > newest or after_id < self._first_id - 1:
            return None  # not an id of this run: given out before the server restarted
        if not events or events[0].id > after_id + 1:
            return None
        wanted = None if topics is None else set(topics)
        return [
            e
            for e in events
            if e.id > after_id and (wanted is None or e.topic in wanted or wanted.intersection(e.extra_topics))
        ]

    def last_id(self) -> int:
        return self._next_id - 1

    def problem(self) -> str | None:
        return None

    def close(self) -> None:
        self._subscribers.clear()
