"""Where a user comes from: a local account, a directory (LDAP), an OpenID provider or an
authenticating proxy; the directory groups seen at the last login and when the source last
confirmed the user.

Revision ID: 0009_user_sources
Revises: 0008_display_links
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

from mieruka.store.tables import UTCDateTime

revision = "0009_user_sources"
down_revision = "0008_display_links"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not a batch copy: on SQLite a batch drops and recreates `users`, and dropping
# it would cascade to every token and session.
def upgrade() -> None:
    op.add_column("users", sa.Column("source", sa.String(16), nullable=False, server_default="local"))
    op.add_column("users", sa.Column("groups", sa.JSON))
    op.add_column("users", sa.Column("synced_at", UTCDateTime()))
    op.add_column("users", sa.Column("display_name", sa.String(200)))


def downgrade() -> None:
    for name in ("display_name", "synced_at", "groups", "source"):
        op.drop_column("users", name)
