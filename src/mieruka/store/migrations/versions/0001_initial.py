"""Initial schema: jobs, job logs, artifacts, engines, schedules.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("task", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("queue", sa.String(100), nullable=False, server_default="default"),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("run_after", UTCDateTime()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("progress", sa.Float),
        sa.Column("message", sa.Text),
        sa.Column("result", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("traceback", sa.Text),
        sa.Column("worker", sa.String(200)),
        sa.Column("engine_id", sa.String(64)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("log_lines", sa.Integer, nullable=False, server_default="0"),
        sa.Column("schedule", sa.String(200)),
        sqlite_autoincrement=True,
    )
    active = sa.text("status IN ('queued', 'running')")
    has_owner = sa.text("owner IS NOT NULL")
    has_key = sa.text("idempotency_key IS NOT NULL")
    op.create_index(
        "ix_jobs_active", "jobs", ["status", "priority", "id"], sqlite_where=active, postgresql_where=active
    )
    op.create_index("ix_jobs_task", "jobs", ["task", "id"])
    op.create_index("ix_jobs_owner", "jobs", ["owner"], sqlite_where=has_owner, postgresql_where=has_owner)
    op.create_index(
        "ix_jobs_idempotency_key",
        "jobs",
        ["idempotency_key"],
        unique=True,
        sqlite_where=has_key,
        postgresql_where=has_key,
    )
    op.create_table(
        "job_logs",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("content_type", sa.String(200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "engines",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "schedules",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("last_run_at", UTCDateTime()),
        sa.Column("last_job_id", sa.Integer),
    )


def downgrade() -> None:
    for name in ("schedules", "engines", "artifacts", "job_logs", "jobs"):
        op.drop_table(name)
