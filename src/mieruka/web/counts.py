"""The number of jobs in each state that the health check, the metrics and the workers panel show.
Queued and running jobs are counted on every call (an index holds them). The finished ones take a
scan of the whole table (a fifth of a second for a million jobs in SQLite) and are counted at most
every FINISHED_EVERY seconds: a load balancer may ask for /healthz every second."""

from __future__ import annotations

import threading
import time
from weakref import WeakKeyDictionary

from ..store.base import JobStore

FINISHED_EVERY = 10.0

_finished: WeakKeyDictionary[JobStore, tuple[float, dict[str, int]]] = WeakKeyDictionary()
_lock = threading.Lock()


def job_counts(store: JobStore) -> dict[str, int]:
    now = time.monotonic()
    with _lock:
        taken = _finished.get(store)
    if taken is None or now - taken[0] >= FINISHED_EVERY:
        everything = store.count_by_status()
        with _lock:
            _finished[store] = (now, everything)
        return everything
    return {**taken[1], **store.count_by_status(active_only=True)}
