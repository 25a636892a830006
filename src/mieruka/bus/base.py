"""The event bus interface: publish, subscribe with a callback, replay recent events.

Event ids increase across server restarts too (see `first_id`): a browser that reconnects to a
restarted server with the id it last saw never has the new server's events taken for ones it saw.
An id a bus did not give out (from before a restart, or from the future) is answered by `replay`
with None, the sign for the client to load the state afresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from ..core.events import Event

Unsubscribe = Callable[[], None]


class EventBus(Protocol):
    def publish(self, event: Event) -> Event:
        """Send an event to every matching subscriber; returns it with its id set."""

    def publish_many(self, events: Sequence[Event]) -> list[Event]:
        """Publish events in order, in one round trip where the bus has them; returns them with ids."""

    def start_publish(self, events: Sequence[Event]) -> Callable[[], list[Event]]:
        """Start publishing; the returned function finishes and returns the events with their ids.
        What the caller does in between overlaps the round trip, and cannot overtake the events."""

    def subscribe(self, callback: Callable[[Event], None], topics: Collection[str] | None = None) -> Unsubscribe:
        """Call `callback` (from the publisher's thread: be quick) for events on `topics`, or all."""

    def replay(self, after_id: int, topics: Collection[str] | None = None) -> list[Event] | None:
        """Events after `after_id`, or None when they are no longer kept or `after_id` is not one of
        this bus's ids (given out before a restart): the caller must resync. `after_id` 0: every
        event since this bus started, when it holds them all and can tell (a shared bus: None)."""

    def last_id(self) -> int:
        """The id of the newest event published (before the first: below the first's id)."""

    def problem(self) -> str | None:
        """Why events cannot travel now, or None when they can (for /healthz)."""

    def close(self) -> None:
        """Stop delivering events."""


def first_id() -> int:
    """Where a bus starting now numbers its events from: microseconds since 1970. A server started
    later gives higher ids than an earlier one unless that one published more than one event per
    microsecond of its life (or the clock went back: its clients' ids are then above the newest,
    which `replay` answers with None as well). Below 2**53 until the year 2255: exact in JavaScript."""
    return time.time_ns() // 1000
