"""Display links: secret, revocable URLs that show one dashboard on a wall screen without a login.

Revision ID: 0008_display_links
Revises: 0007_stream_batches
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0008_display_links"
down_revision = "0007_stream_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "display_links",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dashboard", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime()),
        sa.Column("last_used_at", UTCDateTime()),
        sa.Column("revoked_at", UTCDateTime()),
    )


def downgrade() -> None:
    op.drop_table("display_links")
