"""Compute pools in the job store's database: each pool's state, and every change of it.

A change is a compare-and-set (from the states it is allowed from), so that of several servers
sharing the database exactly one starts or stops a pool."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..deferred import deferred
from ..notes import note, read, stored
from .database import Database
from .sql import SqlJobStore

if TYPE_CHECKING:
    import sqlalchemy as sa

    from . import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")


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
        try:
            with self._db.write() as conn:
                conn.execute(sa.insert(t.pools).values(name=name, state=state, changed_at=now, busy_at=now))
                conn.execute(
                    sa.insert(t.pool_events).values(
                        pool=name, at=now, from_state=None, to_state=state, reason=stored(note("pool.declared"))
                    )
                )
        except sa.exc.IntegrityError:
            pass  # another server created it meanwhile

    def get(self, name: str) -> PoolRecord | None:
        p = t.pools.c
        with self._db.read() as conn:
            row = conn.execute(sa.select(t.pools).where(p.name == name)).first()
        return _pool(row) if row is not None else None

    def all(self) -> list[PoolRecord]:
        with self._db.read() as conn:
            return [_pool(row) for row in conn.execute(sa.select(t.pools).order_by(t.pools.c.name))]

    def move(self, name: str, expect: Collection[str], to: str, reason: str, now: datetime) -> bool:
        """Change the state if it is one of `expect`, recording why; False if it was not."""
        p = t.pools.c
        reason = stored(reason) or ""
        with self._db.write() as conn:
            current = conn.execute(sa.select(p.state).where(p.name == name)).scalar()
            if current is None or current not in expect:
                return False
            done = (
                conn.execute(
                    sa.update(t.pools)
                    .where(p.name == name, p.state == current)
                    .values(state=to, changed_at=now, message=reason)
                ).rowcount
                == 1
            )
            if done:
                conn.execute(
                    sa.insert(t.pool_events).values(pool=name, at=now, from_state=current, to_state=to, reason=reason)
                )
            return bool(done)

    def touch(self, name: str, now: datetime) -> None:
        """The pool had work (or someone was online) at `now`: its idle time starts again."""
        with self._db.write() as conn:
            conn.execute(sa.update(t.pools).where(t.pools.c.name == name).values(busy_at=now))

    def history(self, name: str, limit: int = 50) -> list[PoolEvent]:
        e = t.pool_events.c
        with self._db.read() as conn:
            rows = conn.execute(
                sa.select(e.at, e.from_state, e.to_state, e.reason)
                .where(e.pool == name)
                .order_by(e.id.desc())
                .limit(limit)
            ).all()
        return [
            PoolEvent(at=r.at, from_state=r.from_state, to_state=r.to_state, reason=read(r.reason) or "") for r in rows
        ]


def _pool(row: sa.Row[Any]) -> PoolRecord:
    m = row._mapping
    return PoolRecord(
        name=m["name"], state=m["state"], changed_at=m["changed_at"], message=read(m["message"]), busy_at=m["busy_at"]
    )
