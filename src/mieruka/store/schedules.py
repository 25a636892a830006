"""Schedules in the store: each one's next due time, moved by exactly one of the servers that
share the database when it fires."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..core.clock import utcnow
from ..core.job import JobRecord
from .base import NewJob
from .codec import queued, time_of
from .database import Database
from .jobs import insert_sql


class Schedules:
    db: Database

    def schedule_due(self, name: str, first_due: datetime) -> datetime:
        db = self.db
        found = db.row("SELECT next_run_at FROM schedules WHERE name = ?", (name,))
        if found is not None:
            due = time_of(found[0])
            return due
        inserted = db.run(
            "INSERT INTO schedules (name, next_run_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
            (name, db.codec.time(first_due)),
        )
        # Another server stored the schedule meanwhile: its due time holds.
        return first_due if inserted == 1 else self.schedule_due(name, first_due)

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
