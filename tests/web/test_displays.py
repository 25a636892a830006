"""Wall screens in process: a public dashboard and display links, read without a login, against every
route of the app (tests/wall_app.py); the display links' API, pages, audit and revocation."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mieruka.core.dashboards import Chart, Dashboard
from mieruka.errors import ConfigError
from mieruka.web.access import Target, check, flat_routes
from mieruka.web.displays import GONE, display_topics
from mieruka.web.identity import Denied
from mieruka.web.policy import rule_for
from mieruka.web.viewing import DISPLAY_COOKIE, Viewing, viewing_for
from tests.wall_app import JOB, LOBBY, STAFF, WARDS
from tests.web.test_access import DENIED, EXPECTED, STREAMS

# The routes a reader without a login may call, for the dashboards (or their sources, streams) it is shown.
WALL = {
    ("GET", "/dashboards/{name}"),
    ("GET", "/api/dashboards/{name}"),
    ("GET", "/api/dashboards/{name}/events"),
    ("GET", "/api/sources/{name}/data"),
    ("GET", "/api/streams/{name}/points"),
}
NAMES = {  # what {name} is tried with, by the family of the route
    "dashboards": ("lobby", "wards", "staff"),
    "sources": ("lobby", "beds", "rota"),
    "streams": ("pulse", "vitals", "load", "doors"),
}
SHOWN = {  # who -> the names it is shown
    "anonymous": {"lobby", "pulse"},
    "display": {"lobby", "pulse", "wards", "beds", "vitals"},
}
NOT_SHOWN = {"anonymous": (WARDS, STAFF, JOB), "display": (STAFF, JOB)}


@pytest.fixture(scope="module")
def wall(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.wall_app import app

    home: Path = tmp_path_factory.mktemp("wall") / "home"
    app._settings = None
    app.configure(home=str(home))
    with TestClient(app.asgi()) as client:
        accounts = app.auth.accounts
        tokens = {}
        for name, role in (("val", "viewer"), ("otto", "operator"), ("olga", "operator"), ("ada", "admin")):
            accounts.add_user(name, role, "password-" + name)
            tokens[name] = accounts.create_token(name, "wall")[1]
        job, _ = app.engine.submit("add", {"a": 1}, owner="otto")
        app.engine.wait(job.id, 30)
        made = client.post(
            "/api/displays",
            json={"dashboard": "wards", "label": "Ward 3 corridor"},
            headers={"Authorization": f"Bearer {tokens['ada']}"},
        )
        assert made.status_code == 201, made.text
        secret = made.json()["url"].split("#", 1)[1]
        for source in ("lobby", "beds", "rota"):
            app.live.refresher.refresh(source, wait=30)
        yield {"app": app, "client": client, "tokens": tokens, "job": job.id, "secret": secret}
    app._settings = None


def bearer(wall: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {wall['tokens'][who]}"}


def as_reader(wall: dict[str, Any], who: str) -> dict[str, str]:
    return {"Cookie": f"{DISPLAY_COOKIE}={wall['secret']}"} if who == "display" else {}


def urls(template: str, job: int) -> list[tuple[str, str]]:
    """(url, the name it tries) for each value of the route's {name}."""
    family = template.split("/")[2] if template.startswith("/api/") else template.split("/")[1]
    names = NAMES.get(family, ("nobody",)) if "{name}" in template else ("",)
    values = {
        "{task}": "add",
        "{job_id}": str(job),
        "{token_id}": "999999",
        "{display_id}": "1",
        "{secret}": "not-a-link",
        "{action}": "start",
        "{artifact}": "missing.txt",
        "{control}": "nothing",
        "{rule_id}": "1",
        "{provider}": "nobody",
    }
    out = []
    for name in names:
        url = template.replace("{name}", "add" if template.startswith("/tasks/") else name)
        for key, value in values.items():
            url = url.replace(key, value)
        assert "{" not in url, f"{template}: give its parameter a value above"
        out.append(("/static/mieruka.css" if template == "/static" else url, name))
    return out


def error_code(answer: Any) -> str:
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return ""
    error = answer.json().get("error") if isinstance(answer.json(), dict) else None
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def test_a_public_dashboard_takes_no_allow_list() -> None:
    with pytest.raises(ConfigError, match="public"):
        Dashboard("x", "X", (Chart("table", "s"),), allow=("admin",), public=True)


@pytest.mark.parametrize("who", ["anonymous", "display"])
def test_every_route_without_a_login(wall: dict[str, Any], who: str) -> None:
    """A reader without a login (anonymous: the public dashboard; a display link: its dashboard too)
    gets the shown dashboards' pages and data, and a refusal from every other route."""
    app, client = wall["app"], wall["client"]
    client.cookies.clear()
    seen = viewing_for(app, wall["secret"] if who == "display" else None)
    assert seen.dashboards == ({"lobby", "wards"} if who == "display" else {"lobby"})
    problems = []
    for route in flat_routes(app.asgi()):
        for method in sorted(route.methods or {"GET"}):
            template = route.path or ""
            if method == "HEAD":
                continue
            # A route with no expectation yet is reported by test_access.py; here it must refuse.
            expected = EXPECTED.get((method, template), "viewer")
            for url, name in urls(template, wall["job"]):
                should = expected == "public" or ((method, template) in WALL and name in SHOWN[who])
                if template in STREAMS:
                    rule = rule_for(method, template)
                    try:
                        check(app, method, rule, None, Target(template, {"name": name}), frozenset(), seen)
                        got = True
                    except Denied:
                        got = False
                    wanted = should or template == "/api/live/events"  # it checks each topic (below)
                    if got != wanted:
                        problems.append(f"{who} {method} {url}: the rule says {got}, expected {wanted}")
                    continue
                answer = client.request(method, url, headers=as_reader(wall, who), follow_redirects=False)
                if answer.status_code >= 500:
                    problems.append(f"{who} {method} {url}: {answer.status_code}")
                denied = answer.status_code in (401, 403) and error_code(answer) in DENIED
                if denied == should:
                    verdict = "allowed" if should else "401"
                    problems.append(f"{who} {method} {url}: {answer.status_code}, expected {verdict}")
                for marker in NOT_SHOWN[who]:
                    if marker in answer.text:
                        problems.append(f"{who} {method} {url}: shows {marker!r}")
    assert not problems, "\n".join(problems)


def test_the_shared_stream_carries_only_the_shown_dashboards(wall: dict[str, Any]) -> None:
    app = wall["app"]
    topics = [
        "jobs",
        "jobs:add",
        f"job:{wall['job']}",
        "dashboard:lobby",
        "dashboard:wards",
        "dashboard:staff",
        "dashboard:nothing",
        "stream:pulse",
        "stream:vitals",
        "stream:load",
    ]
    anonymous = display_topics(app, viewing_for(app, None), topics, True)
    assert anonymous.accepted == ("dashboard:lobby", "stream:pulse")
    assert not anonymous.has_jobs and anonymous.streams == ("pulse",)
    # The refusals say the same of what exists and what does not.
    assert {why.split(":")[0] for why in anonymous.refused.values()} == {"no such topic"}
    assert set(anonymous.refused) == set(topics) - {"dashboard:lobby", "stream:pulse"}
    display = display_topics(app, viewing_for(app, wall["secret"]), topics, True)
    assert display.accepted == ("dashboard:lobby", "dashboard:wards", "stream:pulse", "stream:vitals")
    assert display.dashboards == {"lobby": ["pulse"], "wards": ["vitals"]}


def test_the_public_page_is_read_only_and_shows_no_way_in(wall: dict[str, Any]) -> None:
    client = wall["client"]
    client.cookies.clear()
    page = client.get("/dashboards/lobby")
    assert page.status_code == 200 and LOBBY in page.text
    for absent in ('href="/"', 'href="/jobs"', 'href="/dashboards"', "/logout", "<form", 'id="me"', "presence"):
        assert absent not in page.text, absent
    assert '<meta name="csrf-token" content="">' in page.text
    # Its controls are for signed-in operators: no sign of them (nor of the stream only a control
    # reads), on the page or in the JSON.
    board = client.get("/api/dashboards/lobby")
    for text in (page.text, board.text):
        for absent in ("porter", "doors", "head-count", "control:", '"state"'):
            assert absent not in text, absent
    assert board.json()["controls"] == [] and board.json()["streams"] == ["pulse"]
    assert client.get("/api/streams/doors/points").status_code == 401
    assert "front-doors" in client.get("/api/dashboards/lobby", headers=bearer(wall, "val")).text
    assert 'class="kiosk"' not in page.text
    kiosk = client.get("/dashboards/lobby?kiosk=1")
    assert 'class="kiosk"' in kiosk.text and "topbar" not in kiosk.text and "kiosk-clock" in kiosk.text
    # Signed in, the same page has its navigation; ?kiosk=1 takes it away.
    signed_in = client.get("/dashboards/lobby", headers=bearer(wall, "val"))
    assert 'href="/jobs"' in signed_in.text and 'class="kiosk"' not in signed_in.text
    assert "Call the porter" in signed_in.text  # shown, disabled for a viewer
    assert "Call the porter" not in client.get("/dashboards/lobby?kiosk=1", headers=bearer(wall, "otto")).text
    kiosk = client.get("/dashboards/staff?kiosk=1", headers=bearer(wall, "val"))
    assert kiosk.status_code == 200 and STAFF in kiosk.text
    assert 'class="kiosk"' in kiosk.text and 'href="/jobs"' not in kiosk.text


def test_display_links_api(wall: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    client = wall["client"]
    client.cookies.clear()
    caplog.set_level(logging.DEBUG)
    for who in ("val", "otto"):
        refused = client.post("/api/displays", json={"dashboard": "lobby", "label": "x"}, headers=bearer(wall, who))
        assert refused.status_code == 403, refused.text
        assert client.get("/api/displays", headers=bearer(wall, who)).status_code == 403
    assert client.post("/api/displays", json={"dashboard": "lobby", "label": "x"}).status_code == 401
    admin = bearer(wall, "ada")
    for body, field in (
        ({"dashboard": "nothing", "label": "x"}, "dashboard"),
        ({"dashboard": "lobby", "label": ""}, "label"),
        ({"dashboard": "lobby", "label": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"dashboard": "lobby", "label": "x", "valid_for": 60, "expires_at": "2999-01-01T00:00:00Z"}, "valid_for"),
        ({"dashboard": "lobby", "label": "x", "valid_for": -1}, "valid_for"),
    ):
        bad = client.post("/api/displays", json=body, headers=admin)
        assert bad.status_code == 422, (body, bad.text)
        assert field in bad.text, (body, bad.text)
    made = client.post(
        "/api/displays", json={"dashboard": "staff", "label": "Staff room", "valid_for": 3600}, headers=admin
    )
    assert made.status_code == 201, made.text
    link = made.json()
    secret = link["url"].split("#", 1)[1]
    assert link["url"].endswith("/display#" + secret) and secret.startswith("mrd_")
    assert link["active"] and link["expires_at"]
    listed = client.get("/api/displays", headers=admin)
    assert link["id"] in [d["id"] for d in listed.json()] and secret not in listed.text

    opened = client.post("/display", json={"secret": secret})
    assert opened.status_code == 200 and opened.json()["url"] == "/dashboards/staff?kiosk=1"
    cookie = opened.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=" in cookie
    page = client.get("/dashboards/staff")  # the client keeps the cookie, as a browser does
    assert page.status_code == 200 and STAFF in page.text and 'class="kiosk"' in page.text
    assert 'data-display="Staff room"' in page.text and "<form" not in page.text
    assert client.get("/dashboards/wards").status_code == 401  # another link's dashboard
    assert client.get("/api/sources/rota/data").status_code == 200
    assert client.get("/api/sources").status_code == 401 and client.get("/api/jobs").status_code == 401

    revoked = client.delete(f"/api/displays/{link['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] and not revoked.json()["active"]
    assert client.get("/dashboards/staff", headers={"Accept": "application/json"}).status_code == 401
    # A display reloading its page lands where it is told why, not on the login form.
    reloaded = client.get("/dashboards/staff?kiosk=1", headers={"Accept": "text/html"}, follow_redirects=False)
    assert reloaded.status_code == 303 and reloaded.headers["location"] == "/display"
    browsing = client.get("/dashboards/staff", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browsing.headers["location"].startswith("/login?next=")
    again = client.post("/display", json={"secret": secret})
    wrong = client.post("/display", json={"secret": secret[:-2] + "xx"})
    assert again.status_code == wrong.status_code == 404
    assert again.json()["error"]["message"] == wrong.json()["error"]["message"] == GONE
    assert client.post("/display", json={}).status_code == 404  # the revoked cookie opens nothing either
    assert client.post("/display", data={"secret": secret}).status_code == 422  # a form post: never
    assert client.delete("/api/displays/999999", headers=admin).status_code == 404

    entries = client.get("/api/audit", params={"action": "display."}, headers=admin).json()["entries"]
    mine = [(e["action"], e["actor"]) for e in entries if e["target"] == f"display:{link['id']}"]
    assert mine == [("display.revoke", "ada"), ("display.create", "ada")]
    everything = client.get("/api/audit", params={"limit": 1000}, headers=admin).text
    page, csv = client.get("/audit", headers=admin).text, client.get("/audit.csv", headers=admin).text
    assert "display.create" in page and "display.revoke" in csv and "Staff room" in csv
    for text in (everything, page, csv, caplog.text, client.get("/metrics", headers=admin).text):
        assert secret not in text and secret[4:20] not in text
    client.cookies.clear()


def test_an_expired_link_stops(wall: dict[str, Any]) -> None:
    client = wall["client"]
    client.cookies.clear()
    made = client.post(
        "/api/displays", json={"dashboard": "wards", "label": "short", "valid_for": 1.5}, headers=bearer(wall, "ada")
    )
    secret = made.json()["url"].split("#", 1)[1]
    assert client.post("/display", json={"secret": secret}).status_code == 200
    assert client.get("/api/dashboards/wards").status_code == 200
    cookie = {"Cookie": f"{DISPLAY_COOKIE}={secret}"}  # as a display that kept it past its max-age
    client.cookies.clear()
    deadline = time.monotonic() + 30
    while client.get("/api/dashboards/wards", headers=cookie).status_code == 200:
        assert time.monotonic() < deadline, "the expired link still works"
        time.sleep(0.2)
    assert client.get("/api/dashboards/wards", headers=cookie).status_code == 401
    assert client.post("/display", json={"secret": secret}).json()["error"]["message"] == GONE


def test_display_pages(wall: dict[str, Any]) -> None:
    client = wall["client"]
    client.cookies.clear()
    admin = bearer(wall, "ada")
    assert client.get("/displays", headers=bearer(wall, "olga")).status_code == 403
    made = client.post("/displays", data={"dashboard": "lobby", "label": "Front desk", "valid_for": "7"}, headers=admin)
    assert made.status_code == 201 and "/display#mrd_" in made.text and "Front desk" in made.text
    link_id = max(d["id"] for d in client.get("/api/displays", headers=admin).json())
    page = client.get("/displays", headers=admin)
    assert "Front desk" in page.text and "/display#" not in page.text  # the URL is shown once
    assert f'action="/displays/{link_id}/revoke"' in page.text
    bad = client.post("/displays", data={"dashboard": "lobby", "label": "x", "valid_for": "9"}, headers=admin)
    assert bad.status_code == 422 and "valid for" in bad.text
    unknown = client.post("/displays", data={"dashboard": "nothing", "label": "x"}, headers=admin)
    assert unknown.status_code == 422 and "no dashboard named" in unknown.text
    gone = client.post(f"/displays/{link_id}/revoke", headers=admin)
    assert gone.status_code == 200 and f"Revoked display link {link_id}" in gone.text
    assert f'action="/displays/{link_id}/revoke"' not in gone.text
    landing = client.get("/display")
    assert landing.status_code == 200 and 'id="display-landing"' in landing.text and "topbar" not in landing.text
    assert 'href="/displays"' in client.get("/", headers=admin).text  # in the admins' navigation
    index = client.get("/dashboards", headers=bearer(wall, "val")).text
    assert 'href="/dashboards/staff?kiosk=1"' in index and 'title="shown without a login">public<' in index
    assert 'href="/displays"' not in client.get("/", headers=bearer(wall, "otto")).text


def test_viewing_shows_only_its_dashboards(wall: dict[str, Any]) -> None:
    app = wall["app"]
    seen = Viewing(frozenset({"lobby"}))
    assert seen.shows(app, "dashboard", "lobby") and not seen.shows(app, "dashboard", "wards")
    assert seen.shows(app, "source", "lobby") and not seen.shows(app, "source", "beds")
    assert seen.shows(app, "stream", "pulse") and not seen.shows(app, "stream", "vitals")
    assert not seen.shows(app, "task", "add") and not Viewing(frozenset()).shows(app, "topics", "")


def test_a_display_is_nobody_in_presence(wall: dict[str, Any]) -> None:
    """Readers without a login are not users: they never show as online (nor keep a pool awake)."""
    app, client = wall["app"], wall["client"]
    client.cookies.clear()
    before = {seen.user for seen in app.auth.presence.online()}
    for headers in ({}, {"Cookie": f"{DISPLAY_COOKIE}={wall['secret']}"}):
        for url in ("/dashboards/lobby", "/api/dashboards/lobby", "/dashboards/wards", "/api/sources/beds/data"):
            client.get(url, headers=headers)
    assert {seen.user for seen in app.auth.presence.online()} == before
    assert client.get("/api/dashboards/wards", headers={"Cookie": f"{DISPLAY_COOKIE}={wall['secret']}"}).is_success
