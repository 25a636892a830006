"""Compute pools and their history; what each engine is (for monitoring); finished_at index.

Revision ID: 0003_pools
Revises: 0002_steps
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0003_pools"
down_revision = "0002_steps"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("engines", sa.Column("info", sa.JSON))
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.create_table(
        "pools",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("message", sa.Text),
        sa.Column("busy_at", UTCDateTime()),
    )
    op.create_table(
        "pool_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pool", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("from_state", sa.String(16)),
        sa.Column("to_state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_pool_events_pool", "pool_events", ["pool", "id"])


def downgrade() -> None:
    op.drop_index("ix_pool_events_pool", "pool_events")
    op.drop_table("pool_events")
    op.drop_table("pools")
    op.drop_index("ix_jobs_finished_at", "jobs")
    op.drop_column("engines", "info")
