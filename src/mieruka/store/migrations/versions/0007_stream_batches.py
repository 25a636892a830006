"""The recent points of each stream, so that a restarted server shows the last window.

Revision ID: 0007_stream_batches
Revises: 0006_login_attempts
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0007_stream_batches"
down_revision = "0006_login_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("stream", sa.String(200), nullable=False),
        sa.Column("epoch", sa.String(32), nullable=False),
        sa.Column("first_seq", sa.BigInteger, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("saved_at", UTCDateTime(), nullable=False),
        sa.Column("points", sa.JSON, nullable=False),
    )
    op.create_index("ix_stream_batches_stream", "stream_batches", ["stream", "id"])


def downgrade() -> None:
    op.drop_index("ix_stream_batches_stream", table_name="stream_batches")
    op.drop_table("stream_batches")
