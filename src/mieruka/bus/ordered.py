"""Publishing from a thread of its own, in order: the caller need not wait for the bus."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from ..core.events import Event
from .base import EventBus

log = logging.getLogger(__name__)


class OrderedPublisher:
    """Publishes batches of events on one thread, in the order they were handed over. `later`
    returns at once; `now` returns once its events (and every batch before them) are out, so a
    process about to end, or a final event, never overtakes what came before."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._queue: queue.SimpleQueue[tuple[Sequence[Event], threading.Event | None] | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._pending = 0  # batches handed to the thread and not yet out
        self._thread = threading.Thread(target=self._run, name="mieruka-publisher", daemon=True)
        self._thread.start()

    def later(self, events: Sequence[Event]) -> None:
        if self._closed:
            self.now(events)
            return
        with self._lock:
            self._pending += 1
        self._queue.put((events, None))

    def now(self, events: Sequence[Event]) -> None:
        with self._lock:
            inline = self._closed or self._pending == 0  # nothing to overtake: no thread hand-over
            if not inline:
                self._pending += 1
        if inline:
            self._publish(events)
            return
        done = threading.Event()
        self._queue.put((events, done))
        done.wait()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            events, done = item
            self._publish(events)
            with self._lock:
                self._pending -= 1
            if done is not None:
                done.set()

    def _publish(self, events: Sequence[Event]) -> None:
        try:
            for event in events:
                self._bus.publish(event)
        except Exception:  # noqa: BLE001 - events are notifications; the store holds the truth
            log.exception("could not publish %d events", len(events))

    def close(self) -> None:
        """Publish what is queued, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=10)
