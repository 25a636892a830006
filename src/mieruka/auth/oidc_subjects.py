"""Which account at an OpenID provider each single sign-on user is: the provider's `sub` for it,
kept at the first sign-in. A name is only what the provider's claim says today (an e-mail address
can be reassigned, an Entra tenant admin can set any), while `sub` stays; so another account of the
same provider naming itself like a known user is refused instead of becoming that user."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.clock import utcnow
from ..deferred import deferred
from ..i18n import _
from ..store.database import Database
from .oidc import SignInFailed
from .oidc_providers import Provider

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..store import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")


class Subjects:
    def __init__(self, db: Database) -> None:
        self.db = db

    def check(self, provider: Provider, subject: str, name: str) -> None:
        """SignInFailed unless `subject` may sign in as `name`: it is that user's account at the
        provider, or the user has none there yet."""
        s, u = t.sso_subjects, t.users
        with self.db.read() as conn:
            known = conn.execute(
                sa.select(u.c.name)
                .select_from(s.join(u, u.c.id == s.c.user_id))
                .where(s.c.provider == provider.id, s.c.subject == subject)
            ).first()
            taken = conn.execute(
                sa.select(s.c.subject)
                .select_from(s.join(u, u.c.id == s.c.user_id))
                .where(s.c.provider == provider.id, u.c.name == name)
            ).first()
        if known is not None and known.name != name:
            raise SignInFailed(
                _(
                    "Your account at %(provider)s signed in here as %(known)s; now it calls itself %(name)s. "
                    "An administrator may remove the user %(known)s so that you start afresh.",
                    provider=provider.name,
                    known=repr(known.name),
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
        s = t.sso_subjects
        with self.db.write() as conn:
            found = conn.execute(
                sa.select(s.c.subject).where(s.c.provider == provider.id, s.c.user_id == user_id)
            ).first()
            if found is None:
                conn.execute(
                    s.insert().values(provider=provider.id, subject=subject, user_id=user_id, created_at=utcnow())
                )
