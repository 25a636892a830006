"""Refreshes sources on their schedules in threads of their own, never in the request path.

Why not jobs: a dashboard refreshing every 10 s would write 8,640 job records a day per source and
ship every table through a worker pipe into the job store; here the table stays in this process,
where the tiles are computed once and pushed to every viewer. What a job page would show is
shown by `GET /api/sources/{name}` instead: last refresh, duration, rows, error, whether one runs.

Per source: at most one read at a time; refreshes never stack (a due time that finds a read
running joins it; requests that find one running get one more read right after it, together).
A read that outlives its timeout is cancelled where the driver allows and reported at once; a
failed read keeps the last good table and records the error and its time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.clock import utcnow
from ..notes import note
from ..redaction import without_passwords
from .base import Limits
from .frames import to_frame
from .source import Source, SourceRegistry

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("mieruka.sources")


@dataclass
class SourceState:
    name: str
    frame: pd.DataFrame | None = None  # the last good table
    version: int = 0  # successful refreshes so far
    attempts: int = 0  # refreshes tried (successful or not)
    refreshed_at: datetime | None = None  # last success, UTC
    attempted_at: datetime | None = None  # last try, UTC
    duration: float | None = None  # seconds the last try took
    rows: int = 0
    truncated: bool = False
    error: str | None = None
    error_at: datetime | None = None
    running: bool = False
    next_at: datetime | None = None
    _started: float = 0.0
    _timed_out: bool = False


Listener = Callable[[Source, SourceState], None]


class Refresher:
    def __init__(self, sources: SourceRegistry, default_timeout: float, default_max_rows: int) -> None:
        self.sources = sources
        self.default_timeout = default_timeout
        self.default_max_rows = default_max_rows
        self._cond = threading.Condition()
        self._states = {s.name: SourceState(s.name) for s in sources}
        self._due: dict[str, float] = {}
        self._forced: set[str] = set()
        self._listeners: list[Listener] = []
        self._stopping = False
        self._thread: threading.Thread | None = None

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None or not len(self.sources):
            return
        now = time.monotonic()
        with self._cond:
            for source in self.sources:
                self._due[source.name] = now  # every source reads once at start-up
                self._forced.add(source.name)
        self._thread = threading.Thread(target=self._loop, name="mieruka-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for source in self.sources:
            source.adapter.cancel()
            source.adapter.close()

    # -- reading state --------------------------------------------------------------------------
    def state(self, name: str) -> SourceState:
        source = self.sources.get(name)  # NotFoundError for an unknown name
        with self._cond:
            return replace(self._states[source.name])

    def limits(self, source: Source) -> Limits:
        return Limits(source.timeout or self.default_timeout, source.max_rows or self.default_max_rows)

    def first_read(self, name: str) -> SourceState:
        """The state once the source's first read (at start-up) has ended, waiting for it at most as
        long as a read may take; nothing more is read."""
        source = self.sources.get(name)
        deadline = time.monotonic() + self.limits(source).timeout
        with self._cond:
            while self._thread is not None and self._states[source.name].attempts == 0 and not self._stopping:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return replace(self._states[source.name])

    # -- refreshing -----------------------------------------------------------------------------
    def refresh(self, name: str, wait: float | None = None) -> SourceState:
        """Refresh now, or right after the read already running; with `wait`, until that read ends
        or `wait` runs out."""
        source = self.sources.get(name)
        with self._cond:
            state = self._states[source.name]
            # A read already running may have started before the data changed: one more read
            # follows it (however many requests arrive meanwhile), never a second one at once.
            target = state.attempts + (2 if state.running else 1)
            self._forced.add(source.name)
            self._due[source.name] = time.monotonic()
            self._cond.notify_all()
            if wait:
                deadline = time.monotonic() + wait
                while self._states[source.name].attempts < target and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            return replace(self._states[source.name])

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                starting, overdue = self._take_due(now)
                pause = self._pause(now)
            for source, snapshot in overdue:
                source.adapter.cancel()
                self._announce(source, snapshot)
            for source in starting:
                threading.Thread(
                    target=self._read, args=(source,), name=f"mieruka-source-{source.name}", daemon=True
                ).start()
            with self._cond:
                if not self._stopping and self._pause(time.monotonic()) > 0.01:
                    self._cond.wait(pause)

    def _take_due(self, now: float) -> tuple[list[Source], list[tuple[Source, SourceState]]]:
        """Under the lock: the sources whose read starts now (marked running), and those whose
        running read just outlived its timeout, each with its state then (to announce)."""
        starting: list[Source] = []
        overdue: list[tuple[Source, SourceState]] = []
        for source in self.sources:
            state = self._states[source.name]
            if state.running:
                if self._watch(source, state, now):
                    overdue.append((source, replace(state)))
                if self._is_due(source.name, now) and source.name not in self._forced:
                    self._schedule_next(source, state)  # this due time joins the running read
            elif self._start_if_due(source, state, now):
                starting.append(source)
        return starting, overdue

    def _is_due(self, name: str, now: float) -> bool:
        due = self._due.get(name)
        return due is not None and due <= now

    def _start_if_due(self, source: Source, state: SourceState, now: float) -> bool:
        """Whether the source's read starts now: it is due, and forced or its adapter saw the data
        change. A due source gets its next due time either way."""
        if not self._is_due(source.name, now):
            return False
        forced = source.name in self._forced
        self._forced.discard(source.name)
        self._schedule_next(source, state)
        if not (forced or source.adapter.changed()):
            return False
        state.running, state._started, state._timed_out = True, now, False
        return True

    def _pause(self, now: float) -> float:
        """How long the loop may sleep: until the next due time of a source that is not being read,
        or a quarter second while reads run (their timeouts are watched)."""
        waits = [d - now for name, d in self._due.items() if not self._states[name].running]
        waits.append(0.25 if any(s.running for s in self._states.values()) else 5.0)
        return max(0.01, min(waits))

    def _schedule_next(self, source: Source, state: SourceState) -> None:
        if source.schedule is None:
            self._due.pop(source.name, None)
            state.next_at = None
            return
        nxt = source.schedule.next_after(utcnow())
        state.next_at = nxt
        self._due[source.name] = time.monotonic() + max(0.0, (nxt - utcnow()).total_seconds())

    def _watch(self, source: Source, state: SourceState, now: float) -> bool:
        """Mark a read that outlived its timeout; True the first time (it must be cancelled)."""
        timeout = self.limits(source).timeout
        if state._timed_out or now - state._started <= timeout:
            return False
        state._timed_out = True
        state.error = note("source.timed_out", seconds=timeout)
        state.error_at = utcnow()
        return True

    def _read(self, source: Source) -> None:
        limits = self.limits(source)
        started = time.monotonic()
        frame: Any = None
        truncated = False
        error: str | None = None
        try:
            fetched = source.adapter.fetch(limits)
            frame, truncated = fetched.frame, fetched.truncated
            if source.transform is not None:
                frame = to_frame(source.transform(frame), f"the transform of source {source.name!r}")
        except Exception as exc:
            error = _describe(exc)
            log.warning("source %s failed: %s", source.name, error)
        with self._cond:
            state = self._states[source.name]
            state.running = False
            state.attempts += 1
            state.attempted_at = utcnow()
            state.duration = time.monotonic() - started
            if state._timed_out:
                error = note("source.timed_out", seconds=limits.timeout)
            if error is None:
                state.frame, state.rows, state.truncated = frame, len(frame), truncated
                state.version += 1
                state.refreshed_at = state.attempted_at
                state.error = state.error_at = None
            else:
                state.error, state.error_at = error, state.attempted_at
            snapshot = replace(state)
            self._cond.notify_all()
        self._announce(source, snapshot)

    def _announce(self, source: Source, state: SourceState) -> None:
        for listener in self._listeners:
            try:
                listener(source, state)
            except Exception:
                log.exception("source listener failed for %s", source.name)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    # Shown to every viewer of its dashboards: a driver's error may quote its connection string.
    return without_passwords(message)[:500]
