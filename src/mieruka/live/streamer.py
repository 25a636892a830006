"""Runs a stream's producer in its own thread and keeps its points in a ring buffer.

A function is called every `every` seconds on a drift-free clock; a generator is advanced at that
pace (or at its own with every=None). A value is a dict of series -> number, optionally with a
"time" key (datetime or epoch seconds), or a (time, dict) pair, or one number (series "value").
A producer that raises is reported on its charts and started again after a pause.
"""

from __future__ import annotations

import inspect
import json
import logging
import threading
import time
from datetime import datetime
from typing import Any

from ..core.streams import Batch, StreamBuffer, StreamSpec
from .signal import Signal

log = logging.getLogger("mieruka.streams")
TIME_KEYS = ("time", "t", "timestamp")


class Streamer:
    def __init__(self, spec: StreamSpec, boot: str = "") -> None:
        self.spec = spec
        self.boot = boot
        self.buffer = StreamBuffer(spec.capacity)
        self.signal = Signal()
        self.error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends the pause before the next value (stop, or sample_now)
        self._thread: threading.Thread | None = None
        self._cache_last = -1
        self._cache: dict[int, str] = {}
        self._cache_lock = threading.Lock()

    # -- producing ------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"mieruka-stream-{self.spec.name}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.signal.fire()

    def sample_now(self) -> None:
        """Take the next value at once rather than at the next beat (a dashboard control changed
        what the stream reads); the beat goes on from there. A self-paced generator is not hurried."""
        self._wake.set()

    def push(self, value: Any) -> int | None:
        """Add one value (as the producer yields it); returns its sequence number."""
        point = normalize(value)
        if point is None:
            return None
        seq = self.buffer.append(*point)
        self.signal.fire()
        return seq

    def _run(self) -> None:
        func, every = self.spec.func, self.spec.every
        while not self._stop.is_set():
            try:
                if inspect.isgeneratorfunction(func):
                    tick = time.monotonic()
                    for value in func():
                        self.push(value)
                        self.error = None
                        if every:
                            tick = self._pause_until(tick + every)
                        if self._stop.is_set():
                            return
                    return  # the generator ended: the stream keeps its last points
                tick = time.monotonic()
                while not self._stop.is_set():
                    self.push(func())
                    self.error = None
                    tick = self._pause_until(tick + (every or 1.0))
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("stream %s failed: %s", self.spec.name, self.error)
                self.signal.fire()
                self._stop.wait(max(1.0, every or 1.0))

    def _pause_until(self, tick: float) -> float:
        now = time.monotonic()
        if tick < now - 1.0:
            tick = now  # far behind (a slow producer): do not burst to catch up
        if self._wake.wait(max(0.0, tick - now)) and not self._stop.is_set():
            self._wake.clear()
            return time.monotonic()  # asked for a value now: the beat starts again from it
        return tick

    # -- reading --------------------------------------------------------------------------------
    def batch(self, after: int, limit: int | None = None) -> Batch | None:
        return self.buffer.since(self.resume_from(after), limit)

    def resume_from(self, after: int) -> int:
        """Where a client that has seen `after` starts: 0 (the recent window) when `after` is beyond
        the newest point, i.e. it saw the points of an earlier run of the server."""
        return 0 if after > self.buffer.last else after

    def frame_body(self, after: int) -> tuple[int, str] | None:
        """(last sequence, the SSE `points` event without its id) for a client that has seen `after`.
        Clients in step ask for the same range, so the text is built once and shared."""
        last = self.buffer.last
        if after >= last:
            return None
        with self._cache_lock:
            if self._cache_last != last:
                self._cache_last, self._cache = last, {}
            text = self._cache.get(after)
        if text is not None:
            return last, text
        batch = self.buffer.since(after)
        if batch is None:
            return None
        data = batch.to_dict(self.spec.name)
        data["error"] = self.error
        data["boot"] = self.boot
        text = f"event: points\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        # Only small batches are shared (clients in step); a late client's big batch is its own.
        with self._cache_lock:
            if self._cache_last == batch.last and len(self._cache) < 64 and len(batch.t) <= 256:
                self._cache[after] = text
        return batch.last, text


def normalize(value: Any) -> tuple[float, dict[str, float | None]] | None:
    if value is None:
        return None
    when: Any = None
    if isinstance(value, tuple) and len(value) == 2:
        when, value = value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = {"value": value}
    if not isinstance(value, dict):
        raise TypeError(f"a stream yields a dict of series -> number, not {type(value).__name__}")
    values: dict[str, float | None] = {}
    for key, item in value.items():
        if key in TIME_KEYS and when is None:
            when = item
            continue
        values[str(key)] = None if item is None else float(item)
    if when is None:
        t = time.time()
    elif isinstance(when, datetime):
        t = when.timestamp()  # a naive datetime is taken as local time by Python; pass aware ones
    else:
        t = float(when)
    return t, values
