"""Accounts, audit log and presence on every database backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import mieruka
from mieruka.auth.accounts import Accounts
from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.auth.presence import Presence
from mieruka.core.access import Principal, Role
from mieruka.core.clock import utcnow
from mieruka.errors import ConflictError, NotFoundError, ValidationError
from mieruka.live.history import StreamHistory
from mieruka.store.base import NewJob
from mieruka.store.database import Database
from mieruka.store.pools import SqlPoolStore
from mieruka.store.sql import SqlJobStore


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
