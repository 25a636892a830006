"""Accounts in-process: open single-user mode, sessions (fixation, cookie flags), CSRF, tokens
(revoked, expired, last use), login throttling, presence expiry, the audit log of every action,
security headers, and the CSRF field in every form of every page."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import mieruka
from mieruka.auth.presence import Presence
from mieruka.core.access import Principal, Role
from mieruka.core.clock import utcnow
from mieruka.store import tables as t
from mieruka.web.csrf import CSRF_FIELD, LOGIN_CSRF_COOKIE
from mieruka.web.identity import SESSION_COOKIE

PASSWORD = "correct horse"


@pytest.fixture(autouse=True)
def _fast(cheap_hashes: None) -> None:
    pass


@pytest.fixture
def app(tmp_path: Path) -> Iterator[mieruka.App]:
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path / "home"), executor="threads", workers=1, poll_interval=0.2, prune_interval=3600)
    yield app
    app._settings = None


@pytest.fixture
def client(app: mieruka.App) -> Iterator[TestClient]:
    with TestClient(app.asgi()) as client:
        for name, role in (("alice", "admin"), ("olga", "operator"), ("vic", "viewer")):
            app.auth.accounts.add_user(name, role, PASSWORD)
        yield client


def login_form_token(client: TestClient) -> str:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token."""
    response = client.post(
        "/login",
        data={CSRF_FIELD: login_form_token(client), "name": name, "password": password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    me = client.get("/api/me").json()
    assert me["name"] == name and me["via"] == "session"
    return str(me["csrf_token"])


def audit(app: mieruka.App, action: str | None = None) -> list[dict[str, Any]]:
    from mieruka.auth.audit import AuditQuery

    return [e.json() for e in app.auth.audit.query(AuditQuery(action=action, limit=1000))]


# -- the open single-user mode ------------------------------------------------------------------
def test_with_no_user_a_loopback_server_is_open_as_the_local_admin(app: mieruka.App) -> None:
    with TestClient(app.asgi()) as client:
        assert client.get("/api/me").json() == {
            "name": "local",
            "role": "admin",
            "via": "local",
            "csrf_token": None,
            "language": None,
        }
        job = client.post("/api/tasks/add/jobs", json={"a": 1})
        assert job.status_code == 202 and job.json()["owner"] is None
        # Another site's page cannot make the browser change anything on the local server.
        evil = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Origin": "https://evil.example"})
        assert evil.status_code == 403 and evil.json()["error"]["code"] == "csrf_failed"
        assert client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Origin": "null"}).status_code == 403
        same = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Origin": "http://127.0.0.1:8000"})
        assert same.status_code == 202
        proxied = client.get("/api/tasks", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 401 and "mieruka users add" in proxied.json()["error"]["message"]
        app.auth.accounts.add_user("alice", "admin", PASSWORD)
        app.asgi()  # a fresh app sees the user at once; the running one within a second
    with TestClient(app.asgi()) as client:
        assert client.get("/api/me").status_code == 401


def test_a_browser_is_sent_to_the_login_page_and_back(client: TestClient) -> None:
    first = client.get("/jobs?status=failed", headers={"Accept": "text/html"}, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login?next=%2Fjobs%3Fstatus%3Dfailed"
    token = login_form_token(client)
    done = client.post(
        "/login",
        data={CSRF_FIELD: token, "name": "vic", "password": PASSWORD, "next": "/jobs?status=failed"},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/jobs?status=failed"
    # An address outside the server is never a destination.
    token = login_form_token(client)
    done = client.post(
        "/login",
        data={CSRF_FIELD: token, "name": "vic", "password": PASSWORD, "next": "//evil.example/"},
        follow_redirects=False,
    )
    assert done.headers["location"] == "/"


# -- sessions -------------------------------------------------------------------------------------------
def test_login_rotates_the_session_id(app: mieruka.App, client: TestClient) -> None:
    """Session fixation: a session id planted before login is never the one used after it."""
    client.cookies.set(SESSION_COOKIE, "planted-by-an-attacker", domain="127.0.0.1")
    login(client, "vic")
    first = client.cookies.get(SESSION_COOKIE, domain="127.0.0.1")
    assert first and first != "planted-by-an-attacker"
    login(client, "alice")  # logging in again, as someone else: a new id, the old one ended
    second = client.cookies.get(SESSION_COOKIE, domain="127.0.0.1")
    assert second != first
    with TestClient(app.asgi()) as other:
        other.cookies.set(SESSION_COOKIE, first)
        assert other.get("/api/me").status_code == 401
        other.cookies.set(SESSION_COOKIE, second)
        assert other.get("/api/me").json()["name"] == "alice"


def test_session_cookie_flags(app: mieruka.App) -> None:
    with TestClient(app.asgi(), base_url="https://mieruka.example") as client:
        app.auth.accounts.add_user("vic", "viewer", PASSWORD)
        response = client.post(
            "/login",
            data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": PASSWORD},
            follow_redirects=False,
        )
        cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" in cookie
    with TestClient(app.asgi()) as client:  # plain http: a Secure cookie would never come back
        response = client.post(
            "/login",
            data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": PASSWORD},
            follow_redirects=False,
        )
        cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "Secure" not in cookie


def test_logout_ends_the_session(client: TestClient) -> None:
    csrf = login(client, "vic")
    old = client.cookies.get(SESSION_COOKIE)
    assert client.post("/logout", data={CSRF_FIELD: csrf}, follow_redirects=False).status_code == 303
    client.cookies.set(SESSION_COOKIE, old or "")
    assert client.get("/api/me").status_code == 401


def test_a_new_password_ends_the_sessions(app: mieruka.App, client: TestClient) -> None:
    login(client, "vic")
    app.auth.accounts.set_password("vic", "another password")
    assert client.get("/api/me").status_code == 401


# -- CSRF ----------------------------------------------------------------------------------------------
def test_csrf_is_required_for_cookie_sessions(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "olga")
    refused = client.post("/api/tasks/add/jobs", json={"a": 1})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf_failed"
    assert client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"X-CSRF-Token": "wrong"}).status_code == 403
    assert client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"X-CSRF-Token": csrf}).status_code == 202
    # Forms: the field, urlencoded or first in a multipart body.
    assert client.post("/tasks/add", data={CSRF_FIELD: csrf, "a": "1"}, follow_redirects=False).status_code == 303
    assert client.post("/tasks/add", data={"a": "1"}, follow_redirects=False).status_code == 403
    files = {CSRF_FIELD: (None, csrf), "a": (None, "1")}
    assert client.post("/tasks/add", files=files, follow_redirects=False).status_code == 303
    late = {"a": (None, "1"), CSRF_FIELD: (None, csrf)}  # not first: not looked for
    assert client.post("/tasks/add", files=late, follow_redirects=False).status_code == 403
    assert client.post("/jobs/cancel", data={"ids": "1"}, follow_redirects=False).status_code == 403
    assert len([e for e in audit(app, "job.submit")]) == 3  # only the accepted ones


def test_bearer_requests_need_no_csrf_token(app: mieruka.App, client: TestClient) -> None:
    _, secret = app.auth.accounts.create_token("olga", "script")
    response = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 202 and response.json()["owner"] == "olga"


def test_the_login_form_itself_is_csrf_protected(client: TestClient) -> None:
    response = client.post("/login", data={"name": "vic", "password": PASSWORD}, follow_redirects=False)
    assert response.status_code == 403
    client.cookies.delete(LOGIN_CSRF_COOKIE)
    response = client.post("/login", data={CSRF_FIELD: "made-up", "name": "vic", "password": PASSWORD})
    assert response.status_code == 403


# -- tokens -----------------------------------------------------------------------------------------------
def test_revoked_and_expired_tokens_are_rejected(app: mieruka.App, client: TestClient) -> None:
    accounts = app.auth.accounts
    token, secret = accounts.create_token("vic", "laptop", utcnow() + timedelta(days=1))
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/tasks", headers=bearer).status_code == 200
    assert accounts.get_token(token.id).last_used_at is not None
    with app.auth.db.write() as conn:
        conn.execute(
            t.tokens.update().where(t.tokens.c.id == token.id).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = client.get("/api/tasks", headers=bearer)
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]

    token, secret = accounts.create_token("vic", "script")
    bearer = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/tasks", headers=bearer).status_code == 200
    assert client.delete(f"/api/tokens/{token.id}", headers=bearer).status_code == 204  # its owner revokes it
    assert client.get("/api/tasks", headers=bearer).status_code == 401
    assert client.get("/api/tasks", headers={"Authorization": "Bearer mrk_unknown"}).status_code == 401
    assert client.get("/api/tasks", headers={"Authorization": "Basic dmljOnB3"}).status_code == 401
    assert client.get("/healthz", headers=bearer).status_code == 200  # public routes ignore a stale token


def test_tokens_are_shown_once_and_stored_hashed(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "vic")
    created = client.post("/api/tokens", json={"name": "ci", "expires_in_days": 30}, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201
    secret = created.json()["token"]
    listed = client.get("/api/tokens").json()
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    with app.auth.db.read() as conn:
        stored = conn.execute(sa.select(t.tokens.c.secret_hash)).scalars().all()
    assert secret not in stored and all(len(s) == 64 for s in stored)
    # Only admins create tokens for others or see them.
    other = client.post("/api/tokens", json={"user": "alice"}, headers={"X-CSRF-Token": csrf})
    assert other.status_code == 403
    assert client.get("/api/tokens?user=alice").status_code == 403


def test_one_time_login_link(app: mieruka.App, client: TestClient) -> None:
    secret = app.auth.accounts.create_login_link("olga")
    # Opening the link (a person, or a mail scanner) does not use it up: the button on the page does.
    for _ in range(2):
        page = client.get(f"/login/link/{secret}")
        assert page.status_code == 200 and client.get("/api/me").status_code == 401
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    assert client.post(f"/login/link/{secret}", follow_redirects=False).status_code == 403  # CSRF field
    first = client.post(f"/login/link/{secret}", data={CSRF_FIELD: token.group(1)}, follow_redirects=False)
    assert first.status_code == 303
    assert client.get("/api/me").json()["name"] == "olga"
    client.cookies.clear()
    again = client.get(f"/login/link/{secret}", follow_redirects=False)
    assert again.status_code == 401 and "used already" in again.text
    form_token = login_form_token(client)
    again = client.post(f"/login/link/{secret}", data={CSRF_FIELD: form_token}, follow_redirects=False)
    assert again.status_code == 401 and client.get("/api/me").status_code == 401


# -- login throttling -----------------------------------------------------------------------------------
def test_login_is_throttled_per_user_and_per_address(app: mieruka.App, client: TestClient) -> None:
    for _ in range(5):
        assert (
            client.post(
                "/login", data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": "wrong"}
            ).status_code
            == 401
        )
    locked = client.post(
        "/login",
        data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": PASSWORD},
        follow_redirects=False,
    )
    assert locked.status_code == 429 and "too many failed logins" in locked.text
    assert int(locked.headers["retry-after"]) > 0
    login(client, "olga")  # another user from the same address still gets in
    assert len(audit(app, "login.failed")) == 5
    # Per address: four times as many failures, whatever the names.
    for i in range(15):
        client.post("/login", data={CSRF_FIELD: login_form_token(client), "name": f"guess{i}", "password": "x"})
    refused = client.post("/login", data={CSRF_FIELD: login_form_token(client), "name": "alice", "password": PASSWORD})
    assert refused.status_code == 429


def test_a_successful_login_resets_the_user_count(app: mieruka.App, client: TestClient) -> None:
    for _ in range(4):
        client.post("/login", data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": "wrong"})
    login(client, "vic")
    for _ in range(4):
        client.post("/login", data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": "wrong"})
    login(client, "vic")


# -- presence ---------------------------------------------------------------------------------------------
def test_presence_expires(app: mieruka.App) -> None:
    app.auth.db.migrate()
    presence = Presence(app.auth.db, expiry=300)
    now = utcnow()
    presence.seen(Principal("vic", Role.VIEWER, "session"), "10.0.0.5", "/jobs", now=now)
    assert [s.user for s in presence.online(now + timedelta(seconds=299))] == ["vic"]
    assert presence.anyone_online(now + timedelta(seconds=299))
    assert presence.online(now + timedelta(seconds=301)) == []
    assert not presence.anyone_online(now + timedelta(seconds=301))


def test_api_presence_lists_who_is_online(app: mieruka.App, client: TestClient) -> None:
    assert client.get("/api/presence").status_code == 401
    login(client, "vic")
    client.get("/jobs")
    online = client.get("/api/presence").json()
    assert online["expiry_seconds"] == 300
    assert [(o["user"], o["role"]) for o in online["online"]] == [("vic", "viewer")]
    assert "1</span> online" in client.get("/").text  # the header's indicator
    client.post("/logout", data={CSRF_FIELD: client.get("/api/me").json()["csrf_token"]})
    assert app.auth.presence.online() == []


# -- audit log -------------------------------------------------------------------------------------------
def test_every_action_is_audited(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "alice")
    h = {"X-CSRF-Token": csrf}
    job = client.post("/api/tasks/add/jobs", json={"a": 1}, headers=h).json()
    client.post("/api/tasks/add/run", json={"a": 2}, headers=h)
    app.engine.wait(job["id"], 30)
    client.post(f"/api/jobs/{job['id']}/retry", headers=h)  # 409: a succeeded job: not audited
    failed = client.post("/api/tasks/fail/jobs", json={}, headers=h).json()
    app.engine.wait(failed["id"], 30)
    client.post(f"/api/jobs/{failed['id']}/retry", headers=h)
    app.engine.wait(failed["id"], 30)
    slow = client.post("/api/tasks/sleep/jobs", json={"seconds": 30}, headers=h).json()
    client.post(f"/api/jobs/{slow['id']}/cancel", headers=h)
    app.engine.wait(slow["id"], 30)
    client.delete(f"/api/jobs/{job['id']}", headers=h)
    client.post("/tasks/add", data={CSRF_FIELD: csrf, "a": "3"})
    client.post("/api/users", json={"name": "newbie", "role": "viewer", "password": "long enough"}, headers=h)
    client.patch("/api/users/newbie", json={"role": "operator", "password": "even longer"}, headers=h)
    token = client.post("/api/tokens", json={"name": "t"}, headers=h).json()
    client.delete(f"/api/tokens/{token['id']}", headers=h)
    client.delete("/api/users/newbie", headers=h)
    client.post("/login", data={CSRF_FIELD: login_form_token(client), "name": "alice", "password": "nope"})
    actions = [(e["action"], e["target"]) for e in reversed(audit(app))]
    assert actions == [
        ("login", "user:alice"),
        ("job.submit", f"job:{job['id']}"),
        ("task.run", f"job:{job['id'] + 1}"),
        ("job.submit", f"job:{failed['id']}"),
        ("job.retry", f"job:{failed['id']}"),
        ("job.submit", f"job:{slow['id']}"),
        ("job.cancel", f"job:{slow['id']}"),
        ("job.delete", f"job:{job['id']}"),
        ("job.submit", f"job:{slow['id'] + 1}"),
        ("user.add", "user:newbie"),
        ("user.role", "user:newbie"),
        ("user.password", "user:newbie"),
        ("token.create", f"token:{token['id']}"),
        ("token.revoke", f"token:{token['id']}"),
        ("user.remove", "user:newbie"),
        ("login.failed", "user:alice"),
    ]
    entry = audit(app)[-1]
    assert entry["actor"] == "alice" and entry["address"] == "127.0.0.1" and entry["at"].endswith("Z")


def test_audit_log_filters_csv_and_is_read_only(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "alice")
    app.auth.audit.record("mallory", "job.cancel", "job:7", "10.1.2.3", {"why": "=cmd|' /C calc'!A0"})
    app.auth.audit.record("bob", "source.refresh", "source:sales", "10.1.2.4")
    page = client.get("/api/audit?action=job.").json()
    assert [e["actor"] for e in page["entries"]] == ["mallory"]
    assert client.get("/api/audit?actor=bob").json()["entries"][0]["target"] == "source:sales"
    assert client.get("/api/audit?limit=1").json()["next_cursor"] is not None
    exported = client.get("/audit.csv?action=job.cancel")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0][:5] == ["id", "at_utc", "actor", "action", "target"] and rows[1][2] == "mallory"
    assert rows[1][6].startswith("{")  # JSON text; formulas only ever as quoted text
    html = client.get("/audit?actor=mallory").text
    assert "job:7" in html and "source:sales" not in html
    # Times that exist where they were written but not in UTC (found by the fuzzer: it was a 500).
    for field, value in (("until", "0001-01-01T00:00:00+01:01"), ("since", "9999-12-31T23:59:00-01:00")):
        refused = client.get("/api/audit", params={field: value})
        assert refused.status_code == 422 and refused.json()["error"]["fields"][0]["field"] == field
        assert "out of range" in refused.json()["error"]["message"]
    assert client.get("/audit?until=9999-12-31").status_code == 422  # the whole last day ends past 9999
    assert client.post("/api/audit", headers={"X-CSRF-Token": csrf}).status_code == 405
    login(client, "olga")
    assert client.get("/audit").status_code == 403


# -- headers, pages and forms --------------------------------------------------------------------------
def test_security_headers(client: TestClient) -> None:
    response = client.get("/login")
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    assert "no-store" not in client.get("/static/mieruka.css").headers.get("cache-control", "")


class Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._open = {"method": (a.get("method") or "get").lower(), "action": a.get("action"), "fields": []}
            self.forms.append(self._open)
        elif tag in ("input", "select", "textarea", "button") and self._open is not None and a.get("name"):
            self._open["fields"].append((a.get("name"), a.get("value")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def test_every_post_form_of_every_page_carries_the_csrf_token_first(app: mieruka.App, client: TestClient) -> None:
    csrf = login(client, "alice")
    job = client.post("/api/tasks/fail/jobs", json={}, headers={"X-CSRF-Token": csrf}).json()
    app.engine.wait(job["id"], 30)
    client.post("/api/tokens", json={"name": "t"}, headers={"X-CSRF-Token": csrf})
    from mieruka.web.access import flat_routes

    routes = {r.path for r in flat_routes(app.asgi())}
    pages = [
        "/",
        "/jobs",
        "/workers",
        "/account",
        "/users",
        "/audit",
        "/presence",
        f"/jobs/{job['id']}",
        f"/jobs/{job['id']}/steps",
        "/login",
        "/displays",
        "/display",
        "/notifications",
    ] + [f"/tasks/{task.name}" for task in app.tasks]
    pages += [p for p in ["/dashboards"] if p in routes]
    seen = 0
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        parser = Forms()
        parser.feed(response.text)
        for form in parser.forms:
            if form["method"] != "post":
                continue
            seen += 1
            assert form["fields"] and form["fields"][0] == (CSRF_FIELD, csrf), f"{url}: {form}"
    assert seen >= 10
    # And every page of the app is in the list above, so a new page is checked too.
    html_pages = {
        r.path
        for r in flat_routes(app.asgi())
        if r.methods
        and "GET" in r.methods
        and not (r.path or "").startswith(("/api", "/openapi", "/static", "/healthz", "/metrics"))
    }
    covered = {
        "/",
        "/jobs",
        "/workers",
        "/account",
        "/users",
        "/audit",
        "/presence",
        "/jobs/{job_id}",
        "/login",
        "/jobs/{job_id}/steps",
        "/tasks/{name}",
        "/docs",
        "/redoc",
        "/jobs/{job_id}/panel",
        "/jobs/{job_id}/row",
        "/workers/panel",
        "/presence/badge",
        "/audit.csv",
        "/login/link/{secret}",
        "/dashboards",
        "/dashboards/{name}",
        "/streams/{name}",
        "/displays",
        "/display",
        "/notifications",
        # single sign-on: a redirect, or a page in words with no form of its own (tests/servers/test_oidc.py)
        "/login/oidc/{provider}",
        "/login/oidc/{provider}/callback",
    }  # tests/jobs.py declares no dashboards
    assert html_pages <= covered, f"pages not checked for forms: {html_pages - covered}"


def test_a_browser_without_the_role_gets_a_page_not_json(client: TestClient) -> None:
    login(client, "vic")
    response = client.get("/users", headers={"Accept": "text/html"})
    assert response.status_code == 403 and response.headers["content-type"].startswith("text/html")
    assert "needs the admin role" in response.text and "Traceback" not in response.text
    api = client.get("/api/users")
    assert api.status_code == 403 and api.json()["error"]["code"] == "forbidden"


def test_html_artifacts_are_never_shown_inline(app: mieruka.App, client: TestClient) -> None:
    from mieruka.web.jobs import INLINE_TYPES

    assert not [t for t in INLINE_TYPES if "html" in t or "svg" in t or "xml" in t]  # could run script
    _, secret = app.auth.accounts.create_token("vic", "t")
    job, _ = app.engine.submit("with_artifacts", {})
    app.engine.wait(job.id, 30)
    names = [a.name for a in app.engine.get(job.id).artifacts]
    for name in names:
        response = client.get(
            f"/api/jobs/{job.id}/artifacts/{name}",
            params={"inline": True},
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert response.headers["x-content-type-options"] == "nosniff"
        if "html" in response.headers["content-type"]:
            assert response.headers["content-disposition"].startswith("attachment")
        assert "sandbox" in response.headers["content-security-policy"]


def test_admins_manage_users_and_everyones_tokens_in_the_ui(app: mieruka.App, client: TestClient) -> None:
    token, _ = app.auth.accounts.create_token("vic", "vic's script")
    csrf = login(client, "alice")
    page = client.get("/users")
    assert f'data-token-id="{token.id}"' in page.text and "vic&#39;s script" in page.text
    assert (
        client.post(f"/account/tokens/{token.id}/revoke", data={CSRF_FIELD: csrf}, follow_redirects=False).status_code
        == 303
    )
    assert app.auth.accounts.get_token(token.id).revoked_at is not None
    added = client.post("/users", data={CSRF_FIELD: csrf, "name": "nina", "role": "operator", "password": ""})
    assert added.status_code == 201 and "Added nina (operator)" in added.text
    link = client.post("/users/nina/link", data={CSRF_FIELD: csrf})
    assert "/login/link/mrk_" in link.text
    assert "nina is now viewer" in client.post("/users/nina/role", data={CSRF_FIELD: csrf, "role": "viewer"}).text
    last_admin = client.post("/users/alice/delete", data={CSRF_FIELD: csrf})
    assert last_admin.status_code == 409 and "last admin" in last_admin.text
    assert client.post("/users/nina/delete", data={CSRF_FIELD: csrf}).status_code == 200
    assert [u.name for u in app.auth.accounts.list_users()] == ["alice", "olga", "vic"]


def test_the_account_page_makes_and_revokes_tokens_and_changes_the_password(
    app: mieruka.App, client: TestClient
) -> None:
    csrf = login(client, "vic")
    made = client.post("/account/tokens", data={CSRF_FIELD: csrf, "name": "laptop", "expires_in_days": "30"})
    assert made.status_code == 201
    secret = re.search(r'data-field="token">(mrk_[^<]+)<', made.text)
    assert secret
    assert client.get("/api/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).json()["via"] == "token"
    bad = client.post("/account/tokens", data={CSRF_FIELD: csrf, "expires_in_days": "-3"})
    assert bad.status_code == 422 and "between 0 and 3650" in bad.text
    token = app.auth.accounts.list_tokens("vic")[0]
    client.post(f"/account/tokens/{token.id}/revoke", data={CSRF_FIELD: csrf})
    assert client.get("/api/me", headers={"Authorization": f"Bearer {secret.group(1)}"}).status_code == 401
    wrong = client.post("/account/password", data={CSRF_FIELD: csrf, "current": "nope", "password": "new password"})
    assert wrong.status_code == 422 and "current password is wrong" in wrong.text
    changed = client.post(
        "/account/password",
        data={CSRF_FIELD: csrf, "current": PASSWORD, "password": "new password"},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert client.get("/api/me").json()["name"] == "vic"  # this browser got a fresh session
    assert app.auth.accounts.authenticate("vic", "new password") is not None
    other = client.post(
        f"/account/tokens/{app.auth.accounts.create_token('olga')[0].id}/revoke",
        data={CSRF_FIELD: client.get("/api/me").json()["csrf_token"]},
    )
    assert other.status_code == 404  # not vic's token


def test_audit_page_days_are_days_of_the_shown_time_zone(app: mieruka.App, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    app.configure(timezone="Asia/Tokyo")
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("alice", "admin", PASSWORD)
        # 2026-03-01 23:30 in Tokyo is 14:30 UTC on the same day; 2026-03-02 00:30 Tokyo is 15:30 UTC on the 1st.
        app.auth.audit.record("x", "late.evening", "", "", at=datetime(2026, 3, 1, 14, 30, tzinfo=UTC))
        app.auth.audit.record("x", "past.midnight", "", "", at=datetime(2026, 3, 1, 15, 30, tzinfo=UTC))
        login(client, "alice")
        page = client.get("/audit?since=2026-03-02&until=2026-03-02").text
        assert "past.midnight" in page and "late.evening" not in page
        assert "2026-03-02 00:30:00" in page


def test_old_audit_entries_are_deleted(app: mieruka.App) -> None:
    from mieruka.auth.audit import AuditLog

    app.auth.db.migrate()
    log = AuditLog(app.auth.db, retention=86400)
    log.record("x", "ancient", at=utcnow() - timedelta(days=2))
    log.record("x", "recent")  # the first record prunes, then once an hour
    log._pruned = None
    log.record("x", "newest")
    assert [e["action"] for e in audit(app)] == ["newest", "recent"]


def test_the_openapi_document_declares_bearer_tokens(app: mieruka.App, client: TestClient) -> None:
    _, secret = app.auth.accounts.create_token("vic", "docs")
    doc = client.get("/openapi.json", headers={"Authorization": f"Bearer {secret}"}).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    submit = doc["paths"]["/api/tasks/add/jobs"]["post"]
    assert submit["security"] == [{"bearer": []}] and {"401", "403"} <= set(submit["responses"])


def test_pages_offer_only_what_the_reader_may_do(app: mieruka.App, client: TestClient) -> None:
    job, _ = app.engine.submit("sleep", {"seconds": 30}, owner="alice")
    login(client, "vic")
    assert 'id="read-only"' in client.get("/tasks/add").text
    assert f"/jobs/{job.id}/cancel" not in client.get(f"/jobs/{job.id}").text
    login(client, "olga")
    assert 'id="read-only"' not in client.get("/tasks/add").text
    assert f"/jobs/{job.id}/cancel" not in client.get(f"/jobs/{job.id}").text  # alice's job
    login(client, "alice")
    assert f"/jobs/{job.id}/cancel" in client.get(f"/jobs/{job.id}").text
    app.engine.cancel(job.id)


def test_a_login_lock_ends_by_itself(app: mieruka.App) -> None:
    import time

    app.configure(login_lockout=5.0)  # long enough to see it locked on a slow, loaded machine
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("vic", "viewer", PASSWORD)
        for _ in range(5):
            client.post("/login", data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": "x"})
        deadline = time.monotonic() + 30
        statuses: list[int] = []
        status = 429
        while status == 429 and time.monotonic() < deadline:
            status = client.post(
                "/login",
                data={CSRF_FIELD: login_form_token(client), "name": "vic", "password": PASSWORD},
                follow_redirects=False,
            ).status_code
            statuses.append(status)
            time.sleep(0.1)
        assert statuses[0] == 429 and status == 303  # locked at first, then in


def test_compute_pools_ask_presence_whether_anyone_is_online(app: mieruka.App, client: TestClient) -> None:
    from mieruka.store.sql import SqlJobStore
    from mieruka.wiring import build_pools

    assert isinstance(app.engine.store, SqlJobStore)
    manager = build_pools(app.runtime, app.engine.store)
    assert manager.anyone_online is not None and manager.anyone_online() is False
    login(client, "vic")
    client.get("/jobs")
    assert manager.anyone_online() is True
    app.anyone_online = lambda: False  # an app may plug in its own test
    try:
        assert manager.anyone_online() is False
    finally:
        app.anyone_online = None


def test_templates_have_no_inline_script_or_style() -> None:
    """The Content-Security-Policy forbids them: they would silently not work in the browser. JSON
    data blocks (`<script type="application/json">`) are not run, so the policy lets them be."""
    from mieruka.web.ui.pages import TEMPLATES

    problems = []
    for path in sorted(TEMPLATES.glob("*.html")):
        text = path.read_text()
        for pattern in (
            r"\sstyle=",
            r'<script(?![^>]*\ssrc=)(?![^>]*type="application/json")[^>]*>',
            r"<style",
            r"\son[a-z]+=",
            r"javascript:",
        ):
            problems += [f"{path.name}: {m.group(0)!r}" for m in re.finditer(pattern, text)]
    assert problems == []
