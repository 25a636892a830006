"""Presence: who is using the server right now.

Every authenticated request and the open pages' heartbeat mark their user as seen; a user not seen
for `expiry` seconds (setting `presence_expiry`, default 5 minutes) is no longer online, so a
closed laptop drops off by itself. Several server processes share the table.

The interface later work uses (e.g. stopping an idle compute pool):

    presence.online(now) -> list[Seen]      # who, role, last seen, from where
    presence.anyone_online(now) -> bool
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..core.access import Principal
from ..core.clock import utcnow
from ..store.codec import time_of
from ..store.database import Database


@dataclass(frozen=True)
class Seen:
    user: str
    role: str
    last_seen_at: datetime
    address: str
    page: str

    def json(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "role": self.role,
            "address": self.address,
            "page": self.page,
            "last_seen_at": self.last_seen_at.isoformat().replace("+00:00", "Z"),
        }


class Presence:
    def __init__(self, db: Database, expiry: float = 300.0) -> None:
        self.db = db
        self.expiry = expiry
        # Writes are spread out: a user's row is written at most this often by this process.
        self.write_every = min(30.0, expiry / 4)
        self._written: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def seen(
        self, who: Principal, address: str = "", page: str = "", now: datetime | None = None, force: bool = False
    ) -> None:
        now = now or utcnow()
        with self._lock:
            last = self._written.get(who.name)
            if not force and last is not None and (now - last).total_seconds() < self.write_every:
                return
            self._written[who.name] = now
        db = self.db
        # One statement, in plain SQL (every request of a signed-in user comes here): a row another
        # server inserted meanwhile is updated instead.
        with db.write_cursor(single=True) as cur:
            cur.execute(
                db.sql(
                    "INSERT INTO presence (user_name, role, last_seen_at, address, page) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (user_name) DO UPDATE SET role = excluded.role, "
                    "last_seen_at = excluded.last_seen_at, address = excluded.address, page = excluded.page"
                ),
                (who.name, who.role.value, db.codec.time(now), address[:64], page[:300]),
            )

    def online(self, now: datetime | None = None) -> list[Seen]:
        """Users seen within the expiry time, most recent first."""
        db = self.db
        cutoff = (now or utcnow()) - timedelta(seconds=self.expiry)
        with db.cursor() as cur:
            cur.execute(
                db.sql(
                    "SELECT user_name, role, last_seen_at, address, page FROM presence "
                    "WHERE last_seen_at > ? ORDER BY last_seen_at DESC"
                ),
                (db.codec.time(cutoff),),
            )
            rows = cur.fetchall()
        return [Seen(user, role, time_of(at), address, page) for user, role, at, address, page in rows]

    def anyone_online(self, now: datetime | None = None) -> bool:
        return bool(self.online(now))

    def forget(self, user: str) -> None:
        """The user logged out: off the list at once."""
        with self._lock:
            self._written.pop(user, None)
        db = self.db
        with db.write_cursor(single=True) as cur:
            cur.execute(db.sql("DELETE FROM presence WHERE user_name = ?"), (user,))
