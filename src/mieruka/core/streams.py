"""Streams: a declared producer of points, and the ring buffer of its recent points.

A point is a time (epoch seconds) and a number per series. Every point gets the next sequence
number, so a client that reconnects names the last one it saw and continues in order. Reading
`since(seq)` returns arrays per series (what the browser's chart wants), never one object per point.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .dashboards import check_name

MAX_RATE = 50.0  # points per second a stream may be declared with


@dataclass(frozen=True)
class StreamSpec:
    """`func` is called every `every` seconds (a generator is advanced at that pace; with
    every=None it sets its own pace). `window` is how many seconds the charts show; the server
    keeps `keep` points (default: two windows)."""

    name: str
    func: Callable[..., Any]
    every: float | None = 1.0
    window: float = 60.0
    keep: int = 0
    title: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        check_name("stream", self.name)
        if self.every is not None and (self.every <= 0 or 1 / self.every > MAX_RATE + 1e-9):
            raise ConfigError(
                f"stream {self.name!r}: every= must be at least {1 / MAX_RATE:g}s "
                f"(at most {MAX_RATE:g} points a second)"
            )
        if self.window <= 0:
            raise ConfigError(f"stream {self.name!r}: window= must be positive")
        if self.keep < 0:
            raise ConfigError(f"stream {self.name!r}: keep= must not be negative")

    @property
    def capacity(self) -> int:
        if self.keep:
            return self.keep
        rate = 1 / self.every if self.every else MAX_RATE
        return max(100, min(200_000, math.ceil(2 * self.window * rate)))


@dataclass
class Batch:
    """Points `first`..`last` (sequence numbers) as arrays; `gap` when older points were lost."""

    first: int
    last: int
    t: list[float]
    series: dict[str, list[float | None]]
    gap: bool = False

    def to_dict(self, stream: str) -> dict[str, Any]:
        return {
            "stream": stream,
            "first": self.first,
            "last": self.last,
            "gap": self.gap,
            "t": self.t,
            "series": self.series,
        }


@dataclass
class StreamBuffer:
    """The newest `capacity` points of one stream. Thread-safe: one producer, many readers."""

    capacity: int
    _points: deque[tuple[float, dict[str, float | None]]] = field(init=False)
    _last: int = field(default=0, init=False)
    _names: dict[str, None] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self._points = deque(maxlen=self.capacity)

    def append(self, t: float, values: dict[str, float | None]) -> int:
        with self._lock:
            self._points.append((t, values))
            self._last += 1
            for name in values:
                if name not in self._names:
                    self._names[name] = None
            return self._last

    def restore(self, last: int, points: list[tuple[float, dict[str, float | None]]]) -> None:
        """Start from points kept by an earlier run of the server: the newest of them is number
        `last`, and new points continue from there. Only on an empty buffer."""
        with self._lock:
            if self._last:
                raise ValueError("restore() needs an empty buffer")
            for _, values in points:
                self._names.update(dict.fromkeys(values))
            self._points.extend(points[-self.capacity :])
            self._last = last

    @property
    def last(self) -> int:
        return self._last

    @property
    def first(self) -> int:
        with self._lock:
            return self._last - len(self._points) + 1

    def since(self, after: int, limit: int | None = None) -> Batch | None:
        """Points after sequence `after` (0: all that are kept), or None when there are none.
        With `limit`, only the newest `limit` of them (a late client needs no more than a window)."""
        with self._lock:
            last = self._last
            if after >= last:
                return None
            kept = len(self._points)
            oldest = last - kept + 1
            count = last - max(after, oldest - 1)
            if limit is not None:
                count = min(count, limit)
            points = list(itertools.islice(reversed(self._points), count))
            names = list(self._names)
        points.reverse()
        first = last - len(points) + 1
        series: dict[str, list[float | None]] = {name: [p[1].get(name) for p in points] for name in names}
        return Batch(first, last, [p[0] for p in points], series, gap=after != 0 and first > after + 1)
