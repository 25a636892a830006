"""Wake-ups for the open event streams of an event loop, fired from any thread.

A `Signal` says "there is news" (a stream's new point, a dashboard's new tile); a `Wake` is one open
stream's way to sleep until there is news for it, its server ends it, or its heartbeat is due.
Fires coalesce: a fire costs one call per event loop, which then resolves one future per waiting
stream, and a stream that was busy while several fires happened reads everything new once. A stream
keeps no future, task or timer per wait beyond that one future: the heartbeat timer is armed once per
heartbeat interval, not once per tick.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio


class Wake:
    """One stream's wake-up, on the running loop. `wait()` returns True when poked (news or the
    end: look at `ended`), False when `heartbeat` seconds passed since the stream last sent."""

    def __init__(self, heartbeat: float) -> None:
        import asyncio  # loaded by now: this runs on an event loop

        self.loop = asyncio.get_running_loop()
        self.heartbeat = heartbeat
        self.ended = False
        self._poked = False
        self._beat = False
        self._future: asyncio.Future[None] | None = None
        self._sent_at = self.loop.time()
        self._timer: asyncio.TimerHandle | None = self.loop.call_at(self._sent_at + heartbeat, self._due)

    def poke(self) -> None:
        """News (on the loop's thread): a waiting stream wakes, a busy one reads it before waiting."""
        self._poked = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    def end(self) -> None:
        self.ended = True
        self.poke()

    def sent(self) -> None:
        """The stream sent something: its heartbeat is due that much later."""
        self._sent_at = self.loop.time()

    def _due(self) -> None:
        due = self._sent_at + self.heartbeat
        if self.loop.time() >= due:
            self._beat = True
            due = self.loop.time() + self.heartbeat
            self.poke()
        self._timer = self.loop.call_at(due, self._due)

    async def wait(self) -> bool:
        if not self._poked:
            self._future = self.loop.create_future()
            try:
                await self._future  # its own future: cancelling the stream touches no other
            finally:
                self._future = None
        self._poked = False
        beat, self._beat = self._beat, False
        return self.ended or not beat

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Signal:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wakes: dict[asyncio.AbstractEventLoop, set[Wake]] = {}
        self._scheduled: set[asyncio.AbstractEventLoop] = set()

    def listen(self, wake: Wake) -> None:
        """Poke `wake` at every fire (until `unlisten`)."""
        with self._lock:
            self._wakes.setdefault(wake.loop, set()).add(wake)

    def unlisten(self, wake: Wake) -> None:
        with self._lock:
            wakes = self._wakes.get(wake.loop)
            if wakes is not None:
                wakes.discard(wake)
                if not wakes:
                    del self._wakes[wake.loop]

    def fire(self) -> None:
        with self._lock:
            loops = [loop for loop in self._wakes if loop not in self._scheduled]
            self._scheduled.update(loops)
        for loop in loops:
            try:
                loop.call_soon_threadsafe(self._poke_all, loop)
            except RuntimeError:  # that loop is closed: its streams are gone
                with self._lock:
                    self._scheduled.discard(loop)
                    self._wakes.pop(loop, None)

    def _poke_all(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._scheduled.discard(loop)
            wakes = list(self._wakes.get(loop, ()))
        for wake in wakes:
            wake.poke()
