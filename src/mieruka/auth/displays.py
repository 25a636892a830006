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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..core.clock import utcnow
from ..errors import NotFoundError, ValidationError
from ..i18n import _
from ..store.codec import MAX_INT, time_of, time_out
from ..store.database import Database
from .accounts import digest

SECRET_PREFIX = "mrd_"
MAX_LABEL = 200
# A display polls or streams all day: noting each use would turn its reads into writes.
LAST_USED_EVERY = timedelta(minutes=1)
# DisplayLink's fields in its order.
_COLUMNS = "id, dashboard, label, created_by, created_at, expires_at, last_used_at, revoked_at"


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
        db = self.db
        ((link_id,),) = db.run_returning(
            "INSERT INTO display_links (dashboard, label, secret_hash, created_by, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (dashboard[:100], label, digest(secret), created_by[:100], db.codec.time(now), db.codec.time(expires_at)),
        )
        return self.get(int(link_id)), secret

    def get(self, link_id: int) -> DisplayLink:
        if not 0 < link_id <= MAX_INT:
            raise NotFoundError(f"no display link with id {link_id}")
        row = self.db.row(f"SELECT {_COLUMNS} FROM display_links WHERE id = ?", (link_id,))
        if row is None:
            raise NotFoundError(f"no display link with id {link_id}")
        return _link(row)

    def list(self) -> list[DisplayLink]:
        """Every link, newest first, revoked and expired ones too (they say when they stopped)."""
        return [_link(row) for row in self.db.rows(f"SELECT {_COLUMNS} FROM display_links ORDER BY id DESC")]

    def revoke(self, link_id: int) -> DisplayLink:
        """Stop the link at once (revoking it again changes nothing)."""
        self.get(link_id)
        db = self.db
        db.run(
            "UPDATE display_links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (db.codec.time(utcnow()), link_id),
        )
        return self.get(link_id)

    def check(self, secret: str) -> DisplayLink | None:
        """The link of `secret` while it is active (and note its use), else None: unknown, revoked
        and expired secrets are alike to the caller."""
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 100:
            return None
        db = self.db
        row = db.row(f"SELECT {_COLUMNS} FROM display_links WHERE secret_hash = ?", (digest(secret),))
        now = utcnow()
        if row is None:
            return None
        link = _link(row)
        if not link.active(now):
            return None
        if link.last_used_at is None or now - link.last_used_at > LAST_USED_EVERY:
            db.run("UPDATE display_links SET last_used_at = ? WHERE id = ?", (db.codec.time(now), link.id))
        return link

    def is_active(self, link_id: int) -> bool:
        """Whether the link still works: asked every few seconds by each of its open event streams."""
        row = self.db.row("SELECT revoked_at, expires_at FROM display_links WHERE id = ?", (link_id,))
        if row is None or row[0] is not None:
            return False
        expires_at = time_out(row[1])
        return expires_at is None or expires_at > utcnow()


def _link(row: Sequence[Any]) -> DisplayLink:
    """The link of a row of `_COLUMNS`, as either backend's driver returns it."""
    link_id, dashboard, label, created_by, created_at, expires_at, last_used_at, revoked_at = row
    created = time_of(created_at)
    return DisplayLink(
        id=link_id,
        dashboard=dashboard,
        label=label,
        created_by=created_by,
        created_at=created,
        expires_at=time_out(expires_at),
        last_used_at=time_out(last_used_at),
        revoked_at=time_out(revoked_at),
    )
