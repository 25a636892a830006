"""Compute pools in the job store's database: each pool's state, and every change of it.

A change is a compare-and-set (from the states it is allowed from), so that of several servers
sharing the database exactly one starts or stops a pool."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..notes import note, read, stored
from .codec import time_of, time_out
from .database import Database
from .sql import SqlJobStore

_POOL = "SELECT name, state, changed_at, message, busy_at FROM pools"
_EVENT = "INSERT INTO pool_events (pool, at, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)"


@dataclass(frozen=True)
class PoolRecord:
    name: str
    state: str
    changed_at: datetime
    message: str | None
    busy_at: datetime | None


@dataclass(frozen=True)
class PoolEvent:
    at: datetime
    from_state: str | None
    to_state: str
    reason: str


class SqlPoolStore:
    def __init__(self, db: Database | SqlJobStore) -> None:
        self._db = db.db if isinstance(db, SqlJobStore) else db  # the jobs' connections and write lock

    def ensure(self, name: str, state: str, now: datetime) -> None:
        """Create the pool's row in `state` unless it exists."""
        if self.get(name) is not None:
            return
        db = self._db
        at = db.codec.time(now)
        with db.write_cursor() as cur:
            cur.execute(
                db.sql(
                    "INSERT INTO pools (name, state, changed_at, busy_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING"
                ),
                (name, state, at, at),
            )
            if cur.rowcount == 1:  # else another server created it meanwhile
                cur.execute(db.sql(_EVENT), (name, at, None, state, stored(note("pool.declared"))))

    def get(self, name: str) -> PoolRecord | None:
        row = self._db.row(f"{_POOL} WHERE name = ?", (name,))
        return _pool(row) if row is not None else None

    def all(self) -> list[PoolRecord]:
        return [_pool(row) for row in self._db.rows(f"{_POOL} ORDER BY name")]

    def move(self, name: str, expect: Collection[str], to: str, reason: str, now: datetime) -> bool:
        """Change the state if it is one of `expect`, recording why; False if it was not."""
        db = self._db
        reason = stored(reason) or ""
        at = db.codec.time(now)
        with db.write_cursor() as cur:
            cur.execute(db.sql("SELECT state FROM pools WHERE name = ?"), (name,))
            found = cur.fetchone()
            current = found[0] if found is not None else None
            if current is None or current not in expect:
                return False
            cur.execute(
                db.sql("UPDATE pools SET state = ?, changed_at = ?, message = ? WHERE name = ? AND state = ?"),
                (to, at, reason, name, current),
            )
            done = bool(cur.rowcount == 1)
            if done:
                cur.execute(db.sql(_EVENT), (name, at, current, to, reason))
            return done

    def touch(self, name: str, now: datetime) -> None:
        """The pool had work (or someone was online) at `now`: its idle time starts again."""
        self._db.run("UPDATE pools SET busy_at = ? WHERE name = ?", (self._db.codec.time(now), name))

    def history(self, name: str, limit: int = 50) -> list[PoolEvent]:
        rows = self._db.rows(
            "SELECT at, from_state, to_state, reason FROM pool_events WHERE pool = ? ORDER BY id DESC LIMIT ?",
            (name, limit),
        )
        return [
            PoolEvent(at=time_of(at), from_state=from_state, to_state=to_state, reason=read(reason) or "")
            for at, from_state, to_state, reason in rows
        ]


def _pool(row: tuple[Any, ...]) -> PoolRecord:
    name, state, changed_at, message, busy_at = row
    return PoolRecord(
        name=name, state=state, changed_at=time_of(changed_at), message=read(message), busy_at=time_out(busy_at)
    )
