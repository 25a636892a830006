"""Schedules in the store: each one's next due time, moved by exactly one of the servers that
share the database when it fires."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.clock import utcnow
from ..core.job import JobRecord
from ..deferred import deferred
from .base import NewJob
from .codec import queued
from .database import Database
from .jobs import insert_sql

if TYPE_CHECKING:
    import sqlalchemy as sa

    from . import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")


class Schedules:
    db: Database

    def schedule_due(self, name: str, first_due: datetime) -> datetime:
        s = t.schedules.c
        with self.db.read() as conn:
            due: datetime | None = conn.execute(sa.select(s.next_run_at).where(s.name == name)).scalar()
        if due is not None:
            return due
        try:
            with self.db.write() as conn:
                conn.execute(sa.insert(t.schedules).values(name=name, next_run_at=first_due))
        except sa.exc.IntegrityError:
            return self.schedule_due(name, first_due)
        return first_due

    def fire_schedule(
        self, name: str, due: datetime, next_due: datetime, job: NewJob | None, missed: str | None = None
    ) -> JobRecord | None:
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(
                db.sql("UPDATE schedules SET next_run_at = ?, last_run_at = ? WHERE name = ? AND next_run_at = ?"),
                (db.codec.time(next_due), db.codec.time(due), name, db.codec.time(due)),
            )
            if cur.rowcount != 1 or job is None:
                return None
            fields = queued(replace(job, schedule=name), utcnow())
            cur.execute(db.sql(insert_sql(tuple(fields))), db.codec.values(fields))
            job_id = cur.fetchone()[0]
            cur.execute(db.sql("UPDATE schedules SET last_job_id = ? WHERE name = ?"), (job_id, name))
            if missed is not None:
                _missed_event(db, cur, name, due, missed)
        return JobRecord(id=job_id, **fields)


def _missed_event(db: Database, cur: Any, name: str, due: datetime, missed: str) -> None:
    """The notification event of a late run, in the transaction that fires it, if a rule asks."""
    ignore, conflict = ("OR IGNORE ", "") if db.is_sqlite else ("", " ON CONFLICT (key) DO NOTHING")
    cur.execute(
        db.sql(
            f"INSERT {ignore}INTO notify_events (kind, key, at, task, subject, message, routed) "
            "SELECT 'schedule.missed', ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM notify_rules "
            f"WHERE enabled AND events LIKE ?){conflict}"
        ),
        (
            f"schedule.missed:{name}:{due.isoformat()}",
            db.codec.time(utcnow()),
            name,
            name,
            missed[:2000],
            False,
            "%,schedule.missed,%",
        ),
    )
