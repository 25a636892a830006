"""Who listens to which topics: the registry both buses deliver through (thread-safe)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection

from ..core.events import Event
from .base import Unsubscribe

Callback = Callable[[Event], None]


class Subscribers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: set[Callback] = set()
        self._by_topic: dict[str, set[Callback]] = {}

    def add(self, callback: Callback, topics: Collection[str] | None) -> Unsubscribe:
        """Listen to `topics` (None: every event); returns the way to stop."""
        topics = None if topics is None else tuple(topics)
        with self._lock:
            if topics is None:
                self._all.add(callback)
            else:
                for topic in topics:
                    self._by_topic.setdefault(topic, set()).add(callback)

        def unsubscribe() -> None:
            with self._lock:
                if topics is None:
                    self._all.discard(callback)
                    return
                for topic in topics:
                    callbacks = self._by_topic.get(topic)
                    if callbacks is not None:
                        callbacks.discard(callback)
                        if not callbacks:
                            del self._by_topic[topic]

        return unsubscribe

    def matching(self, event: Event) -> list[Callback]:
        """The callbacks for this event, each once even when several of its topics match."""
        with self._lock:
            targets = list(self._all)
            for topic in (event.topic, *event.extra_topics):
                targets.extend(self._by_topic.get(topic, ()))
        return list(dict.fromkeys(targets))

    def clear(self) -> None:
        with self._lock:
            self._all.clear()
            self._by_topic.clear()
