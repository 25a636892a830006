"""Login throttling holds under concurrency: however many wrong passwords arrive at once (threads,
several database connections as several server processes would have, or real server processes
over HTTP), at most `login_max_failures` are checked per name (four times as many per address),
the rest are refused with 429; a lock refuses even the right password until it ends; changing a
password is throttled with the logins, and its failures are audited."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

import mieruka
from mieruka.auth import accounts as accounts_module
from mieruka.auth.accounts import Accounts, Throttle
from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.core.clock import utcnow
from mieruka.errors import TooManyAttempts, ValidationError
from mieruka.store import tables as t
from mieruka.store.database import Database
from mieruka.web.csrf import CSRF_FIELD, LOGIN_CSRF_COOKIE
from tests.conftest import TESTS, ServerProcess

PASSWORD = "a long password"
LIMIT = 5
WINDOW = 900.0
AT_ONCE = 40
T = TypeVar("T")


@pytest.fixture
def checks(cheap_hashes: None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The password of every argon2 verification made, in the order made."""
    made: list[str] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            made.append(str(password))
            return super().verify(hash, password)

    monkeypatch.setattr(accounts_module, "new_hasher", lambda memory_cost: Counting(1, 1024, 1))
    return made


class Clock:
    """The accounts' "now", moved by hand, so that a lock's end needs no waiting."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(accounts_module, "utcnow", clock)
    return clock


@pytest.fixture
def dbs(database_url: str) -> Iterator[list[Database]]:
    """Two Database objects on one database: separate engines and pools, as two server processes have."""
    first = Database(database_url)
    first.migrate()
    with first.write() as conn:
        conn.execute(t.login_attempts.delete())
    second = Database(database_url)
    yield [first, second]
    first.close()
    second.close()


def throttles(dbs: list[Database]) -> list[Throttle]:
    return [Throttle(Accounts(db), AuditLog(db), LIMIT, WINDOW) for db in dbs]


def at_once(count: int, call: Callable[[int], T]) -> list[T | TooManyAttempts]:
    """`call(i)` for i in range(count), in as many threads released together; TooManyAttempts is
    returned, not raised."""
    start = threading.Barrier(count, timeout=120)

    def one(i: int) -> T | TooManyAttempts:
        start.wait()
        try:
            return call(i)
        except TooManyAttempts as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def refused(results: list[Any]) -> int:
    return sum(isinstance(r, TooManyAttempts) for r in results)


def entries(audit: AuditLog, action: str) -> list[Any]:
    return audit.query(AuditQuery(action=action, limit=1000))


def no_attempts_left(db: Database) -> bool:
    with db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(t.login_attempts)).scalar_one() == 0


# -- in process: threads on SQLite and PostgreSQL ---------------------------------------------------
def test_wrong_passwords_at_once_for_one_name(dbs: list[Database], checks: list[str]) -> None:
    both = throttles(dbs)
    both[0].accounts.add_user("vic", "viewer", PASSWORD)
    results = at_once(AT_ONCE, lambda i: both[i % 2].login("vic", f"wrong {i}", "10.0.0.1"))
    assert len(checks) == LIMIT and refused(results) == AT_ONCE - LIMIT
    assert results.count(None) == LIMIT
    assert len(entries(both[0].audit, "login.failed")) == LIMIT
    assert no_attempts_left(dbs[0])
    locked = next(r for r in results if isinstance(r, TooManyAttempts))
    assert locked.retry_after is not None
    assert "too many failed logins" in locked.message and 0 < locked.retry_after <= WINDOW
    with pytest.raises(TooManyAttempts):
        both[1].login("vic", PASSWORD, "10.0.0.2")  # the right password, from elsewhere: still locked
    assert len(checks) == LIMIT


def test_wrong_passwords_at_once_from_one_address(dbs: list[Database], checks: list[str]) -> None:
    both = throttles(dbs)
    results = at_once(AT_ONCE, lambda i: both[i % 2].login(f"guess{i}", PASSWORD, "10.0.0.9"))
    assert len(checks) == LIMIT * accounts_module.ADDRESS_FACTOR
    assert refused(results) == AT_ONCE - LIMIT * accounts_module.ADDRESS_FACTOR
    both[0].accounts.add_user("ada", "viewer", PASSWORD)
    assert both[0].login("ada", PASSWORD, "10.0.0.10") is not None  # another address gets in
    with pytest.raises(TooManyAttempts):
        both[0].login("ada", PASSWORD, "10.0.0.9")


def test_the_right_password_is_refused_until_the_lock_ends(
    dbs: list[Database], checks: list[str], clock: Clock
) -> None:
    throttle = throttles(dbs)[0]
    vic = throttle.accounts.add_user("vic", "viewer", PASSWORD)
    for i in range(LIMIT):
        assert throttle.login("vic", f"wrong {i}", "10.0.0.1") is None
    start = clock.now
    for elapsed in (0, 60, WINDOW - 1):
        clock.now = start + timedelta(seconds=elapsed)
        with pytest.raises(TooManyAttempts) as locked:
            throttle.login("vic", PASSWORD, "10.0.0.1")
        assert locked.value.retry_after == WINDOW - elapsed
    assert len(checks) == LIMIT
    clock.now = start + timedelta(seconds=WINDOW + 1)
    assert throttle.login("vic", PASSWORD, "10.0.0.1") == vic
    assert len(checks) == LIMIT + 1


def test_retry_after_is_when_the_lock_ends(dbs: list[Database], checks: list[str], clock: Clock) -> None:
    throttle = throttles(dbs)[0]
    start = clock.now
    for i in range(LIMIT):
        throttle.login("nobody", f"wrong {i}", "10.0.0.1")
        clock.now += timedelta(seconds=10)
    clock.now = start + timedelta(seconds=100)
    with pytest.raises(TooManyAttempts) as locked:
        throttle.login("nobody", "wrong", "10.0.0.1")
    assert locked.value.retry_after == WINDOW - 100  # the oldest failure leaves the window then
    assert "try again in 14 minutes" in locked.value.message


def test_password_changes_are_throttled_with_the_logins(dbs: list[Database], checks: list[str]) -> None:
    both = throttles(dbs)
    both[0].accounts.add_user("vic", "viewer", PASSWORD)
    olga = both[0].accounts.add_user("olga", "viewer", PASSWORD)
    with pytest.raises(ValidationError):
        both[0].change_password("vic", PASSWORD, "short", "10.0.0.1")  # checked before the password
    assert checks == []
    results = at_once(
        AT_ONCE, lambda i: both[i % 2].change_password("vic", f"wrong {i}", "new password", f"10.0.0.{i}")
    )
    assert len(checks) == LIMIT and refused(results) == AT_ONCE - LIMIT and results.count(None) == LIMIT
    failed = entries(both[0].audit, "password.change_failed")
    assert len(failed) == LIMIT and {(e.actor, e.target) for e in failed} == {("vic", "user:vic")}
    with pytest.raises(TooManyAttempts, match="too many wrong passwords"):
        both[0].change_password("vic", PASSWORD, "new password", "10.0.0.1")
    with pytest.raises(TooManyAttempts, match="too many failed logins"):
        both[0].login("vic", PASSWORD, "10.0.0.1")  # one count for the user's password checks
    assert both[1].accounts.authenticate("vic", "new password") is None
    assert both[0].change_password("olga", PASSWORD, "new password", "10.0.0.1") == olga
    assert both[0].login("olga", "new password", "10.0.0.1") == olga
    assert [e.actor for e in entries(both[0].audit, "user.password")] == ["olga"]
    assert no_attempts_left(dbs[0])


def test_a_check_that_fails_ends_its_reservation_as_a_failure(
    dbs: list[Database], checks: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    throttle = throttles(dbs)[0]

    def broken(name: str, password: str) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(throttle.accounts, "authenticate", broken)
    with pytest.raises(RuntimeError):
        throttle.login("vic", PASSWORD, "10.0.0.1")
    assert len(entries(throttle.audit, "login.failed")) == 1 and no_attempts_left(dbs[0])


def test_no_limit_checks_every_password(dbs: list[Database], checks: list[str]) -> None:
    accounts = Accounts(dbs[0])
    throttle = Throttle(accounts, AuditLog(dbs[0]), 0, WINDOW)
    results = at_once(10, lambda i: throttle.login("vic", "wrong", "10.0.0.1"))
    assert results == [None] * 10 and len(checks) == 10


# -- the pages, in process ------------------------------------------------------------------------------
@pytest.fixture
def app(tmp_path: Path, cheap_hashes: None) -> Iterator[mieruka.App]:
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path / "home"), workers=1, poll_interval=0.2, prune_interval=3600)
    yield app
    app._settings = None


def form_token(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    return match.group(1)


def test_the_password_form_says_when_it_is_locked(app: mieruka.App) -> None:
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("vic", "viewer", PASSWORD)
        client.post("/login", data={CSRF_FIELD: form_token(client), "name": "vic", "password": PASSWORD})
        csrf = client.get("/api/me").json()["csrf_token"]
        for _ in range(LIMIT):
            wrong = client.post(
                "/account/password", data={CSRF_FIELD: csrf, "current": "nope", "password": "new password"}
            )
            assert wrong.status_code == 422 and "current password is wrong" in wrong.text
        locked = client.post(
            "/account/password", data={CSRF_FIELD: csrf, "current": PASSWORD, "password": "new password"}
        )
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "too many wrong passwords; try again in 15 minutes" in locked.text
        assert "<form" in locked.text  # the account page, with its message
        assert app.auth.accounts.authenticate("vic", "new password") is None
        failed = app.auth.audit.query(AuditQuery(action="password.change_failed"))
        assert [(e.actor, e.target) for e in failed] == [("vic", "user:vic")] * LIMIT
        assert len({e.address for e in failed}) == 1 and failed[0].address  # the client's address


# -- real server processes over HTTP ----------------------------------------------------------------------
def cli(*args: str, stdin: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    done = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        env={**env, "PYTHONPATH": str(TESTS.parent)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_two_real_servers_check_at_most_the_limit(tmp_path: Path) -> None:
    """40 wrong passwords for one name at once, spread over two server processes on one database:
    five answers say "wrong", 35 say 429."""
    home = tmp_path / "home"
    cli("users", "add", "vic", "--role", "viewer", "--password-stdin", "--home", str(home), stdin=PASSWORD + "\n")
    servers: list[ServerProcess] = []
    try:
        for _ in range(2):  # one after the other: the second starts on a database the first set up
            servers.append(ServerProcess("tests/jobs.py:app", home, "--workers", "1"))
            servers[-1].wait_ready(timeout=120)
        forms = []
        for server in servers:
            page = httpx.get(f"{server.url}/login", timeout=60)
            match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert match, page.text
            forms.append((server.url, match.group(1), page.cookies[LOGIN_CSRF_COOKIE]))

        def post(i: int, password: str) -> httpx.Response:
            url, token, cookie = forms[i % 2]
            return httpx.post(
                f"{url}/login",
                data={CSRF_FIELD: token, "name": "vic", "password": password},
                headers={"Cookie": f"{LOGIN_CSRF_COOKIE}={cookie}"},
                timeout=120,
            )

        answers = at_once(AT_ONCE, lambda i: post(i, f"wrong {i}"))
        codes = sorted(a.status_code for a in answers if isinstance(a, httpx.Response))
        assert codes == [401] * LIMIT + [429] * (AT_ONCE - LIMIT)
        locked = post(0, PASSWORD)
        assert locked.status_code == 429 and 0 < int(locked.headers["retry-after"]) <= WINDOW
        assert "too many failed logins" in locked.text
    except BaseException:
        for server in servers:
            print(server.output())
        raise
    finally:
        for server in servers:
            server.stop()
