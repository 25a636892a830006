"""Accounts, audit log and presence on every database backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import mieruka
from mieruka.auth.accounts import Accounts, Throttle, Token, User
from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.auth.oidc import SignInFailed
from mieruka.auth.oidc_providers import Provider
from mieruka.auth.oidc_subjects import Subjects
from mieruka.auth.presence import Presence
from mieruka.core.access import Principal, Role
from mieruka.core.clock import utcnow
from mieruka.core.streams import StreamSpec
from mieruka.errors import ConflictError, NotFoundError, TooManyAttempts, ValidationError
from mieruka.live import history as stream_history
from mieruka.live.history import StreamHistory
from mieruka.live.streamer import Streamer
from mieruka.store.base import Claim, NewJob
from mieruka.store.database import Database
from mieruka.store.pools import SqlPoolStore
from mieruka.store.sql import SqlJobStore
from tests.unit.test_imports import loaded_after


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    db.migrate()
    yield db
    db.close()


def test_one_database_serves_jobs_pools_accounts_and_stream_history(db: Database) -> None:
    """One connection plumbing per process: every store on the same Database; a store closed that
    did not open it leaves it to the others."""
    store, pools, accounts, history = SqlJobStore(db), SqlPoolStore(db), Accounts(db), StreamHistory(db)
    job, _ = store.create_job(NewJob(task="t", params={"name": "é"}))
    pools.ensure("gpu", "stopped", utcnow())
    accounts.add_user("ada", "admin", "long password")
    store.close()
    history.stop()
    assert store.get_job(job.id) == job and store.db is db
    found = pools.get("gpu")
    assert found is not None and found.state == "stopped"
    assert accounts.get_user("ada").name == "ada"
    assert history.load("temperature", 10) is None


def test_users(db: Database) -> None:
    accounts = Accounts(db)
    assert not accounts.has_users()
    ada = accounts.add_user("ada", "admin", "long password")
    accounts.add_user("bo", Role.VIEWER, None)
    assert accounts.has_users() and ada.role is Role.ADMIN and ada.created_at.tzinfo is not None
    assert [(u.name, u.has_password) for u in accounts.list_users()] == [("ada", True), ("bo", False)]
    with pytest.raises(ConflictError):
        accounts.add_user("ada", "viewer", "long password")
    with pytest.raises(ValidationError):
        accounts.add_user("x y", "viewer", "long password")
    assert accounts.authenticate("ada", "long password") == ada
    assert accounts.authenticate("ada", "wrong") is None
    assert accounts.authenticate("bo", "") is None  # no password: no password login
    assert accounts.authenticate("nobody", "long password") is None
    with pytest.raises(ConflictError):
        accounts.set_role("ada", "operator")  # the last admin
    accounts.set_role("bo", "admin")
    accounts.set_role("ada", "operator")
    accounts.remove_user("ada")
    with pytest.raises(NotFoundError):
        accounts.get_user("ada")


def test_tokens_sessions_and_links(db: Database) -> None:
    accounts = Accounts(db, session_max_age=3600)
    ada = accounts.add_user("ada", "operator", "long password")
    token, secret = accounts.create_token("ada", "ci", utcnow() + timedelta(days=1))
    assert accounts.check_token(secret) == ada and accounts.check_token(secret + "x") is None
    assert accounts.get_token(token.id).last_used_at is not None
    assert [t.name for t in accounts.list_tokens("ada")] == ["ci"]
    accounts.revoke_token(token.id)
    assert accounts.check_token(secret) is None
    session, csrf = accounts.create_session(ada, "10.0.0.1")
    who = accounts.session_user(session)
    assert who == Principal("ada", Role.OPERATOR, "session", ada.id, csrf)
    accounts.end_session(session)
    assert accounts.session_user(session) is None
    link = accounts.create_login_link("ada")
    assert accounts.login_link_valid(link)
    assert accounts.consume_login_link(link) == ada
    assert accounts.consume_login_link(link) is None and not accounts.login_link_valid(link)
    assert accounts.list_tokens("ada")[0].name == "ci"  # links are not API tokens
    assert accounts.check_token(link) is None  # nor do they work as one


def frozen_at(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    """Accounts' clock stopped at `moment`."""
    monkeypatch.setattr("mieruka.auth.accounts.utcnow", lambda: moment)


def test_a_token_gives_its_user_as_stored_until_it_expires_or_is_revoked(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check_token gives the User get_user does (role, groups, display name, times); nothing for an
    expired or revoked token, a cut-off or removed user's, or an unknown secret. last_used_at is
    written at most once a minute."""
    start = utcnow()
    frozen_at(monkeypatch, start)
    accounts = Accounts(db)
    ada = accounts.add_user("ada", "viewer", "long password")
    grace = accounts.sign_in_external("grace", "ldap", "operator", ["ops", "é", "dev"], display_name="Grace Hopper")
    assert (grace.groups, grace.display_name, grace.has_password) == (("dev", "ops", "é"), "Grace Hopper", False)
    assert grace.synced_at is not None and grace.source == "ldap"
    ada_secret = accounts.create_token("ada")[1]
    token, secret = accounts.create_token("grace", "ci", start + timedelta(hours=1))
    assert accounts.check_token(ada_secret) == ada and ada.has_password and ada.groups == ()
    assert accounts.check_token(secret) == grace
    assert accounts.get_token(token.id).last_used_at == start
    for later, used in ((59, start), (60, start), (61, start + timedelta(seconds=61))):
        frozen_at(monkeypatch, start + timedelta(seconds=later))
        assert accounts.check_token(secret) == grace
        assert accounts.get_token(token.id).last_used_at == used
    frozen_at(monkeypatch, start + timedelta(hours=1) - timedelta(microseconds=1))
    assert accounts.check_token(secret) == grace
    frozen_at(monkeypatch, start + timedelta(hours=1))
    assert accounts.check_token(secret) is None  # expired
    frozen_at(monkeypatch, start)
    accounts.set_role("grace", "admin")
    assert accounts.check_token(secret) == accounts.get_user("grace") and accounts.get_user("grace").role is Role.ADMIN
    for unknown in ("", secret[4:], secret + "x", "mrk_"):
        assert accounts.check_token(unknown) is None
    accounts.revoke_token(accounts.create_token("grace")[0].id)
    assert accounts.check_token(secret) == accounts.get_user("grace")  # another token's revocation
    accounts.cut_off("grace")
    assert accounts.check_token(secret) is None  # revoked with the user's others
    accounts.remove_user("ada")
    assert accounts.check_token(ada_secret) is None


def test_a_session_gives_its_user_as_stored_until_it_expires_or_ends(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """session_user gives the user's principal with the session's CSRF token: role, groups and name
    as stored now; nothing once it expired or ended (logout, a new password, the user removed)."""
    start = utcnow()
    frozen_at(monkeypatch, start)
    accounts = Accounts(db, session_max_age=3600)
    ada = accounts.add_user("ada", "admin", "long password")
    grace = accounts.sign_in_external("grace", "oidc", "viewer", ["ops", "dev"], display_name="Grace Hopper")
    session, csrf = accounts.create_session(grace, "10.0.0.1")
    groups = frozenset({"dev", "ops"})
    assert accounts.session_user(session) == Principal("grace", Role.VIEWER, "session", grace.id, csrf, groups)
    other, other_csrf = accounts.create_session(grace, "10.0.0.2")
    assert other_csrf != csrf and accounts.session_user(other) == grace.principal("session", other_csrf)
    accounts.sign_in_external("grace", "oidc", "operator", ["qa"], display_name="G. Hopper")
    assert accounts.session_user(session) == Principal(
        "grace", Role.OPERATOR, "session", grace.id, csrf, frozenset({"qa"})
    )
    frozen_at(monkeypatch, start + timedelta(seconds=3600) - timedelta(microseconds=1))
    assert accounts.session_user(session) is not None
    frozen_at(monkeypatch, start + timedelta(seconds=3600))
    assert accounts.session_user(session) is None  # expired
    frozen_at(monkeypatch, start)
    accounts.end_session(session)
    assert accounts.session_user(session) is None and accounts.session_user(other) is not None
    assert accounts.session_user("") is None and accounts.session_user(other + "x") is None
    mine = accounts.create_session(ada, "10.0.0.3")[0]
    assert accounts.session_user(mine) == Principal("ada", Role.ADMIN, "session", ada.id, accounts_csrf(db, mine))
    accounts.set_password("ada", "another long password")
    assert accounts.session_user(mine) is None  # a new password ends the user's sessions
    accounts.remove_user("grace")
    assert accounts.session_user(other) is None


def accounts_csrf(db: Database, secret: str) -> str:
    from mieruka.auth.accounts import digest
    from mieruka.store import tables as t

    with db.read() as conn:
        found = conn.execute(sa.select(t.sessions.c.csrf).where(t.sessions.c.id_hash == digest(secret))).scalar_one()
    return str(found)


def test_a_token_is_revoked_by_its_owner_or_an_admin_and_hidden_from_others(db: Database) -> None:
    accounts = Accounts(db)
    for name, role in (("ada", "admin"), ("bo", "viewer"), ("cy", "viewer")):
        accounts.add_user(name, role, "long password")
    bo, cy, ada = (Principal(n, r, "token") for n, r in (("bo", Role.VIEWER), ("cy", Role.VIEWER), ("ada", Role.ADMIN)))
    mine, other = accounts.create_token("bo", "mine")[0], accounts.create_token("bo", "other")[0]
    with pytest.raises(NotFoundError):
        accounts.revoke_token_as(cy, mine.id)  # not cy's: as if it did not exist
    assert accounts.get_token(mine.id).revoked_at is None
    assert accounts.revoke_token_as(bo, mine.id).revoked_at is not None
    assert accounts.revoke_token_as(ada, other.id).revoked_at is not None
    link = accounts.create_login_link("bo")
    link_id = next(i for i in db_tokens(db) if i not in (mine.id, other.id))
    with pytest.raises(NotFoundError):
        accounts.revoke_token_as(ada, link_id)  # a login link is not an API token
    assert accounts.login_link_valid(link)


def db_tokens(db: Database) -> list[int]:
    import sqlalchemy as sa

    from mieruka.store import tables as t

    with db.read() as conn:
        return [row.id for row in conn.execute(sa.select(t.tokens.c.id))]


def aware_utc(*moments: datetime | None) -> bool:
    return all(m is None or m.utcoffset() == timedelta(0) for m in moments)


def test_users_are_listed_by_name_as_stored(db: Database, monkeypatch: pytest.MonkeyPatch, cheap_hashes: None) -> None:
    """Users come back as stored on either backend: by name, times to the microsecond and in UTC,
    groups (JSON) and display names cut as kept; a local user is local, an outside one not."""
    start = utcnow().replace(microsecond=654321)
    frozen_at(monkeypatch, start)
    accounts = Accounts(db)
    mo = accounts.sign_in_external("mo", "oidc", "viewer", ["b", "ä" * 300, "a", "", "b"], display_name="D" * 300)
    cy = accounts.add_user("cy", "viewer", None)
    al = accounts.add_user("al", "admin", "long password")
    assert mo == User(mo.id, "mo", Role.VIEWER, start, False, "oidc", ("a", "b", "ä" * 200), start, "D" * 200)
    assert cy == User(cy.id, "cy", Role.VIEWER, start, False)
    assert al == User(al.id, "al", Role.ADMIN, start, True) and aware_utc(al.created_at, mo.synced_at)
    assert accounts.list_users() == [al, cy, mo]
    assert accounts.authenticate("al", "long password") == al
    assert [accounts.is_local(n) for n in ("al", "cy", "mo", "nobody")] == [True, True, False, False]
    frozen_at(monkeypatch, start + timedelta(seconds=1))
    accounts.mark_synced("mo")
    accounts.mark_synced("nobody")  # nothing to mark
    assert accounts.get_user("mo").synced_at == start + timedelta(seconds=1)
    assert accounts.sign_in_external("mo", "oidc", "viewer", []).groups == ()
    with pytest.raises(ConflictError):
        accounts.remove_user("al")  # the last admin
    assert accounts.get_user("al") == al
    with pytest.raises(NotFoundError):
        accounts.set_role("nobody", "viewer")


def test_tokens_are_listed_newest_first_with_their_times(
    db: Database, monkeypatch: pytest.MonkeyPatch, cheap_hashes: None
) -> None:
    """list_tokens: API tokens only, newest first, of one user or all; times as given, in UTC; an id
    out of range (PostgreSQL's integers) is no token, not an error; a revocation keeps its time."""
    start = utcnow().replace(microsecond=123456)
    frozen_at(monkeypatch, start)
    accounts = Accounts(db)
    for name in ("ada", "bo"):
        accounts.add_user(name, "viewer", "long password")
    expires = start + timedelta(days=1, microseconds=1)
    first = accounts.create_token("ada", "first", expires)[0]
    accounts.create_login_link("ada")
    second = accounts.create_token("bo", "second")[0]
    third = accounts.create_token("ada", "x" * 300)[0]
    assert first == Token(first.id, "ada", "api", "first", first.hint, start, expires, None, None)
    assert first.hint.startswith("mrk_") and aware_utc(first.created_at, first.expires_at)
    assert [t.id for t in accounts.list_tokens()] == [third.id, second.id, first.id]
    assert [t.name for t in accounts.list_tokens("ada")] == ["x" * 200, "first"]
    assert accounts.list_tokens("nobody") == []
    for unknown in (0, -1, 2**31, 2**40):
        with pytest.raises(NotFoundError):
            accounts.get_token(unknown)
        with pytest.raises(NotFoundError):
            accounts.revoke_token(unknown)
    later = start + timedelta(seconds=5)
    frozen_at(monkeypatch, later)
    assert accounts.revoke_token(first.id).revoked_at == later
    frozen_at(monkeypatch, later + timedelta(seconds=5))
    assert accounts.revoke_token(first.id).revoked_at == later  # revoked once
    assert accounts.get_token(second.id).revoked_at is None


def test_a_login_link_serves_once_until_it_expires(
    db: Database, monkeypatch: pytest.MonkeyPatch, cheap_hashes: None
) -> None:
    start = utcnow()
    frozen_at(monkeypatch, start)
    accounts = Accounts(db)
    ada = accounts.add_user("ada", "viewer", "long password")
    accounts.sign_in_external("grace", "ldap", "viewer", [])
    link = accounts.create_login_link("ada", valid_for=60)
    frozen_at(monkeypatch, start + timedelta(seconds=60) - timedelta(microseconds=1))
    assert accounts.login_link_valid(link)
    frozen_at(monkeypatch, start + timedelta(seconds=60))
    assert not accounts.login_link_valid(link) and accounts.consume_login_link(link) is None  # expired
    frozen_at(monkeypatch, start)
    other = accounts.create_login_link("ada", valid_for=60)
    assert not accounts.login_link_valid(other + "x") and accounts.consume_login_link(other + "x") is None
    assert accounts.consume_login_link(other) == ada
    used = accounts.get_token(max(db_tokens(db)))
    assert (used.kind, used.revoked_at, used.last_used_at) == ("link", start, start)
    assert accounts.consume_login_link(other) is None
    with pytest.raises(ValidationError, match="signs in through ldap"):
        accounts.create_login_link("grace")


def test_cut_off_counts_the_sessions_it_ends_and_keeps_earlier_revocations(
    db: Database, monkeypatch: pytest.MonkeyPatch, cheap_hashes: None
) -> None:
    start = utcnow()
    frozen_at(monkeypatch, start)
    accounts = Accounts(db)
    grace = accounts.sign_in_external("grace", "ldap", "operator", ["ops"])
    ada = accounts.add_user("ada", "admin", "long password")
    sessions = [accounts.create_session(grace, f"10.0.0.{n}")[0] for n in (1, 2)]
    kept = accounts.create_session(ada, "10.0.0.3")[0]
    old = accounts.create_token("grace", "old")[0]
    accounts.revoke_token(old.id)
    new = accounts.create_token("grace", "new")[0]
    mine = accounts.create_token("ada", "mine")[0]
    later = start + timedelta(seconds=30)
    frozen_at(monkeypatch, later)
    assert accounts.cut_off("grace") == 2
    assert accounts.cut_off("grace") == 0
    assert [accounts.session_user(s) for s in sessions] == [None, None] and accounts.session_user(kept) is not None
    assert [accounts.get_token(t.id).revoked_at for t in (old, new, mine)] == [start, later, None]
    cut = accounts.get_user("grace")
    assert cut.synced_at is None and cut.groups == ("ops",) and cut.role is Role.OPERATOR
    with pytest.raises(NotFoundError):
        accounts.cut_off("nobody")


def test_sessions_expired_go_when_a_session_starts(
    db: Database, monkeypatch: pytest.MonkeyPatch, cheap_hashes: None
) -> None:
    start = utcnow()
    frozen_at(monkeypatch, start)
    accounts = Accounts(db, session_max_age=60)
    ada = accounts.add_user("ada", "viewer", "long password")
    first = accounts.create_session(ada, "10.0.0.1" * 10)[0]
    second = accounts.create_session(ada, "")[0]
    frozen_at(monkeypatch, start + timedelta(seconds=60))
    accounts.create_session(ada, "10.0.0.2")
    frozen_at(monkeypatch, start)
    assert accounts.session_user(first) is None and accounts.session_user(second) is None  # deleted
    assert session_count(db) == 1
    accounts.end_session("not a session")
    assert session_count(db) == 1


def session_count(db: Database) -> int:
    found = db.row("SELECT count(*) FROM sessions")
    assert found is not None
    return int(found[0])


def test_audit_log(db: Database) -> None:
    log = AuditLog(db)
    start = utcnow()
    log.record("ada", "job.cancel", "job:1", "10.0.0.1", {"n": 1})
    log.record("bo", "job.retry", "job:2", "10.0.0.2")
    log.record("ada", "login.failed", "user:ada", "10.0.0.1")
    assert [e.action for e in log.query(AuditQuery(action="job."))] == ["job.retry", "job.cancel"]
    assert [e.target for e in log.query(AuditQuery(actor="ada"))] == ["user:ada", "job:1"]
    assert [e.actor for e in log.query(AuditQuery(target="job:2"))] == ["bo"]
    assert log.query(AuditQuery(action="job.cancel"))[0].detail == {"n": 1}
    assert log.count("login.failed", start - timedelta(seconds=1), actor="ada") == 1
    assert log.count("login.failed", start - timedelta(seconds=1), address="10.0.0.2") == 0
    last = log.last("login.failed", "ada")
    assert last is not None and last.tzinfo is not None and last >= start - timedelta(seconds=1)
    assert log.last("login", "ada") is None
    newest = log.query(AuditQuery(limit=1))[0]
    assert [e.id for e in log.query(AuditQuery(before_id=newest.id))] == [newest.id - 1, newest.id - 2]


def test_audit_entries_written_in_a_group_read_back_as_one_by_one(db: Database) -> None:
    """record_many (the requests' automatic entries, on the DB-API cursor) stores what record
    (SQLAlchemy) does: times in UTC, text cut to the columns, detail as JSON, a large one capped."""
    log = AuditLog(db)
    at = utcnow().replace(microsecond=123456)
    big = {"task": "t", "params": {"x": "y" * 50_000}}
    log.record_many([("ada", "POST /api/tasks/{task}/jobs", "job:7", "10.0.0.1", at, {"task": "näive", "n": 1})])
    log.record_many(
        [
            ("bo" * 80, "a" * 150, "t" * 400, "b" * 80, at, None),
            ("cy", "job.cancel", "job:8", "10.0.0.3", at + timedelta(seconds=1), big),
        ]
    )
    log.record("dee", "job.retry", "job:9", "10.0.0.4", {"task": "näive"}, at)
    cy, bo, ada = log.query(AuditQuery(before_id=log.query(AuditQuery(limit=1))[0].id))
    assert (ada.actor, ada.action, ada.target, ada.address) == (
        "ada",
        "POST /api/tasks/{task}/jobs",
        "job:7",
        "10.0.0.1",
    )
    assert ada.at == at and ada.at.tzinfo is not None and ada.detail == {"task": "näive", "n": 1}
    assert (len(bo.actor), len(bo.action), len(bo.target), len(bo.address), bo.detail) == (100, 100, 300, 64, None)
    assert cy.detail is not None and cy.detail["params"].startswith("(left out: ")
    assert [e.actor for e in log.query(AuditQuery(task="näive"))] == ["dee", "ada"]


def test_audit_entries_older_than_the_retention_go_after_a_write(db: Database) -> None:
    log = AuditLog(db, retention=86400.0)
    now = utcnow()
    log.record_many(
        [
            ("ada", "a.old", "", "", now - timedelta(days=2), None),
            ("ada", "a.kept", "", "", now - timedelta(hours=23), {"n": 1}),
        ]
    )
    assert [e.action for e in log.query(AuditQuery())] == ["a.kept"]
    log.record_many([("ada", "a.later", "", "", now - timedelta(days=3), None)])
    assert len(log.query(AuditQuery())) == 2  # pruned at most hourly


def test_audit_query_filters_as_documented(db: Database) -> None:
    """Each filter of AuditQuery on either backend: an action exactly or by a prefix ending in "."
    and a target by the text it contains, "%", "_" and "/" in them meaning themselves; the task of
    a detail (a number's text too); since inclusive, until exclusive; before_id beyond any id."""
    log = AuditLog(db)
    at = utcnow().replace(microsecond=654321)
    log.record("ada", "job.cancel", "job:1", "10.0.0.1", {"task": "t1", "n": [1, "é"]}, at)
    log.record("bo", "jobXcancel", "job_1", "10.0.0.2", {"task": 5}, at + timedelta(seconds=1))
    log.record("cy", "job_.retry", "50%/done", "10.0.0.3", None, at + timedelta(seconds=2))
    log.record("dee", "user.role", "user:ada", "", {"task": {"a": 1}}, at + timedelta(seconds=3))

    def actors(**query: Any) -> list[str]:
        return [e.actor for e in log.query(AuditQuery(**query))]

    assert actors() == ["dee", "cy", "bo", "ada"]
    assert actors(action="job.") == ["ada"] and actors(action="job_.") == ["cy"]
    assert actors(action="job.cancel") == ["ada"] and actors(action="job") == [] and actors(action="user.") == ["dee"]
    assert actors(target="%") == ["cy"] and actors(target="_") == ["bo"] and actors(target="/") == ["cy"]
    assert (
        actors(target="0%/d") == ["cy"]
        and actors(target="job") == ["bo", "ada"]
        and actors(target="1") == ["bo", "ada"]
    )
    assert actors(target="user:ada", actor="dee") == ["dee"] and actors(target="user:ada", actor="ada") == []
    assert actors(task="t1") == ["ada"] and actors(task="5") == ["bo"] and actors(task="t") == []
    assert actors(since=at + timedelta(seconds=1)) == ["dee", "cy", "bo"]
    assert actors(until=at + timedelta(seconds=1)) == ["ada"]
    assert actors(since=at, until=at + timedelta(seconds=2), action="job_.") == []
    newest = log.query(AuditQuery(limit=1))[0]
    assert actors(before_id=newest.id) == ["cy", "bo", "ada"] and actors(before_id=2**40, limit=2) == ["dee", "cy"]
    assert actors(before_id=newest.id - 3) == []
    ada, cy = log.query(AuditQuery(actor="ada"))[0], log.query(AuditQuery(actor="cy"))[0]
    assert (ada.at, ada.target, ada.address, ada.detail) == (at, "job:1", "10.0.0.1", {"task": "t1", "n": [1, "é"]})
    assert cy.detail is None and cy.at == at + timedelta(seconds=2) and aware_utc(ada.at, cy.at)
    assert log.count("job.cancel", at) == 1 and log.count("job.cancel", at + timedelta(microseconds=1)) == 0
    assert log.count("jobXcancel", at, actor="bo", address="10.0.0.2") == 1
    assert log.count("jobXcancel", at, actor="bo", address="10.0.0.1") == 0
    last = log.last("user.role", "dee")
    assert last == at + timedelta(seconds=3) and aware_utc(last) and log.last("user.role", "ada") is None


def test_presence(db: Database) -> None:
    presence = Presence(db, expiry=60)
    now = utcnow()
    ada = Principal("ada", Role.ADMIN, "session")
    presence.seen(ada, "10.0.0.1", "/jobs", now=now)
    other = Presence(db, expiry=60)  # another server process
    other.seen(ada, "10.0.0.9", "/workers", now=now + timedelta(seconds=10))
    online = presence.online(now + timedelta(seconds=30))
    assert [(s.user, s.address, s.page) for s in online] == [("ada", "10.0.0.9", "/workers")]
    assert not presence.anyone_online(now + timedelta(seconds=71))
    presence.forget("ada")
    assert presence.online(now) == []


one_db_app = mieruka.App("one database", workers=1)


@one_db_app.stream(every="1s", window=10)
def temperature() -> dict[str, float]:
    return {"celsius": 21.5}


def test_a_running_app_opens_one_database(tmp_path: Path) -> None:
    """The runtime's Database serves the job store, accounts and stream history, and closes with it."""
    one_db_app.configure(home=str(tmp_path))
    with one_db_app:
        runtime = one_db_app.runtime
        database = runtime.database
        assert one_db_app.engine.store.db is database and one_db_app.auth.db is database  # type: ignore[attr-defined]
        history = one_db_app.live.history
        assert history is not None and history._db is database
    assert runtime._database is None  # closed and let go with the runtime


def test_password_hash_memory_is_a_setting_and_old_hashes_are_made_again(db: Database) -> None:
    """A small board lowers password_hash_memory: new hashes use it, and a password hashed with
    another value still logs in, and is hashed again with the new one."""
    from mieruka.errors import ConfigError
    from mieruka.settings import Settings

    assert Settings().with_overrides(password_hash_memory="2048").password_hash_memory == 2048
    for bad in ("512", "99999999", "lots"):
        with pytest.raises(ConfigError, match="password_hash_memory"):
            Settings().with_overrides(password_hash_memory=bad)
    before = Accounts(db, hash_memory=2048)
    before.add_user("pia", "viewer", "long password")
    assert "m=2048," in stored_hash(db, "pia")
    after = Accounts(db, hash_memory=4096)
    assert after.authenticate("pia", "wrong password") is None
    assert "m=2048," in stored_hash(db, "pia")
    user = after.authenticate("pia", "long password")
    assert user is not None and user.name == "pia"
    assert "m=4096," in stored_hash(db, "pia")
    assert before.authenticate("pia", "long password") is not None  # the new hash verifies anywhere


def stored_hash(db: Database, name: str) -> str:
    import sqlalchemy as sa

    from mieruka.store import tables as t

    with db.read() as conn:
        return str(conn.execute(sa.select(t.users.c.password_hash).where(t.users.c.name == name)).scalar_one())


def ticks(name: str = "temp", boot: str = "b1", keep: int = 5) -> Streamer:
    return Streamer(StreamSpec(name, func=lambda: None, keep=keep), boot=boot)


def add(streamer: Streamer, *times: float) -> None:
    for t in times:
        streamer.buffer.append(t, {"x": t * 10, "y": None if t % 2 else -t})


def saved_epochs(db: Database) -> dict[str, int]:
    with db.cursor() as cur:
        cur.execute("SELECT epoch, count(*) FROM stream_batches GROUP BY epoch")
        return {str(epoch): int(n) for epoch, n in cur.fetchall()}


def test_stream_history_saves_loads_and_prunes(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_history, "PRUNE_EVERY", 1)
    stream = ticks()
    history = StreamHistory(db)
    history.restore([stream])  # nothing saved yet: the buffer stays empty
    assert stream.buffer.last == 0 and stream.boot == "b1"
    add(stream, 1, 2, 3)
    history.start([stream])
    history.stop()  # saves what is left
    found = history.load("temp", 5)
    assert found is not None and (found.epoch, found.last) == ("b1", 3)
    assert found.points == [(1.0, {"x": 10.0}), (2.0, {"x": 20.0, "y": -2.0}), (3.0, {"x": 30.0})]
    add(stream, 4, 5, 6, 7)
    history.save()  # the ring buffer holds points 3..7: the batch of 1..3 stays
    assert saved_epochs(db) == {"b1": 2}
    restored = history.load("temp", 2)
    assert restored is not None and restored.last == 7 and [t for t, _ in restored.points] == [6.0, 7.0]
    add(stream, 8, 9, 10, 11, 12)
    history.save()  # 8..12: the batches up to 7 go
    assert saved_epochs(db) == {"b1": 1}
    again = ticks(boot="new")
    StreamHistory(db).restore([again])  # a restarted server continues the epoch and its numbers
    assert again.boot == "b1" and again.buffer.last == 12 and again.buffer.first == 8
    # Another server's points on the same stream: its own epoch's are the ones loaded; the others
    # are kept an hour.
    other = ticks(boot="b2")
    elsewhere = StreamHistory(db)
    elsewhere.start([other])
    add(other, 100)
    elsewhere.stop()
    newest = elsewhere.load("temp", 5)
    assert newest is not None and (newest.epoch, newest.last) == ("b2", 1)
    assert newest.points == [(100.0, {"x": 1000.0, "y": -100.0})]
    assert saved_epochs(db) == {"b1": 1, "b2": 1}
    monkeypatch.setattr(stream_history, "FOREIGN_AGE", timedelta(seconds=-1))
    elsewhere.save()
    assert saved_epochs(db) == {"b2": 1}
    assert history.load("nothing", 5) is None


def test_stream_history_waits_out_a_locked_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A save that fails is reported once, and made once the database answers again."""
    path = tmp_path / "locked.db"
    db = Database(f"sqlite:///{path}", busy_timeout=0.05)
    db.migrate()
    stream = ticks()
    history = StreamHistory(db)
    history._streamers = [stream]
    add(stream, 1, 2)
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with caplog.at_level(logging.WARNING, "mieruka.streams"):
            history.save()
            history.save()
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == 1 and said[0].startswith("the points of streams cannot be saved")
        assert said[0].endswith("database is locked")
        assert history.load("temp", 5) is None  # a reader waits for no writer (WAL)
        locker.execute("ROLLBACK")
        history.save()
        found = history.load("temp", 5)
        assert found is not None and found.last == 2 and len(found.points) == 2
    finally:
        locker.close()
        db.close()


def test_a_server_on_sqlite_starts_serves_runs_and_idles_without_sqlalchemy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a server runs at its start, its first page and job, and while idle, goes through the
    DB-API cursors: no statement through either of SQLAlchemy's engines."""
    monkeypatch.setattr(stream_history, "PRUNE_EVERY", 1)
    db = Database(f"sqlite:///{tmp_path / 'mieruka.db'}")
    try:
        db.migrate()
        store = SqlJobStore(db)
        now = utcnow()
        job, _ = store.create_job(NewJob(task="t", params={}))
        store.apply([], Claim(job_ids=[job.id], worker="w1", engine_id="gone", now=now))
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements.append(statement)

        for engine in {db.engine, db._reader}:
            sa.event.listen(engine, "before_cursor_execute", seen)
        store.heartbeat("e1", "host", 1, now, {"kind": "server"})
        store.heartbeat("e1", "host", 1, now)
        assert [(e.id, e.info) for e in store.engines()] == [("e1", {"kind": "server"})]
        assert [j.id for j in store.orphaned_jobs(now, 30, lambda host, pid: False)] == [job.id]
        assert store.next_due_time() is None
        assert store.finished_span(100) == (0, None)
        store.remove_engine("e1")
        assert not Accounts(db).has_users()
        audit = AuditLog(db)
        audit.record_many([("(open)", "GET /api/jobs", "", "127.0.0.1", now, None)])  # written, then pruned
        stream = ticks()
        history = StreamHistory(db)
        history.restore([stream])
        add(stream, 1, 2)
        history.start([stream])
        history.stop()
        found = history.load("temp", 5)
        assert found is not None and found.last == 2
        assert statements == []
    finally:
        db.close()


def test_a_logged_in_users_requests_on_sqlite_go_through_no_sqlalchemy(tmp_path: Path) -> None:
    """check_token and session_user, which every request of a logged-in user runs, are plain SQL:
    no statement through either of SQLAlchemy's engines, valid secret or not."""
    db = Database(f"sqlite:///{tmp_path / 'mieruka.db'}")
    try:
        db.migrate()
        accounts = Accounts(db)
        grace = accounts.sign_in_external("grace", "ldap", "operator", ["ops"], display_name="Grace Hopper")
        token, secret = accounts.create_token("grace", "ci")
        revoked, old = accounts.create_token("grace", "old")
        accounts.revoke_token(revoked.id)
        session, csrf = accounts.create_session(grace, "10.0.0.1")
        statements: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
            statements.append(statement)

        for engine in {db.engine, db._reader}:
            sa.event.listen(engine, "before_cursor_execute", seen)
        assert accounts.check_token(secret) == grace  # writes last_used_at
        assert accounts.check_token(secret) == grace
        assert accounts.check_token(old) is None and accounts.check_token(secret + "x") is None
        assert accounts.session_user(session) == grace.principal("session", csrf)
        assert accounts.session_user(session + "x") is None
        assert statements == []
        assert accounts.get_token(token.id).last_used_at is not None
    finally:
        db.close()


def sqlalchemy_statements(db: Database) -> list[str]:
    """The statements that run from now on through either of SQLAlchemy's engines of `db`."""
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements.append(statement)

    for engine in {db.engine, db._reader}:
        sa.event.listen(engine, "before_cursor_execute", seen)
    return statements


class NoDirectory:
    def sign_in(self, accounts: Accounts, name: str, password: str, address: str) -> User | None:
        return None


def test_a_users_whole_day_on_sqlite_goes_through_no_sqlalchemy(tmp_path: Path, cheap_hashes: None) -> None:
    """Logging in (throttled and audited, right or wrong), sessions, login links, tokens, users and
    outside users, single sign-on subjects and the audit log: plain SQL, no statement through
    either of SQLAlchemy's engines, step by step."""
    db = Database(f"sqlite:///{tmp_path / 'mieruka.db'}")
    try:
        db.migrate()
        audit = AuditLog(db)
        accounts = Accounts(db, audit=audit)
        throttle = Throttle(accounts, audit, max_failures=2, window=900)
        statements = sqlalchemy_statements(db)

        @contextmanager
        def plain(step: str) -> Iterator[None]:
            yield
            assert statements == [], f"{step}: through SQLAlchemy: {statements}"

        with plain("add_user"):
            ada = accounts.add_user("ada", "admin", "long password")
            bo = accounts.add_user("bo", "viewer", None)
            with pytest.raises(ConflictError):
                accounts.add_user("ada", "viewer", None)
        with plain("get_user, list_users, is_local"):
            assert accounts.get_user("ada") == ada and accounts.list_users() == [ada, bo]
            assert accounts.is_local("ada") and not accounts.is_local("nobody")
            with pytest.raises(NotFoundError):
                accounts.get_user("nobody")
        with plain("authenticate"):
            assert accounts.authenticate("ada", "long password") == ada
            assert accounts.authenticate("ada", "wrong password") is None
            assert accounts.authenticate("nobody", "long password") is None
        with plain("a login: the throttle's check, the attempt's record"):
            assert throttle.login("ada", "long password", "10.0.0.1") == ada
            assert throttle.login("nobody", "long password", "10.0.0.1", NoDirectory()) is None
            assert throttle.login("bo", "wrong password", "10.0.0.2") is None
            assert throttle.login("bo", "wrong password", "10.0.0.2") is None
            with pytest.raises(TooManyAttempts):
                throttle.login("bo", "wrong password", "10.0.0.2")
            assert throttle.change_password("ada", "long password", "another long password", "10.0.0.1") == ada
        with plain("the audit log's query, count and last"):
            assert [e.action for e in audit.query(AuditQuery(action="login."))] == ["login.failed"] * 3
            assert [e.actor for e in audit.query(AuditQuery(target="ada", action="login"))] == ["ada"]
            assert audit.count("login.failed", ada.created_at, actor="bo") == 2
            assert audit.last("user.password", "ada") is not None
        with plain("login links"):
            link = accounts.create_login_link("ada")
            assert accounts.login_link_valid(link) and not accounts.login_link_valid(link + "x")
            assert accounts.consume_login_link(link) == ada and accounts.consume_login_link(link) is None
        with plain("a session: created, read, ended (logout)"):
            session, csrf = accounts.create_session(ada, "10.0.0.1")
            assert accounts.session_user(session) == ada.principal("session", csrf)
            accounts.end_session(session)
            assert accounts.session_user(session) is None
        with plain("tokens"):
            token, secret = accounts.create_token("ada", "ci")
            assert accounts.get_token(token.id) == token and accounts.list_tokens() == [token]
            assert accounts.list_tokens("ada") == [token] and accounts.check_token(secret) == ada
            assert accounts.revoke_token_as(ada.principal("token"), token.id).revoked_at is not None
            assert accounts.revoke_token(token.id).revoked_at is not None
        with plain("set_password, set_role, remove_user"):
            accounts.set_password("bo", "a long password")
            assert accounts.set_role("bo", "admin").role is Role.ADMIN
            accounts.remove_user("bo")
        with plain("outside users"):
            grace = accounts.sign_in_external("grace", "oidc", "viewer", ["ops"], display_name="Grace")
            assert accounts.sign_in_external("grace", "oidc", "operator", ["ops"]).role is Role.OPERATOR
            with pytest.raises(ValidationError):
                accounts.sign_in_external("ada", "ldap", "viewer", [])
            accounts.mark_synced("grace")
            accounts.create_session(grace, "10.0.0.3")
            assert accounts.cut_off("grace") == 1
        with plain("single sign-on subjects"):
            provider = Provider(id="corp", name="Corp", issuer="https://id.example", client_id="mieruka")
            subjects = Subjects(db)
            subjects.check(provider, "sub-1", "grace")
            subjects.link(provider, "sub-1", grace.id)
            subjects.link(provider, "sub-1", grace.id)
            with pytest.raises(SignInFailed):
                subjects.check(provider, "sub-1", "ada")
        with plain("the audit log's record, in its own transaction"):
            audit.record("ada", "user.role", "user:grace", "10.0.0.1", {"role": "operator"})
            assert audit.query(AuditQuery(actor="ada", limit=1))[0].detail == {"role": "operator"}
    finally:
        db.close()


# A login's whole path, in short, in a fresh interpreter (URL is given before it).
_A_LOGIN = """
import json
import sys

from mieruka.auth.accounts import Accounts, Throttle
from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.auth.oidc_providers import Provider
from mieruka.auth.oidc_subjects import Subjects
from mieruka.store.database import Database

db = Database(URL)
db.migrate()
audit = AuditLog(db)
accounts = Accounts(db, audit=audit, hash_memory=1024)
throttle = Throttle(accounts, audit, max_failures=5, window=900)
ada = accounts.add_user("ada", "admin", "long password")
assert throttle.login("ada", "wrong password", "10.0.0.1") is None
assert throttle.login("ada", "long password", "10.0.0.1") == ada
session, csrf = accounts.create_session(ada, "10.0.0.1")
assert accounts.session_user(session) == ada.principal("session", csrf)
link = accounts.create_login_link("ada")
assert accounts.login_link_valid(link) and accounts.consume_login_link(link) == ada
token, secret = accounts.create_token("ada", "ci")
assert accounts.list_tokens("ada") == [token] and accounts.check_token(secret) == ada
accounts.revoke_token(token.id)
grace = accounts.sign_in_external("grace", "oidc", "viewer", ["ops"])
provider = Provider(id="corp", name="Corp", issuer="https://id.example", client_id="mieruka")
Subjects(db).check(provider, "sub-1", "grace")
Subjects(db).link(provider, "sub-1", grace.id)
assert accounts.cut_off("grace") == 0
accounts.end_session(session)
audit.record("ada", "user.role", "user:grace", "10.0.0.1", {"role": "viewer"})
assert [e.action for e in audit.query(AuditQuery(actor="ada", target="grace"))] == ["user.role"]
"""


def test_a_login_on_sqlite_never_imports_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mieruka.db'}"
    assert loaded_after(f"URL = {url!r}\n{_A_LOGIN}", tmp_path) & {"sqlalchemy", "alembic"} == set()
