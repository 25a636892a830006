"""Single sign-on subjects: which account at which OpenID provider (its `sub`, stable where names
change) a user was first signed in as, so that another account naming itself the same later is
refused.

Revision ID: 0011_sso_subjects
Revises: 0010_notifications
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0011_sso_subjects"
down_revision = "0010_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sso_subjects",
        sa.Column("provider", sa.String(40), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("provider", "user_id", name="uq_sso_subjects_user"),
    )


def downgrade() -> None:
    op.drop_table("sso_subjects")
