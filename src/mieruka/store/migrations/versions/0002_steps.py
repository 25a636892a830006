"""Pipeline steps: a job_steps table, and the step that wrote each log line.

Revision ID: 0002_steps
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0002_steps"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_logs") as batch:
        batch.add_column(sa.Column("step", sa.String(200)))
    has_step = sa.text("step IS NOT NULL")
    op.create_index(
        "ix_job_logs_step", "job_logs", ["job_id", "step", "seq"], sqlite_where=has_step, postgresql_where=has_step
    )
    op.create_table(
        "job_steps",
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("depends_on", sa.JSON, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("allow_failure", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("parent", sa.String(200)),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("progress", sa.Float),
        sa.Column("message", sa.Text),
        sa.Column("output", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("artifacts", sa.JSON, nullable=False),
        sa.Column("reused", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_table("job_steps")
    op.drop_index("ix_job_logs_step", "job_logs")
    with op.batch_alter_table("job_logs") as batch:
        batch.drop_column("step")
