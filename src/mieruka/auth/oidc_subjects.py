"""Which account at an OpenID provider each single sign-on user is: the provider's `sub` for it,
kept at the first sign-in. A name is only what the provider's claim says today (an e-mail address
can be reassigned, an Entra tenant admin can set any), while `sub` stays; so another account of the
same provider naming itself like a known user is refused instead of becoming that user."""

from __future__ import annotations

from ..core.clock import utcnow
from ..i18n import _
from ..store.database import Database
from .oidc import SignInFailed
from .oidc_providers import Provider

# The user the subject signed in as, and the subject of the user with that name, at the provider:
# one statement, so one snapshot (each is unique: the table's keys and users.name).
_CHECK = (
    "SELECT (SELECT users.name FROM sso_subjects JOIN users ON users.id = sso_subjects.user_id "
    "WHERE sso_subjects.provider = ? AND sso_subjects.subject = ? LIMIT 1), "
    "(SELECT sso_subjects.subject FROM sso_subjects JOIN users ON users.id = sso_subjects.user_id "
    "WHERE sso_subjects.provider = ? AND users.name = ? LIMIT 1)"
)


class Subjects:
    def __init__(self, db: Database) -> None:
        self.db = db

    def check(self, provider: Provider, subject: str, name: str) -> None:
        """SignInFailed unless `subject` may sign in as `name`: it is that user's account at the
        provider, or the user has none there yet."""
        found = self.db.row(_CHECK, (provider.id, subject, provider.id, name))
        known, taken = found if found is not None else (None, None)
        if known is not None and known != name:
            raise SignInFailed(
                _(
                    "Your account at %(provider)s signed in here as %(known)s; now it calls itself %(name)s. "
                    "An administrator may remove the user %(known)s so that you start afresh.",
                    provider=provider.name,
                    known=repr(known),
                    name=repr(name),
                ),
                "sso_renamed",
                403,
            )
        if known is None and taken is not None:
            raise SignInFailed(
                _(
                    "The name %(name)s belongs to another account at %(provider)s: you cannot sign in as it.",
                    name=repr(name),
                    provider=provider.name,
                ),
                "sso_name_taken",
                403,
            )

    def link(self, provider: Provider, subject: str, user_id: int) -> None:
        """Remember that `subject` is the user's account at the provider (once; later calls keep it)."""
        db = self.db
        with db.write_cursor() as cur:
            cur.execute(
                db.sql("SELECT subject FROM sso_subjects WHERE provider = ? AND user_id = ?"), (provider.id, user_id)
            )
            if cur.fetchone() is None:
                cur.execute(
                    db.sql("INSERT INTO sso_subjects (provider, subject, user_id, created_at) VALUES (?, ?, ?, ?)"),
                    (provider.id, subject, user_id, db.codec.time(utcnow())),
                )
