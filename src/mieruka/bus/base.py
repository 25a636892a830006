"""The event bus interface: publish, subscribe with a callback, replay recent events."""

from __future__ import annotations

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
        """Events after `after_id`, or None when they are no longer kept (the caller must resync)."""

    def last_id(self) -> int:
        """The id of the newest event published."""

    def problem(self) -> str | None:
        """Why events cannot travel now, or None when they can (for /healthz)."""

    def close(self) -> None:
        """Stop delivering events."""
