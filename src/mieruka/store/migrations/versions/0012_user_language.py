"""A user's own language for the pages (issue 22): a BCP 47 tag of mieruka's languages (en, ja,
zh-Hans, ru); none lets the browser's Accept-Language, then the setting `language`, choose.

Revision ID: 0012_user_language
Revises: 0011_sso_subjects
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_user_language"
down_revision = "0011_sso_subjects"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("users", sa.Column("language", sa.String(16)))


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("language")
