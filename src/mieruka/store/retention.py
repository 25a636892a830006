"""Deleting finished jobs, one by one or by a task's retention policy, with everything that is
theirs; the uploads no job uses any more are returned (their files go too)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from ..core.status import FINISHED
from .base import Deleted
from .codec import MAX_INT, time_out
from .database import Database, marks

_FINISHED_VALUES = [s.value for s in FINISHED]
_FINISHED = f"status IN ({', '.join('?' for _ in _FINISHED_VALUES)})"
# Tables of a job's own rows, deleted with it.
_OWN_ROWS = ("job_logs", "job_steps", "artifacts", "job_uploads")


class Retention:
    db: Database

    def prune(self, task: str, older_than: datetime | None, keep: int | None) -> Deleted:
        db = self.db
        finished = f"SELECT id FROM jobs WHERE task = ? AND {_FINISHED}"
        ids: set[int] = set()
        with db.cursor() as cur:
            if older_than is not None:
                cur.execute(
                    db.sql(f"{finished} AND finished_at < ? LIMIT 5000"),
                    (task, *_FINISHED_VALUES, db.codec.time(older_than)),
                )
                ids.update(row[0] for row in cur.fetchall())
            if keep is not None:
                cur.execute(db.sql(f"{finished} ORDER BY id DESC LIMIT 5000 OFFSET ?"), (task, *_FINISHED_VALUES, keep))
                ids.update(row[0] for row in cur.fetchall())
        deleted = Deleted()
        for chunk in _chunks(sorted(ids), 500):
            with db.write_cursor() as cur:
                done = _delete_finished(db, cur, chunk)
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
        if not 0 < job_id <= MAX_INT:
            return Deleted()  # no such id, and PostgreSQL could not even compare it
        with self.db.write_cursor() as cur:
            return _delete_finished(self.db, cur, [job_id])


def _delete_finished(db: Database, cur: Any, job_ids: list[int]) -> Deleted:
    """Delete those of the jobs that are finished, with their logs, steps, artifact and upload
    records, on a write cursor (one transaction); return them and the uploads no job uses any more."""
    jobs = marks(len(job_ids))
    cur.execute(db.sql(f"SELECT job_id, upload_id FROM job_uploads WHERE job_id IN ({jobs})"), job_ids)
    used: list[tuple[int, str]] = [(row[0], row[1]) for row in cur.fetchall()]
    if used and not db.is_sqlite:
        # Deleting two jobs that share an upload at once: the second waits here, then sees the
        # first gone, so one of them finds the upload unused (SQLite writes one at a time).
        shared = sorted({upload_id for _, upload_id in used})
        cur.execute(
            db.sql(
                f"SELECT upload_id FROM uploads WHERE upload_id IN ({marks(len(shared))}) ORDER BY upload_id FOR UPDATE"
            ),
            shared,
        )
        cur.fetchall()
    # Re-checked inside the transaction: a job retried meanwhile is no longer finished.
    cur.execute(
        db.sql(f"DELETE FROM jobs WHERE id IN ({jobs}) AND {_FINISHED} RETURNING id"), (*job_ids, *_FINISHED_VALUES)
    )
    gone = sorted(int(row[0]) for row in cur.fetchall())
    if not gone:
        return Deleted()
    for table in _OWN_ROWS:
        cur.execute(db.sql(f"DELETE FROM {table} WHERE job_id IN ({marks(len(gone))})"), gone)
    freed = sorted({upload_id for job_id, upload_id in used if job_id in gone})
    if not freed:
        return Deleted(gone, [])
    cur.execute(
        db.sql(
            f"SELECT upload_id FROM uploads WHERE upload_id IN ({marks(len(freed))}) AND NOT EXISTS "
            "(SELECT 1 FROM job_uploads WHERE job_uploads.upload_id = uploads.upload_id) ORDER BY upload_id"
        ),
        freed,
    )
    # The upload's row stays: the upload is still its owner's, never another's to claim.
    return Deleted(gone, [row[0] for row in cur.fetchall()])


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
