"""Notice that a Redis broker lost its data, so that the jobs it was holding are sent again.

A Redis restarted without persistence (or flushed) comes back empty: the messages of jobs that were
queued are gone, and those jobs would wait forever. A marker key in the broker's database goes with
them: every server tries `SET marker NX` now and then, and the one server that succeeds (the key was
missing, so the data is new) re-sends every queued job once. Persistent Redis keeps the key, so a
restart that kept the messages sends nothing again; a long queue costs one command per check.
The first start on a new broker re-sends too: harmless, as a message for a job that is no longer
queued is dropped by the worker that gets it.

A server that finds the broker answering again after a check it did not answer re-sends too, even
when Redis kept its data: a message on its way when the connection broke (taken off its queue by a
worker that had not yet recorded it as unacknowledged) is lost with the connection.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

log = logging.getLogger("mieruka.celery")

MARKER = "mieruka:broker-epoch"


class BrokerEpoch:
    def __init__(self, broker_url: str, interval: float) -> None:
        self.interval = interval
        self.next_check = 0.0
        self._client: Any = None
        self._away = False  # the last check found the broker unreachable
        if interval > 0 and broker_url.startswith(("redis://", "rediss://", "unix://")):
            import redis

            self._client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)

    @property
    def active(self) -> bool:
        return self._client is not None

    def lost(self) -> str | None:
        """Why the broker's messages may be gone since the last check, or None: "new" when its data
        is new (for exactly one of the servers), "back" when it answers again after a check it did
        not answer."""
        if self._client is None:
            return None
        now = time.monotonic()
        if now < self.next_check:
            return None
        self.next_check = now + self.interval
        try:
            new = bool(self._client.set(MARKER, f"{uuid.uuid4().hex} {time.time():.0f}", nx=True))
        except Exception as exc:
            log.debug("broker check failed: %s", exc)
            self._away = True
            return None
        back, self._away = self._away, False
        return "new" if new else "back" if back else None

    def forget(self) -> None:
        """Give the claim back (the re-send could not be done): the next check anywhere claims again."""
        try:
            self._client.delete(MARKER)
        except Exception:
            pass
        self.next_check = 0.0

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
