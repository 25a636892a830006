"""Display links and users' languages on both backends, in plain SQL (auth/displays.py,
auth/languages.py): what they write and read is what SQLAlchemy wrote and read (times in UTC,
NULLs, truncations, the order of the list)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from mieruka.auth.accounts import digest
from mieruka.auth.displays import LAST_USED_EVERY, DisplayLink, Displays
from mieruka.auth.languages import UserLanguages
from mieruka.core.clock import utcnow
from mieruka.errors import NotFoundError, ValidationError
from mieruka.store import tables as t
from mieruka.store.codec import MAX_INT
from mieruka.store.database import Database

TOKYO = timezone(timedelta(hours=9))


@pytest.fixture
def db(tmp_path: Path, database_url: str) -> Iterator[Database]:
    (tmp_path / "home").mkdir(exist_ok=True)
    opened = Database(database_url)
    opened.migrate()
    yield opened
    opened.close()


def sqlalchemys_link(db: Database, link_id: int) -> tuple[DisplayLink, str]:
    """The link as SQLAlchemy read it, and its secret's hash."""
    with db.read() as conn:
        row = conn.execute(sa.select(t.display_links).where(t.display_links.c.id == link_id)).one()._mapping
    return DisplayLink(**{f.name: row[f.name] for f in fields(DisplayLink)}), row["secret_hash"]


def test_display_links_are_written_and_read_as_sqlalchemy_did(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    displays = Displays(db)
    expires = (utcnow() + timedelta(days=2)).astimezone(TOKYO)
    first, secret = displays.create("wards", "  Ward 3 corridor ", "ada", expires)
    second, _ = displays.create("w" * 150, "Lobby", "b" * 150)
    assert (first.dashboard, first.label, first.created_by) == ("wards", "Ward 3 corridor", "ada")
    assert first.expires_at == expires and first.expires_at is not None and first.expires_at.tzinfo is UTC
    assert first.created_at.tzinfo is UTC and first.last_used_at is None and first.revoked_at is None
    assert (second.dashboard, second.created_by, second.expires_at) == ("w" * 100, "b" * 100, None)
    assert sqlalchemys_link(db, first.id) == (first, digest(secret))
    assert displays.list() == [second, first] and displays.get(first.id) == first
    for missing in (0, -1, MAX_INT + 1, second.id + 1):
        with pytest.raises(NotFoundError):
            displays.get(missing)
    with pytest.raises(ValidationError, match="expires_at"):
        displays.create("wards", "Late", "ada", utcnow() - timedelta(seconds=1))
    # Its use is noted, at most once a minute.
    now = first.created_at + timedelta(hours=1, microseconds=1)
    for name in ("mrd_unknown", "mrd_" + "x" * 100, secret[4:], ""):
        assert displays.check(name) is None
    monkeypatch.setattr("mieruka.auth.displays.utcnow", lambda: now)
    assert displays.check(secret) == first
    used = displays.get(first.id)
    assert used.last_used_at == now and used.last_used_at.tzinfo is UTC
    assert used == sqlalchemys_link(db, first.id)[0]
    monkeypatch.setattr("mieruka.auth.displays.utcnow", lambda: now + LAST_USED_EVERY)
    assert displays.check(secret) == used and displays.get(first.id).last_used_at == now
    later = now + LAST_USED_EVERY + timedelta(microseconds=1)
    monkeypatch.setattr("mieruka.auth.displays.utcnow", lambda: later)
    assert displays.check(secret) == used and displays.get(first.id).last_used_at == later
    # Revoked: once, for good.
    assert displays.is_active(first.id) and not displays.is_active(second.id + 1)
    revoked = displays.revoke(first.id)
    assert revoked.revoked_at == later and revoked == sqlalchemys_link(db, first.id)[0]
    monkeypatch.setattr("mieruka.auth.displays.utcnow", lambda: later + timedelta(hours=1))
    assert displays.revoke(first.id) == revoked
    assert displays.check(secret) is None and not displays.is_active(first.id) and displays.is_active(second.id)
    with pytest.raises(NotFoundError):
        displays.revoke(second.id + 1)
    # Expired: at its time.
    third, third_secret = displays.create("wards", "Expiring", "ada", later + timedelta(hours=2))
    monkeypatch.setattr("mieruka.auth.displays.utcnow", lambda: later + timedelta(hours=2))
    assert displays.check(third_secret) is None and not displays.is_active(third.id)
    monkeypatch.setattr("mieruka.auth.displays.utcnow", lambda: later + timedelta(hours=2, microseconds=-1))
    assert displays.check(third_secret) == third and displays.is_active(third.id)
    assert [link.id for link in displays.list()] == [third.id, second.id, first.id]


def test_a_users_language_is_written_and_read_as_sqlalchemy_did(db: Database) -> None:
    with db.write() as conn:
        ids = {
            name: conn.execute(
                sa.insert(t.users).values(name=name, role="viewer", created_at=utcnow()).returning(t.users.c.id)
            ).scalar_one()
            for name in ("ada", "val")
        }

    def stored(name: str) -> str | None:
        with db.read() as conn:
            found: str | None = conn.execute(sa.select(t.users.c.language).where(t.users.c.name == name)).scalar_one()
        return found

    languages = UserLanguages(db)
    assert languages.all() == {"ada": None, "val": None} and languages.of(ids["val"]) is None
    assert languages.set("val", "ja") == "ja" and stored("val") == "ja" and stored("ada") is None
    assert languages.of(ids["val"]) == "ja" and UserLanguages(db).of(ids["val"]) == "ja"
    assert languages.all() == {"ada": None, "val": "ja"}
    with pytest.raises(NotFoundError):
        languages.set("nobody", "ja")
    with pytest.raises(NotFoundError):
        languages.set("VAL", "en")  # names are exact
    with pytest.raises(ValidationError):
        languages.set("val", "klingon")
    assert stored("val") == "ja"
    assert languages.set("val", "auto") is None and stored("val") is None
    assert languages.of(ids["val"]) is None and UserLanguages(db).of(ids["val"]) is None
    with db.write() as conn:  # a tag this version does not know (written by another): the browser's
        conn.execute(sa.update(t.users).where(t.users.c.name == "ada").values(language="xx"))
    assert languages.all() == {"ada": None, "val": None} and UserLanguages(db).of(ids["ada"]) is None
