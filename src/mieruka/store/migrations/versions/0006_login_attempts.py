"""Password checks under way, reserved before the password is verified (login throttling).

Revision ID: 0006_login_attempts
Revises: 0005_upload_owners
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0006_login_attempts"
down_revision = "0005_upload_owners"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("login_attempts")
