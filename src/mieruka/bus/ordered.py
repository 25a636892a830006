"""Publishing from a thread of its own, in order: the caller need not wait for the bus."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

from ..core.events import Event
from .base import EventBus

log = logging.getLogger(__name__)


class OrderedPublisher:
    """Publishes events on one thread, in the order they were handed over. `later` returns at once,
    optionally holding its events back for a moment; `now` returns once its events (and every one
    handed over before them) are out, so a process about to end, or a final event, never overtakes
    what came before. Whatever waits when `now` is called goes out with its events in one round
    trip: a job's "running" event held for a moment goes out together with its end when the job is
    quick, and on its own after the hold when it is not."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._cond = threading.Condition()
        self._queue: deque[tuple[Sequence[Event], float]] = deque()  # events, when they are due
        self._busy = False  # a batch taken from the queue is being published
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="mieruka-publisher", daemon=True)
        self._thread.start()

    def later(self, events: Sequence[Event], hold: float = 0.0) -> None:
        """Publish on the thread, after `hold` seconds at most (sooner if anything after it is due)."""
        with self._cond:
            if not self._closed:
                self._queue.append((events, time.monotonic() + hold))
                self._cond.notify()
                return
        self.now(events)

    def now(self, events: Sequence[Event]) -> None:
        with self._cond:
            while self._busy:  # a batch handed over before is on its way: it goes first
                self._cond.wait()
            batch = [event for waiting, _ in self._queue for event in waiting]
            self._queue.clear()
            self._busy = True
        try:
            self._publish([*batch, *events])
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._closed and not self._queue and not self._busy:
                        return
                    if not self._busy and self._queue:
                        now = time.monotonic()
                        # Everything up to the last item that is due goes, in order.
                        take = max((i + 1 for i, (_, due) in enumerate(self._queue) if due <= now), default=0)
                        if take or self._closed:
                            batch = [event for _ in range(take or len(self._queue))
                                     for event in self._queue.popleft()[0]]
                            self._busy = True
                            break
                        self._cond.wait(min(due for _, due in self._queue) - now)
                    else:
                        self._cond.wait()
            try:
                self._publish(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        try:
            self._bus.publish_many(events)
        except Exception:  # noqa: BLE001 - events are notifications; the store holds the truth
            log.exception("could not publish %d events", len(events))

    def close(self) -> None:
        """Publish what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)
