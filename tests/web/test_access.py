"""The route matrix: every route of the app, taken from the app itself, is called as anonymous,
viewer, operator and admin, and must answer as EXPECTED says. A route missing from EXPECTED fails
the test, so a new route cannot ship without someone deciding who may call it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mieruka.core.access import Role
from mieruka.web.access import flat_routes
from mieruka.web.policy import rule_for

# (method, path template) -> who may call it: public, viewer, operator, owner (operator on its own
# job, admin on any), admin.
EXPECTED: dict[tuple[str, str], str] = {
    ("GET", "/openapi.json"): "viewer",
    ("GET", "/api/tasks"): "viewer",
    ("GET", "/api/tasks/{task}"): "viewer",
    ("POST", "/api/tasks/{task}/jobs"): "operator",
    ("POST", "/api/tasks/{task}/jobs/batch"): "operator",
    ("POST", "/api/tasks/{task}/run"): "operator",
    ("GET", "/api/jobs"): "viewer",
    ("GET", "/api/jobs/{job_id}"): "viewer",
    ("GET", "/api/jobs/{job_id}/logs"): "viewer",
    ("GET", "/api/jobs/{job_id}/artifacts"): "viewer",
    ("GET", "/api/jobs/{job_id}/artifacts/{name}"): "viewer",
    ("POST", "/api/jobs/{job_id}/cancel"): "owner",
    ("POST", "/api/jobs/{job_id}/retry"): "owner",
    ("DELETE", "/api/jobs/{job_id}"): "owner",
    ("GET", "/api/me"): "viewer",
    ("GET", "/api/users"): "admin",
    ("POST", "/api/users"): "admin",
    ("PATCH", "/api/users/{name}"): "admin",
    ("DELETE", "/api/users/{name}"): "admin",
    ("GET", "/api/tokens"): "viewer",
    ("POST", "/api/tokens"): "viewer",
    ("DELETE", "/api/tokens/{token_id}"): "viewer",
    ("GET", "/api/audit"): "admin",
    ("GET", "/api/presence"): "viewer",
    ("POST", "/api/presence/heartbeat"): "viewer",
    ("GET", "/api/events"): "viewer",
    ("GET", "/api/jobs/{job_id}/events"): "viewer",
    ("GET", "/metrics"): "viewer",
    ("GET", "/healthz"): "public",
    ("GET", "/api/workers"): "viewer",
    ("GET", "/api/queues"): "viewer",
    ("GET", "/docs"): "viewer",
    ("GET", "/redoc"): "viewer",
    ("GET", "/login"): "public",
    ("POST", "/login"): "public",
    ("POST", "/language"): "public",
    ("POST", "/logout"): "viewer",
    ("GET", "/login/link/{secret}"): "public",
    ("POST", "/login/link/{secret}"): "public",
    ("GET", "/login/oidc/{provider}"): "public",
    ("GET", "/login/oidc/{provider}/callback"): "public",
    ("GET", "/account"): "viewer",
    ("POST", "/account/tokens"): "viewer",
    ("POST", "/account/tokens/{token_id}/revoke"): "viewer",
    ("POST", "/account/password"): "viewer",
    ("GET", "/users"): "admin",
    ("POST", "/users"): "admin",
    ("POST", "/users/{name}/role"): "admin",
    ("POST", "/users/{name}/delete"): "admin",
    ("POST", "/users/{name}/link"): "admin",
    ("GET", "/audit"): "admin",
    ("GET", "/audit.csv"): "admin",
    ("GET", "/presence"): "viewer",
    ("GET", "/presence/badge"): "viewer",
    ("GET", "/"): "viewer",
    ("GET", "/tasks/{name}"): "viewer",
    ("POST", "/tasks/{name}"): "operator",
    ("GET", "/jobs/{job_id}"): "viewer",
    ("GET", "/jobs/{job_id}/panel"): "viewer",
    ("GET", "/jobs"): "viewer",
    ("GET", "/jobs/{job_id}/row"): "viewer",
    ("GET", "/jobs/{job_id}/steps"): "viewer",
    ("POST", "/jobs/cancel"): "operator",
    ("GET", "/workers"): "viewer",
    ("GET", "/workers/panel"): "viewer",
    ("POST", "/jobs/{job_id}/cancel"): "owner",
    ("POST", "/jobs/{job_id}/retry"): "owner",
    ("GET", "/static"): "public",
    # other features' routes (dashboards and sources, compute pools and monitoring, pipeline steps)
    ("GET", "/api/sources"): "viewer",
    ("GET", "/api/sources/{name}"): "viewer",
    ("GET", "/api/sources/{name}/data"): "viewer",
    ("POST", "/api/sources/{name}/refresh"): "operator",
    ("GET", "/api/dashboards"): "viewer",
    ("GET", "/api/dashboards/{name}"): "viewer",
    ("GET", "/api/dashboards/{name}/events"): "viewer",
    ("POST", "/api/dashboards/{name}/controls/{control}"): "operator",
    ("GET", "/api/streams"): "viewer",
    ("GET", "/api/streams/{name}"): "viewer",
    ("GET", "/api/streams/{name}/points"): "viewer",
    ("GET", "/api/streams/{name}/events"): "viewer",
    ("GET", "/api/live/events"): "viewer",
    ("GET", "/dashboards"): "viewer",
    ("GET", "/dashboards/{name}"): "viewer",
    ("GET", "/streams/{name}"): "viewer",
    ("GET", "/api/nodes"): "viewer",
    ("GET", "/api/stats"): "viewer",
    ("GET", "/api/pools"): "viewer",
    ("GET", "/api/pools/{name}"): "viewer",
    ("POST", "/api/pools/{name}/start"): "admin",
    ("POST", "/api/pools/{name}/stop"): "admin",
    ("POST", "/pools/{name}/{action}"): "admin",
    ("GET", "/api/jobs/{job_id}/steps"): "viewer",
    ("GET", "/api/jobs/{job_id}/steps/{name}"): "viewer",
    ("GET", "/api/jobs/{job_id}/steps/{name}/logs"): "viewer",
    ("GET", "/api/jobs/{job_id}/steps/{name}/artifacts"): "viewer",
    ("GET", "/api/jobs/{job_id}/steps/{name}/artifacts/{artifact}"): "viewer",
    # wall screens (tests/web/test_displays.py: the same routes read without a login)
    ("GET", "/api/displays"): "admin",
    ("POST", "/api/displays"): "admin",
    ("DELETE", "/api/displays/{display_id}"): "admin",
    ("GET", "/displays"): "admin",
    ("POST", "/displays"): "admin",
    ("POST", "/displays/{display_id}/revoke"): "admin",
    # notifications (tests/web/test_notifications.py: whose rules each may see and change)
    ("GET", "/api/notifications"): "viewer",
    ("POST", "/api/notifications/rules"): "viewer",
    ("DELETE", "/api/notifications/rules/{rule_id}"): "viewer",
    ("POST", "/api/notifications/rules/{rule_id}/test"): "viewer",
    ("GET", "/notifications"): "viewer",
    ("POST", "/notifications"): "viewer",
    ("POST", "/notifications/{rule_id}/test"): "viewer",
    ("POST", "/notifications/{rule_id}/delete"): "viewer",
    ("GET", "/display"): "public",
    ("POST", "/display"): "public",
}
# Endless event streams: checked on the rule, not by calling them.
STREAMS = {
    "/api/events",
    "/api/jobs/{job_id}/events",
    "/api/dashboards/{name}/events",
    "/api/streams/{name}/events",
    "/api/live/events",
}
ROLES = ("anonymous", "viewer", "operator", "admin")
DENIED = {"not_authenticated", "forbidden"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.jobs import app

    home: Path = tmp_path_factory.mktemp("access") / "home"
    app._settings = None
    app.configure(home=str(home), workers=1, poll_interval=0.2, prune_interval=3600)
    with TestClient(app.asgi()) as client:
        accounts = app.auth.accounts
        tokens = {}
        for role in ("viewer", "operator", "admin"):
            accounts.add_user(role, role, "password-" + role)
            tokens[role] = accounts.create_token(role, "matrix")[1]
        job, _ = app.engine.submit("add", {"a": 1}, owner="operator")
        app.engine.wait(job.id, 30)
        yield {"app": app, "client": client, "tokens": tokens, "job": job.id}
    app._settings = None


def routes(app: Any) -> list[tuple[str, str]]:
    found = []
    for route in flat_routes(app.asgi()):
        for method in sorted(route.methods or {"*"}):
            if method == "HEAD":
                continue
            found.append(("GET" if method == "*" else method, route.path or ""))
    return sorted(set(found))


def allowed(expected: str, who: str) -> bool:
    order = {"anonymous": 0, "viewer": 1, "operator": 2, "admin": 3}
    needed = {"public": 0, "viewer": 1, "operator": 2, "owner": 2, "admin": 3}[expected]
    return order[who] >= needed


def url_for(template: str, job: int) -> str:
    values = {
        "{task}": "add",
        "{job_id}": str(job),
        "{name}": "nobody",
        "{token_id}": "999999",
        "{display_id}": "999999",
        "{rule_id}": "999999",
        "{secret}": "not-a-link",
        "{action}": "start",
        "{artifact}": "missing.txt",
        "{control}": "nothing",
        "{provider}": "nobody",
    }
    if template.startswith("/tasks/"):
        values["{name}"] = "add"
    if template.startswith("/api/jobs/{job_id}/artifacts/"):
        values["{name}"] = "missing.txt"
    url = template
    for key, value in values.items():
        url = url.replace(key, value)
    return "/static/mieruka.css" if template == "/static" else url


def test_every_route_has_an_expectation(setup: dict[str, Any]) -> None:
    missing = [route for route in routes(setup["app"]) if route not in EXPECTED]
    assert not missing, (
        f"routes with no expected access in tests/web/test_access.py (and maybe web/policy.py): {missing}"
    )


@pytest.mark.parametrize("who", ROLES)
def test_route_matrix(setup: dict[str, Any], who: str) -> None:
    client: TestClient = setup["client"]
    headers = {} if who == "anonymous" else {"Authorization": f"Bearer {setup['tokens'][who]}"}
    problems = []
    for method, template in routes(setup["app"]):
        expected = EXPECTED.get((method, template))
        if expected is None:
            continue  # reported by test_every_route_has_an_expectation
        should = allowed(expected, who)
        if template in STREAMS:
            rule = rule_for(method, template)
            got = rule.role is None or (who != "anonymous" and Role(who).at_least(rule.role))
            if got != should:
                problems.append(f"{method} {template}: rule says {got}, expected {should}")
            if who != "anonymous":
                continue
        response = client.request(method, url_for(template, setup["job"]), headers=headers, follow_redirects=False)
        if response.status_code >= 500:
            problems.append(f"{method} {template}: {response.status_code}")
            continue
        code = ""
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json()
            error = body.get("error") if isinstance(body, dict) else None
            code = error.get("code", "") if isinstance(error, dict) else ""
        denied = code in DENIED
        if denied == should:
            problems.append(
                f"{method} {template} as {who}: {response.status_code} {code or ''}, "
                f"expected {'allowed' if should else 'denied'}"
            )
        elif denied:
            assert response.status_code == (401 if who == "anonymous" else 403), (method, template)
    assert not problems, "\n".join(problems)


def test_an_operator_changes_only_its_own_jobs(setup: dict[str, Any]) -> None:
    app, client, tokens = setup["app"], setup["client"], setup["tokens"]
    theirs, _ = app.engine.submit("sleep", {"seconds": 30}, owner="admin")
    mine, _ = app.engine.submit("sleep", {"seconds": 30}, owner="operator")
    as_operator = {"Authorization": f"Bearer {tokens['operator']}"}
    refused = client.post(f"/api/jobs/{theirs.id}/cancel", headers=as_operator)
    assert refused.status_code == 403 and "its own jobs" in refused.json()["error"]["message"]
    assert client.get(f"/api/jobs/{theirs.id}", headers=as_operator).status_code == 200  # may see it
    assert client.post(f"/api/jobs/{mine.id}/cancel", headers=as_operator).status_code == 200
    assert (
        client.post(f"/api/jobs/{theirs.id}/cancel", headers={"Authorization": f"Bearer {tokens['admin']}"}).status_code
        == 200
    )


def test_jobs_belong_to_their_submitter(setup: dict[str, Any]) -> None:
    client, tokens = setup["client"], setup["tokens"]
    job = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Authorization": f"Bearer {tokens['operator']}"})
    assert job.status_code == 202 and job.json()["owner"] == "operator"


def test_a_task_allow_list(setup: dict[str, Any]) -> None:
    app, client, tokens = setup["app"], setup["client"], setup["tokens"]
    task = app.tasks.get("add")
    task.allow = ("admin",)
    try:
        as_operator = {"Authorization": f"Bearer {tokens['operator']}"}
        refused = client.post("/api/tasks/add/jobs", json={"a": 1}, headers=as_operator)
        assert refused.status_code == 403 and "may not use task 'add'" in refused.json()["error"]["message"]
        assert "add" not in [t["name"] for t in client.get("/api/tasks", headers=as_operator).json()]
        assert client.get("/tasks/add", headers=as_operator).status_code == 403
        task.allow = ("viewer", "nobody")  # a role admits that role and the ones above
        assert client.post("/api/tasks/add/jobs", json={"a": 1}, headers=as_operator).status_code == 202
        task.allow = ("admin", "operator")
        as_viewer = {"Authorization": f"Bearer {tokens['viewer']}"}
        assert "add" not in [t["name"] for t in client.get("/api/tasks", headers=as_viewer).json()]
    finally:
        task.allow = None


def test_a_dashboard_allow_list(tmp_path: Path) -> None:
    """A dashboard declared with allow= is listed, shown and served only to the names and roles on it;
    so is a source that only such dashboards show."""
    from tests.allow_app import app

    app.configure(home=str(tmp_path / "home"))
    with TestClient(app.asgi()) as client:
        accounts = app.auth.accounts
        for name, role in (("olga", "viewer"), ("vic", "operator"), ("alice", "admin")):
            accounts.add_user(name, role, "password-" + name)
        tokens = {name: accounts.create_token(name, "t")[1] for name in ("olga", "vic", "alice")}

        def get(path: str, who: str) -> Any:
            return client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})

        for who, sees in (("olga", True), ("vic", False), ("alice", True)):
            listed = [b["name"] for b in get("/api/dashboards", who).json()]
            assert ("wards" in listed) is sees and "open" in listed, who
            assert get("/api/dashboards/wards", who).status_code == (200 if sees else 403), who
            assert get("/dashboards/wards", who).status_code == (200 if sees else 403), who
            assert get("/api/dashboards/open", who).status_code == 200, who
            for page in ("/dashboards", "/"):
                assert ('/dashboards/wards"' in get(page, who).text) is sees, (who, page)
            assert [s["name"] for s in get("/api/sources", who).json()] == (["wards", "beds"] if sees else ["wards"])
            assert get("/api/sources/beds/data", who).status_code == (200 if sees else 403), who
            assert get("/api/sources/wards/data", who).status_code == 200, who
