"""A wake-up for asyncio waiters in any event loop, fired from any thread.

Fires coalesce: a waiter that was busy while several fires happened wakes once and then reads
everything new. The waker's cost is one call per event loop, not one per waiting client.
"""

from __future__ import annotations

import asyncio
import threading


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Signal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}

    def waiter(self) -> asyncio.Future[None]:
        """A future done at the next fire. Take it *before* reading the state it guards, so that a
        fire between the read and the wait is not missed."""
        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._futures.get(loop)
            if future is None or future.done():
                future = loop.create_future()
                self._futures[loop] = future
        return future

    def fire(self) -> None:
        with self._lock:
            pending = list(self._futures.items())
            self._futures.clear()
        for loop, future in pending:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:
                pass  # that loop is closed: its waiters are gone
