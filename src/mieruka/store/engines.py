"""The processes that run jobs (server engines, Celery workers): their heartbeats, and the running
jobs of those that stopped beating or died."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..core.job import JobRecord
from ..core.status import JobStatus
from . import tables as t
from .base import EngineInfo
from .codec import JOB_COLUMNS
from .database import Database
from .queries import JOB_ROW


class EngineRecords:
    db: Database

    def heartbeat(self, engine_id: str, host: str, pid: int, now: datetime, info: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"heartbeat_at": now}
        if info is not None:
            values["info"] = info
        with self.db.write() as conn:
            res = conn.execute(sa.update(t.engines).where(t.engines.c.id == engine_id).values(**values))
            if res.rowcount == 0:
                conn.execute(sa.insert(t.engines).values(id=engine_id, host=host, pid=pid, **values))

    def engines(self) -> list[EngineInfo]:
        e, c = t.engines.c, t.jobs.c
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(e.id, e.host, e.pid, e.heartbeat_at, e.info).order_by(e.heartbeat_at.desc())
            ).all()
            running: dict[str, list[int]] = {}
            for job_id, engine_id in conn.execute(
                sa.select(c.id, c.engine_id).where(c.status == JobStatus.RUNNING.value).order_by(c.id)
            ):
                running.setdefault(engine_id, []).append(job_id)
        return [
            EngineInfo(
                id=r.id,
                host=r.host,
                pid=r.pid,
                heartbeat_at=r.heartbeat_at,
                info=r.info or {},
                running=running.get(r.id, []),
            )
            for r in rows
        ]

    def remove_engine(self, engine_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(sa.delete(t.engines).where(t.engines.c.id == engine_id))

    def orphaned_jobs(self, now: datetime, stale_after: float, is_dead: Callable[[str, int], bool]) -> list[JobRecord]:
        c, e = t.jobs.c, t.engines.c
        stmt = (
            sa.select(*JOB_ROW, e.host, e.pid, e.heartbeat_at)
            .select_from(t.jobs.outerjoin(t.engines, c.engine_id == e.id))
            .where(c.status == JobStatus.RUNNING.value, c.engine_id.is_not(None))
        )
        limit = now - timedelta(seconds=stale_after)
        n = len(JOB_COLUMNS)
        found = []
        with self.db.read() as conn:
            for row in conn.execute(stmt):
                host, pid, beat = row[n:]
                if host is None or beat is None or beat < limit or is_dead(host, pid):
                    found.append(self.db.codec.job(row[:n]))
        return found
