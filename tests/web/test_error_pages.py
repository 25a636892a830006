"""One error path: a browser gets a page with the site's header and a way back, the API keeps its
JSON shape `{"error": {"code", "message"}}` whatever it is asked, htmx keeps JSON."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import mieruka
from mieruka.web.csrf import CSRF_FIELD

PASSWORD = "a long enough password"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


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
def users(app: mieruka.App, client: TestClient) -> TestClient:
    for name, role in (("alice", "admin"), ("vic", "viewer")):
        app.auth.accounts.add_user(name, role, PASSWORD)
    app.asgi()  # the server sees the users within a second; a fresh app at once
    return client


def login(client: TestClient, name: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    done = client.post(
        "/login", data={CSRF_FIELD: token.group(1), "name": name, "password": PASSWORD}, follow_redirects=False
    )
    assert done.status_code == 303, done.text


def is_page(response: Any) -> bool:
    return bool(response.headers["content-type"].startswith("text/html"))


def assert_error_page(response: Any, status: int, *texts: str) -> None:
    assert response.status_code == status, response.text
    assert is_page(response), response.text
    text = response.text
    assert '<header class="container topbar">' in text, "the page has the site's header"
    assert 'id="error-home"' in text, "the page has a way back"
    assert "/static/mieruka.css?v=" in text
    for wanted in texts:
        assert wanted in text, (wanted, text)


@pytest.mark.parametrize(
    "path, texts",
    [
        ("/jobs/99999", ("no job with id 99999", "retention", 'href="/jobs"')),
        ("/tasks/nope", ("no task named", "All tasks")),
        ("/no/such/page", ("no such path",)),
        ("/jobs?status=bogus", ("unknown state",)),
        ("/jobs?limit=many", ("limit",)),
    ],
)
def test_a_browser_gets_a_page(client: TestClient, path: str, texts: tuple[str, ...]) -> None:
    response = client.get(path, headers=BROWSER)
    assert_error_page(response, 404 if "/9" in path or "no" in path else 422, *texts)
    assert response.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/99999",
        "/api/tasks/nope",
        "/api/nope",
        "/openapi.json/x",
        "/healthz/x",
        "/metrics/x",
        "/static/nope.js",
        "/api/jobs?status=bogus",
    ],
)
def test_the_api_keeps_its_json_whatever_it_is_asked(client: TestClient, path: str) -> None:
    for headers in (BROWSER, {}, {"Accept": "application/json"}):
        response = client.get(path, headers=headers)
        assert response.status_code in (404, 422), response.text
        assert set(response.json()) == {"error"}, response.text
        assert {"code", "message"} <= set(response.json()["error"])


def test_a_page_asked_for_json_or_by_htmx_answers_json(client: TestClient) -> None:
    for headers in ({}, {"Accept": "application/json"}, {**BROWSER, "HX-Request": "true"}):
        response = client.get("/jobs/99999", headers=headers)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"


def test_a_conflict_from_a_form_is_a_page(client: TestClient, app: mieruka.App) -> None:
    record, _ = app.engine.submit("add", {"a": 1, "b": 2})
    app.engine.wait(record.id, 30)
    response = client.post(f"/jobs/{record.id}/cancel", headers=BROWSER)
    assert_error_page(response, 409, "Not possible now")
    assert client.post(f"/api/jobs/{record.id}/cancel").json()["error"]["code"] == "conflict"


def test_a_denied_page_has_the_header_with_the_user(users: TestClient) -> None:
    login(users, "vic")
    response = users.get("/users", headers=BROWSER)
    assert_error_page(response, 403, "needs the admin role", 'id="me"', ">vic<", "Log in as someone else")
    assert users.get("/api/users", headers=BROWSER).json()["error"]["code"] == "forbidden"


def test_a_form_without_its_csrf_token_is_a_page(users: TestClient) -> None:
    login(users, "alice")
    response = users.post("/tasks/add", data={"a": "1", "b": "2"}, headers=BROWSER)
    assert_error_page(response, 403, "CSRF", "reload the page")


def test_a_browser_not_logged_in_goes_to_the_login_page(users: TestClient) -> None:
    response = users.get("/jobs/1", headers=BROWSER, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=%2Fjobs%2F1"
    api = users.get("/api/jobs/1", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.json()["error"]["code"] == "not_authenticated"


def test_the_back_link_goes_only_to_this_site(client: TestClient) -> None:
    here = client.get("/jobs/99999", headers={**BROWSER, "Referer": "http://127.0.0.1:8000/jobs?task=add"})
    assert 'id="error-back"' in here.text and 'href="http://127.0.0.1:8000/jobs?task=add"' in here.text
    away = client.get("/jobs/99999", headers={**BROWSER, "Referer": "https://elsewhere.example/x"})
    assert 'id="error-back"' not in away.text and "elsewhere" not in away.text


def test_the_login_page_says_when_the_server_has_no_users(client: TestClient, app: mieruka.App) -> None:
    page = client.get("/login", headers=BROWSER)
    assert 'id="no-users"' in page.text and "mieruka users add NAME --role admin" in page.text
    app.auth.accounts.add_user("alice", "admin", PASSWORD)
    assert 'id="no-users"' not in client.get("/login", headers=BROWSER).text


def test_behind_a_proxy_with_no_users_the_login_page_says_why(client: TestClient) -> None:
    proxied = {**BROWSER, "X-Forwarded-For": "203.0.113.9"}
    first = client.get("/", headers=proxied, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].startswith("/login")
    page = client.get(first.headers["location"], headers=proxied)
    assert page.status_code == 200 and "Nobody can log in yet" in page.text


def test_an_unexpected_error_is_a_page_too_and_never_stored(app: mieruka.App, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("a bug")

    with TestClient(app.asgi(), raise_server_exceptions=False) as client:
        monkeypatch.setattr(app.engine, "workers", broken)
        page = client.get("/workers", headers=BROWSER)
        assert_error_page(page, 500, "Something went wrong", "the server log has the details")
        assert page.headers["cache-control"] == "no-store" and "a bug" not in page.text
        api = client.get("/api/workers", headers=BROWSER)
        assert api.status_code == 500 and api.json()["error"]["code"] == "internal_error"
