"""A process's events on their way to the bus, in order, with some held back for the next trip."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from ..core.events import Event
from .base import EventBus

log = logging.getLogger(__name__)


class Outbox:
    """`hold` keeps events back without a round trip; `send` publishes the held events and its own
    in one round trip; `flush` publishes what is held. A worker holds a job's "running" event: a
    quick job's start then goes out with its end, and a longer job's with its first log line or its
    watcher's next `flush`. Whoever sends, events leave in the order they were handed over."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._lock = threading.Lock()  # held while publishing: no batch overtakes another
        self._held: list[Event] = []

    def hold(self, events: Sequence[Event]) -> None:
        with self._lock:
            self._held.extend(events)

    def send(self, events: Sequence[Event]) -> None:
        with self._lock:
            batch, self._held = [*self._held, *events], []
            if not batch:
                return
            try:
                self._bus.publish_many(batch)
            except Exception:
                log.exception("could not publish %d events", len(batch))

    def flush(self) -> None:
        self.send(())
