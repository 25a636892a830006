"""Deleting finished jobs, one by one or by a task's retention policy, with everything that is
theirs; the uploads no job uses any more are returned (their files go too)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..core.status import FINISHED
from . import tables as t
from .base import Deleted
from .database import Database

_FINISHED_VALUES = [s.value for s in FINISHED]


class Retention:
    db: Database

    def prune(self, task: str, older_than: datetime | None, keep: int | None) -> Deleted:
        c = t.jobs.c
        finished = sa.and_(c.task == task, c.status.in_(_FINISHED_VALUES))
        ids: set[int] = set()
        with self.db.read() as conn:
            if older_than is not None:
                ids.update(
                    conn.execute(sa.select(c.id).where(finished, c.finished_at < older_than).limit(5000)).scalars()
                )
            if keep is not None:
                ids.update(
                    conn.execute(
                        sa.select(c.id).where(finished).order_by(c.id.desc()).offset(keep).limit(5000)
                    ).scalars()
                )
        deleted = Deleted()
        for chunk in _chunks(sorted(ids), 500):
            with self.db.write() as conn:
                done = _delete_finished(conn, chunk)
            deleted.job_ids.extend(done.job_ids)
            deleted.uploads.extend(done.uploads)
        return deleted

    def finished_span(self, up_to: int) -> tuple[int, datetime | None]:
        c = t.jobs.c
        finished = c.status.in_(_FINISHED_VALUES)
        some = sa.select(c.id).where(finished).limit(up_to + 1).subquery()
        with self.db.read() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(some)).scalar_one()
            oldest = conn.execute(sa.select(sa.func.min(c.finished_at)).where(finished)).scalar()
        return int(count), oldest

    def delete_job(self, job_id: int) -> Deleted:
        with self.db.write() as conn:
            return _delete_finished(conn, [job_id])


def _delete_finished(conn: Connection, job_ids: list[int]) -> Deleted:
    """Delete those of the jobs that are finished, with their logs, steps, artifact and upload
    records; return them and the uploads no job uses any more."""
    c, ju, u = t.jobs.c, t.job_uploads.c, t.uploads.c
    used = conn.execute(sa.select(ju.job_id, ju.upload_id).where(ju.job_id.in_(job_ids))).all()
    if used:
        # Deleting two jobs that share an upload at once: the second waits here, then sees the
        # first gone, so one of them finds the upload unused (PostgreSQL; SQLite writes one at a time).
        conn.execute(
            sa.select(u.upload_id)
            .where(u.upload_id.in_({upload_id for _, upload_id in used}))
            .order_by(u.upload_id)
            .with_for_update()
        ).all()
    # Re-checked inside the transaction: a job retried meanwhile is no longer finished.
    gone = list(
        conn.execute(
            sa.delete(t.jobs).where(c.id.in_(job_ids), c.status.in_(_FINISHED_VALUES)).returning(c.id)
        ).scalars()
    )
    if not gone:
        return Deleted()
    for table in (t.job_logs, t.job_steps, t.artifacts, t.job_uploads):
        conn.execute(sa.delete(table).where(table.c.job_id.in_(gone)))
    freed = {upload_id for job_id, upload_id in used if job_id in gone}
    unused = conn.execute(
        sa.select(u.upload_id)
        .where(u.upload_id.in_(freed), ~sa.exists().where(ju.upload_id == u.upload_id))
        .order_by(u.upload_id)
    ).scalars()
    # The upload's row stays: the upload is still its owner's, never another's to claim.
    return Deleted(sorted(gone), list(unused) if freed else [])


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
