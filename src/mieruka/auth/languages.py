"""Each user's own language for the pages (issue 22), the column `users.language` (migration
0012_user_language): a tag of mieruka.i18n.LANGUAGES, or none to let the browser choose.

The pages ask it at every request of a signed-in user: answers are kept a few seconds per process
(a change made here is seen at once; one made by another process, e.g. the CLI, within CACHE_SECONDS).
"""

from __future__ import annotations

import threading
import time

from ..errors import NotFoundError, ValidationError
from ..i18n import LANGUAGES, _, supported
from ..store.database import Database

CACHE_SECONDS = 10.0


def checked(value: str | None) -> str | None:
    """A language setting as given by a person or a client: a tag of ours, or None (empty, "auto")."""
    if value is None or value.strip().lower() in ("", "auto"):
        return None
    tag = supported(value)
    if tag is None:
        names = ", ".join(language.tag for language in LANGUAGES)
        raise ValidationError(
            _("language: one of %(names)s (or empty: the browser's)", names=names),
            [{"field": "language", "message": "unknown language"}],
        )
    return tag


class UserLanguages:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: dict[int, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def cached(self, user_id: int) -> tuple[bool, str | None]:
        """(known, language) from this process's memory, without asking the database."""
        found = self._known.get(user_id)
        if found is None or time.monotonic() - found[0] > CACHE_SECONDS:
            return False, None
        return True, found[1]

    def of(self, user_id: int) -> str | None:
        """The user's language (None: theirs is the browser's)."""
        known, language = self.cached(user_id)
        if known:
            return language
        db = self.db
        with db.cursor() as cur:  # plain SQL: asked at requests of signed-in users
            cur.execute(db.sql("SELECT language FROM users WHERE id = ?"), (user_id,))
            row = cur.fetchone()
        language = supported(row[0] if row else None)
        with self._lock:
            self._known[user_id] = (time.monotonic(), language)
        return language

    def all(self) -> dict[str, str | None]:
        """Every user's language by user name (the users' profiles)."""
        return {name: supported(language) for name, language in self.db.rows("SELECT name, language FROM users")}

    def set(self, name: str, language: str | None) -> str | None:
        """Set user `name`'s language (a tag, or None for the browser's); returns it. NotFoundError."""
        tag = checked(language)
        found = self.db.run_returning("UPDATE users SET language = ? WHERE name = ? RETURNING id", (tag, name))
        if not found:
            raise NotFoundError(f"no user named {name!r}")
        user_id = found[0][0]
        with self._lock:
            self._known[user_id] = (time.monotonic(), tag)
        return tag
