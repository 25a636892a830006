"""Display links: a secret URL an admin makes for one dashboard, so that a wall screen shows it
without anyone logging in, until the link is revoked or expires.

The secret is random and long; only its SHA-256 is stored (as for API tokens), so a copy of the
database opens no display. It is shown once, when made.

    link, secret = displays.create("wards", "Ward 3 corridor", created_by="ada")
    displays.check(secret)  # the link while it is active, else None
    displays.revoke(link.id)
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..core.clock import utcnow
from ..deferred import deferred
from ..errors import NotFoundError, ValidationError
from ..i18n import _
from ..store.codec import MAX_INT
from ..store.database import Database
from .accounts import digest

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..store import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")

SECRET_PREFIX = "mrd_"
MAX_LABEL = 200
# A display polls or streams all day: noting each use would turn its reads into writes.
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class DisplayLink:
    id: int
    dashboard: str
    label: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Displays:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self, dashboard: str, label: str, created_by: str, expires_at: datetime | None = None
    ) -> tuple[DisplayLink, str]:
        """A new link to `dashboard`; the secret is returned here and never again."""
        label = label.strip()
        if not label or len(label) > MAX_LABEL:
            raise ValidationError(
                _("label: 1 to %(max)s characters, saying where the display is", max=MAX_LABEL),
                [{"field": "label", "message": "required" if not label else "too long"}],
            )
        now = utcnow()
        if expires_at is not None and expires_at <= now:
            raise ValidationError(
                "expires_at: must be in the future", [{"field": "expires_at", "message": "in the past"}]
            )
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        with self.db.write() as conn:
            inserted = conn.execute(
                t.display_links.insert().values(
                    dashboard=dashboard[:100],
                    label=label,
                    secret_hash=digest(secret),
                    created_by=created_by[:100],
                    created_at=now,
                    expires_at=expires_at,
                )
            ).inserted_primary_key
        return self.get(int(inserted[0])), secret  # type: ignore[index]

    def get(self, link_id: int) -> DisplayLink:
        if not 0 < link_id <= MAX_INT:
            raise NotFoundError(f"no display link with id {link_id}")
        with self.db.read() as conn:
            row = conn.execute(sa.select(t.display_links).where(t.display_links.c.id == link_id)).first()
        if row is None:
            raise NotFoundError(f"no display link with id {link_id}")
        return _link(row)

    def list(self) -> list[DisplayLink]:
        """Every link, newest first, revoked and expired ones too (they say when they stopped)."""
        with self.db.read() as conn:
            return [_link(r) for r in conn.execute(sa.select(t.display_links).order_by(t.display_links.c.id.desc()))]

    def revoke(self, link_id: int) -> DisplayLink:
        """Stop the link at once (revoking it again changes nothing)."""
        self.get(link_id)
        with self.db.write() as conn:
            conn.execute(
                t.display_links.update()
                .where(t.display_links.c.id == link_id, t.display_links.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return self.get(link_id)

    def check(self, secret: str) -> DisplayLink | None:
        """The link of `secret` while it is active (and note its use), else None: unknown, revoked
        and expired secrets are alike to the caller."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 100:
            return None
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(t.display_links).where(t.display_links.c.secret_hash == digest(secret))
            ).first()
        now = utcnow()
        if row is None:
            return None
        link = _link(row)
        if not link.active(now):
            return None
        if link.last_used_at is None or now - link.last_used_at > LAST_USED_EVERY:
            with self.db.write() as conn:
                conn.execute(t.display_links.update().where(t.display_links.c.id == link.id).values(last_used_at=now))
        return link

    def is_active(self, link_id: int) -> bool:
        """Whether the link still works: asked every few seconds by each of its open event streams."""
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(t.display_links.c.revoked_at, t.display_links.c.expires_at).where(
                    t.display_links.c.id == link_id
                )
            ).first()
        return row is not None and row.revoked_at is None and (row.expires_at is None or row.expires_at > utcnow())


def _link(row: sa.Row) -> DisplayLink:  # type: ignore[type-arg]
    return DisplayLink(
        id=row.id,
        dashboard=row.dashboard,
        label=row.label,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )
