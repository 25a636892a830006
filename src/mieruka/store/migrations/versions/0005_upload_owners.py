"""Idempotency keys per (owner, task); who owns each upload and which jobs use it.

The uploads named by existing jobs are recorded, each owned by the owner of the oldest job that
names it (its uploader), so that their files are still deleted with the last job using them.

Revision ID: 0005_upload_owners
Revises: 0004_auth
Create Date: 2026-11-28
"""

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0005_upload_owners"
down_revision = "0004_auth"
branch_labels = None
depends_on = None

_OWNED_KEY = sa.text("idempotency_key IS NOT NULL AND owner IS NOT NULL")
_OPEN_KEY = sa.text("idempotency_key IS NOT NULL AND owner IS NULL")
_HAS_KEY = sa.text("idempotency_key IS NOT NULL")
# A File parameter's stored value (mieruka.core.params.FileRef), as it was when this was written.
_FILE_REF = {"upload_id", "filename", "size", "content_type"}


def upgrade() -> None:
    # The old index allowed one job per key at all: every existing key is unique per owner and task too.
    op.drop_index("ix_jobs_idempotency_key", table_name="jobs")
    op.create_index(
        "ix_jobs_owner_key",
        "jobs",
        ["owner", "task", "idempotency_key"],
        unique=True,
        sqlite_where=_OWNED_KEY,
        postgresql_where=_OWNED_KEY,
    )
    op.create_index(
        "ix_jobs_open_key",
        "jobs",
        ["task", "idempotency_key"],
        unique=True,
        sqlite_where=_OPEN_KEY,
        postgresql_where=_OPEN_KEY,
    )
    uploads = op.create_table(
        "uploads",
        sa.Column("upload_id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(200)),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    job_uploads = op.create_table(
        "job_uploads",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("upload_id", sa.String(64), sa.ForeignKey("uploads.upload_id"), primary_key=True),
    )
    op.create_index("ix_job_uploads_upload", "job_uploads", ["upload_id"])
    assert uploads is not None and job_uploads is not None
    _record_existing_uploads(uploads, job_uploads)


def _record_existing_uploads(uploads: sa.Table, job_uploads: sa.Table) -> None:
    conn = op.get_bind()
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.Integer),
        sa.column("owner", sa.String),
        sa.column("params", sa.JSON),
        sa.column("created_at", UTCDateTime()),
    )
    owners: dict[str, Any] = {}
    last = 0
    while True:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.owner, jobs.c.params, jobs.c.created_at)
            .where(jobs.c.id > last, sa.cast(jobs.c.params, sa.Text).like("%upload_id%"))
            .order_by(jobs.c.id)
            .limit(1000)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        new_uploads, links = [], []
        for row in rows:
            for upload_id in sorted(set(_upload_ids(row.params))):
                if upload_id not in owners:
                    owners[upload_id] = row.owner
                    new_uploads.append({"upload_id": upload_id, "owner": row.owner, "created_at": row.created_at})
                links.append({"job_id": row.id, "upload_id": upload_id})
        if new_uploads:
            conn.execute(sa.insert(uploads), new_uploads)
        if links:
            conn.execute(sa.insert(job_uploads), links)


def _upload_ids(params: Any) -> Iterator[str]:
    if isinstance(params, str):
        params = json.loads(params)
    if not isinstance(params, dict):
        return
    for value in params.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict) and set(item) == _FILE_REF:
                upload_id = str(item["upload_id"])
                # Only ids that can name an upload's folder (artifacts/uploads.py: check_upload_id).
                if (
                    upload_id not in ("", ".", "..")
                    and len(upload_id) <= 64
                    and not any(c in upload_id for c in "/\\\x00")
                ):
                    yield upload_id


def downgrade() -> None:
    # Fails if several owners or tasks now use one key: the old index allowed one job per key.
    op.drop_index("ix_job_uploads_upload", table_name="job_uploads")
    op.drop_table("job_uploads")
    op.drop_table("uploads")
    op.drop_index("ix_jobs_open_key", table_name="jobs")
    op.drop_index("ix_jobs_owner_key", table_name="jobs")
    op.create_index(
        "ix_jobs_idempotency_key",
        "jobs",
        ["idempotency_key"],
        unique=True,
        sqlite_where=_HAS_KEY,
        postgresql_where=_HAS_KEY,
    )
