"""Job ids taken from PostgreSQL's sequence ahead of their jobs, so that a job's id is known before
its row is written: the engine can then send a job to the broker while its row is on the way.

A process holds as many ids as it took in the last second (at most `keep`), and each for a second
only: jobs submitted to several servers at once may get ids out of the order they were submitted
in, by at most that second (as with a sequence's own CACHE). A process that submits a job now and
then holds none, and its jobs' ids follow each other; ids a process held too long are never used
(gaps, as a rolled-back insert leaves).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable

KEEP = 8  # ids held at most
FRESH_FOR = 1.0  # seconds an id may wait for its job


class JobIds:
    """The ids this process holds, smallest first; refilled by whoever writes a job."""

    def __init__(self, keep: int = KEEP, fresh_for: float = FRESH_FOR) -> None:
        self._lock = threading.Lock()
        self._ids: deque[tuple[int, float]] = deque()
        self._taken: deque[float] = deque()  # when ids were asked for, in the last `fresh_for`
        self.keep = keep
        self._fresh_for = fresh_for

    def take(self) -> int | None:
        """The next id, or None if none is held that is fresh enough (the caller asks the sequence)."""
        now = time.monotonic()
        with self._lock:
            self._taken.append(now)
            while self._ids:
                job_id, got_at = self._ids.popleft()
                if now - got_at <= self._fresh_for:
                    return job_id
        return None

    def wanted(self) -> int:
        """How many to ask for with the next write: as many as were taken in the last second, less
        this one and those held."""
        now = time.monotonic()
        with self._lock:
            while self._taken and now - self._taken[0] > self._fresh_for:
                self._taken.popleft()
            return max(0, min(self.keep, len(self._taken) - 1) - len(self._ids))

    def add(self, ids: Iterable[int]) -> None:
        now = time.monotonic()
        with self._lock:  # in order even when two writes bring theirs back out of order
            self._ids = deque(sorted([*self._ids, *((job_id, now) for job_id in ids)]))
