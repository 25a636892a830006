"""The processes that run jobs (server engines, Celery workers): their heartbeats, and the running
jobs of those that stopped beating or died.

Plain SQL on the store's DB-API cursors: a server runs these at its start and while idle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ..core.job import JobRecord
from ..core.status import JobStatus
from .base import EngineInfo
from .codec import ACTIVE, JOB_COLUMNS, json_out, json_text, time_of, time_out
from .database import Database

_QUALIFIED = ", ".join(f"jobs.{name}" for name in JOB_COLUMNS)
_RUNNING = f"{ACTIVE} AND status = ?"  # the jobs' status (engines has none): from ix_jobs_active


class EngineRecords:
    db: Database

    def heartbeat(self, engine_id: str, host: str, pid: int, now: datetime, info: dict[str, Any] | None = None) -> None:
        db = self.db
        # A beat without info keeps the info it had; host and pid are the first beat's.
        kept = "" if info is None else ", info = excluded.info"
        with db.write_cursor(single=True) as cur:
            cur.execute(
                db.sql(
                    "INSERT INTO engines (id, host, pid, heartbeat_at, info) VALUES (?, ?, ?, ?, ?) "
                    f"ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at{kept}"
                ),
                (engine_id, host, pid, db.codec.time(now), json_text(info)),
            )

    def engines(self) -> list[EngineInfo]:
        db = self.db
        with db.cursor() as cur:
            cur.execute("SELECT id, host, pid, heartbeat_at, info FROM engines ORDER BY heartbeat_at DESC")
            rows = cur.fetchall()
            cur.execute(
                db.sql(f"SELECT jobs.id, jobs.engine_id FROM jobs WHERE {_RUNNING} ORDER BY jobs.id"),
                (JobStatus.RUNNING.value,),
            )
            running: dict[str, list[int]] = {}
            for job_id, engine_id in cur.fetchall():
                running.setdefault(engine_id, []).append(job_id)
        found = []
        for engine_id, host, pid, beat, info in rows:
            heartbeat_at = time_of(beat)
            found.append(
                EngineInfo(
                    id=engine_id,
                    host=host,
                    pid=pid,
                    heartbeat_at=heartbeat_at,
                    info=json_out(info) or {},
                    running=running.get(engine_id, []),
                )
            )
        return found

    def remove_engine(self, engine_id: str) -> None:
        db = self.db
        with db.write_cursor(single=True) as cur:
            cur.execute(db.sql("DELETE FROM engines WHERE id = ?"), (engine_id,))

    def orphaned_jobs(self, now: datetime, stale_after: float, is_dead: Callable[[str, int], bool]) -> list[JobRecord]:
        db = self.db
        limit = now - timedelta(seconds=stale_after)
        n = len(JOB_COLUMNS)
        with db.cursor() as cur:
            cur.execute(
                db.sql(
                    f"SELECT {_QUALIFIED}, engines.host, engines.pid, engines.heartbeat_at FROM jobs "
                    f"LEFT OUTER JOIN engines ON jobs.engine_id = engines.id "
                    f"WHERE {_RUNNING} AND jobs.engine_id IS NOT NULL"
                ),
                (JobStatus.RUNNING.value,),
            )
            rows = cur.fetchall()
        found = []
        for row in rows:
            host, pid, stored = row[n:]
            beat = time_out(stored)
            if host is None or beat is None or beat < limit or is_dead(host, pid):
                found.append(db.codec.job(row[:n]))
        return found
