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

import sqlalchemy as sa

from ..core.access import Principal
from ..core.clock import utcnow
from ..store import tables as t
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
        values = {"role": who.role.value, "last_seen_at": now, "address": address[:64], "page": page[:300]}
        with self.db.write() as conn:
            updated = conn.execute(t.presence.update().where(t.presence.c.user_name == who.name).values(**values))
            if updated.rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(t.presence.insert().values(user_name=who.name, **values))
                except sa.exc.IntegrityError:  # another server inserted it meanwhile
                    conn.execute(t.presence.update().where(t.presence.c.user_name == who.name).values(**values))

    def online(self, now: datetime | None = None) -> list[Seen]:
        """Users seen within the expiry time, most recent first."""
        cutoff = (now or utcnow()) - timedelta(seconds=self.expiry)
        c = t.presence.c
        with self.db.read() as conn:
            rows = conn.execute(sa.select(t.presence).where(c.last_seen_at > cutoff).order_by(c.last_seen_at.desc()))
            return [Seen(r.user_name, r.role, r.last_seen_at, r.address, r.page) for r in rows]

    def anyone_online(self, now: datetime | None = None) -> bool:
        return bool(self.online(now))

    def forget(self, user: str) -> None:
        """The user logged out: off the list at once."""
        with self._lock:
            self._written.pop(user, None)
        with self.db.write() as conn:
            conn.execute(t.presence.delete().where(t.presence.c.user_name == user))
