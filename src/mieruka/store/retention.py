"""Deleting finished jobs, one by one or by a task's retention policy, with everything that is
theirs; the uploads no job uses any more are returned (their files go too)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from ..core.status import FINISHED
from ..deferred import deferred
from .base import Deleted
from .codec import time_out
from .database import Database

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

    from . import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")

_FINISHED_VALUES = [s.value for s in FINISHED]
_FINISHED = f"status IN ({', '.join('?' for _ in _FINISHED_VALUES)})"


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
        db = self.db
        with db.cursor() as cur:
            cur.execute(
                db.sql(f"SELECT count(*) FROM (SELECT id FROM jobs WHERE {_FINISHED} LIMIT ?) AS found"),
                (*_FINISHED_VALUES, up_to + 1),
            )
            count = cur.fetchone()[0]
            cur.execute(db.sql(f"SELECT min(finished_at) FROM jobs WHERE {_FINISHED}"), _FINISHED_VALUES)
            oldest = cur.fetchone()[0]
        return int(count), time_out(oldest)

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
