"""A browser's tabs share one event stream (a SharedWorker holds it; /api/live/events carries the
union of their topics): twenty open tabs all stay live though browsers open about six connections
per host, each tab gets the events of its own page, and what a viewer may not see stays out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import ServerProcess, running_server
from tests.servers.test_metrics import samples

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

TABS = 10
# A stream whose client went away is noticed when it next writes: a heartbeat a second, not every 15 s.
HEARTBEAT = {"MIERUKA_HEARTBEAT_INTERVAL": "1"}


def open_streams(server: ServerProcess) -> float:
    return samples(httpx.get(f"{server.url}/metrics").text)[("mieruka_sse_clients", ())]


def progress_of(tab: Page) -> str | None:
    return tab.locator('#job-panel [data-field="message"]').text_content()


@pytest.fixture
def jobs_server(tmp_path: Path) -> Any:
    with running_server(tmp_path / "home", "--workers", "2", env=HEARTBEAT) as server:
        yield server


def test_ten_tabs_stay_live_on_one_stream(browser: Browser, jobs_server: ServerProcess, tmp_path: Path) -> None:
    server = jobs_server
    marker = tmp_path / "done"
    first = httpx.post(f"{server.url}/api/tasks/progress_until/jobs", json={"marker": str(marker)}).json()["id"]
    second = httpx.post(f"{server.url}/api/tasks/progress_until/jobs", json={"marker": str(marker)}).json()["id"]
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    outside: list[str] = []

    def guard(route: Route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    try:
        # Seven tabs on one job, two on another, one on the jobs monitor.
        pages = [f"/jobs/{first}"] * 7 + [f"/jobs/{second}"] * 2 + ["/jobs"]
        tabs = []
        for path in pages:
            tab = context.new_page()
            tab.goto(server.url + path)
            tabs.append(tab)
        # Every job tab sees its job's progress move (a new "tick N" message arrives).
        for tab in tabs[:9]:
            before = progress_of(tab)
            deadline = time.monotonic() + 30
            while progress_of(tab) == before and time.monotonic() < deadline:
                time.sleep(0.1)
            assert progress_of(tab) != before, f"{tab.url} got no live progress"
            assert "polling" not in (tab.locator("#live-note").text_content() or "")
        streams = open_streams(server)
        assert streams <= 2, f"{streams} streams open for one browser"
        marker.write_text("go")
        for tab in tabs[:9]:
            tab.locator('#job-panel [data-field="status"]').filter(has_text="succeeded").wait_for(timeout=30_000)
        for job in (first, second):
            row = tabs[9].locator(f'tr[data-job-id="{job}"] [data-field="status"]')
            row.filter(has_text="succeeded").wait_for(timeout=30_000)
        # The tabs are gone: so is their stream.
        for tab in tabs:
            tab.close()
        deadline = time.monotonic() + 20
        while open_streams(server) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert open_streams(server) == 0
    finally:
        context.close()
    assert outside == []


def read_events(response: httpx.Response, until: Any, seconds: float = 20) -> list[dict[str, Any]]:
    """SSE events ({"event", "id", "data"}) until `until(events)` is true or `seconds` passed."""
    from tests.servers.test_dashboards import sse_events

    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    for event in sse_events(response):
        events.append(event)
        if until(events) or time.monotonic() > deadline:
            break
    return events


def test_the_shared_stream_resumes_every_position(jobs_server: ServerProcess) -> None:
    server = jobs_server
    url = f"{server.url}/api/live/events"
    job = httpx.post(f"{server.url}/api/tasks/noisy/jobs", json={"lines": 40}).json()["id"]
    httpx.get(f"{server.url}/api/jobs/{job}", params={"wait": 30}, timeout=60)
    with httpx.stream(
        "GET", url, params={"topic": ["jobs", f"job:{job}"], "last_event_id": "@=0"}, timeout=30
    ) as response:
        ready = read_events(response, lambda e: True)[0]
    assert ready["event"] == "ready" and ready["data"]["topics"] == ["jobs", f"job:{job}"]
    # An id this server never gave out (of an earlier run): resync, then what this run published (the
    # job's events in order), then its snapshot.
    with httpx.stream("GET", url, params={"topic": f"job:{job}", "last_event_id": "@=1"}, timeout=30) as response:
        events = read_events(response, lambda e: e[-1]["event"] == "snapshot")
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["ready", "resync"] and kinds[-1] == "snapshot" and "log" in kinds and "state" in kinds, kinds
    job_events = [e for e in events if e["event"] not in ("ready", "resync", "snapshot")]
    middle = job_events[len(job_events) // 2]
    # A reconnect sends the id it saw last (Last-Event-ID): it gets what came after, once.
    with httpx.stream(
        "GET", url, params={"topic": f"job:{job}"}, headers={"Last-Event-ID": middle["id"]}, timeout=30
    ) as response:
        again = read_events(response, lambda e: e[-1]["event"] == "snapshot")
    replayed = [e["data"]["id"] for e in again if e["event"] not in ("ready", "snapshot")]
    expected = [e["data"]["id"] for e in job_events if e["data"]["id"] > middle["data"]["id"]]
    assert replayed == expected


def test_the_shared_stream_refuses_what_a_viewer_may_not_see(tmp_path: Path) -> None:
    from tests.guarded_app import BOARD_SECRET, JOB_SECRET, SECRET_STREAM, SECRET_TASK, app

    home = tmp_path / "home"
    app._settings = None
    app.configure(home=str(home))
    app.auth.db.migrate()
    for name, role in (("vic", "viewer"), ("olga", "operator")):
        app.auth.accounts.add_user(name, role, "password-" + name)
    tokens = {name: app.auth.accounts.create_token(name, "t")[1] for name in ("vic", "olga")}
    app._settings = None

    def auth(who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[who]}"}

    with running_server(home, app_ref="tests/guarded_app.py:app", env=HEARTBEAT) as server:
        secret_job = httpx.post(f"{server.url}/api/tasks/{SECRET_TASK}/jobs", json={}, headers=auth("olga")).json()
        assert "id" in secret_job, secret_job
        httpx.get(f"{server.url}/api/jobs/{secret_job['id']}", params={"wait": 60}, timeout=90, headers=auth("olga"))
        topics = [
            "jobs",
            f"jobs:{SECRET_TASK}",
            f"job:{secret_job['id']}",
            "dashboard:wards",
            f"stream:{SECRET_STREAM}",
            "dashboard:open",
            "job:+1",
            "nonsense",
        ]
        seen = {}
        for who in ("vic", "olga"):
            with httpx.stream(
                "GET",
                f"{server.url}/api/live/events",
                headers=auth(who),
                timeout=30,
                params={"topic": topics, "last_event_id": "@=1"},
            ) as response:
                assert response.status_code == 200
                start = time.monotonic()
                text = ""
                for chunk in response.iter_text():
                    text += chunk
                    # Vic's for 2.5 s (what is there to leak comes at once; a quiet stream sends a
                    # heartbeat a second); Olga's until the secrets came, so the check is not vacuous.
                    if time.monotonic() - start > (2.5 if who == "vic" else 30):
                        break
                    if who == "olga" and all(s in text for s in (JOB_SECRET, BOARD_SECRET, '"pulse"')):
                        break
            seen[who] = text
        vic = seen["vic"]
        ready = json.loads(vic.split("event: ready\ndata: ", 1)[1].split("\n", 1)[0])
        assert ready["topics"] == ["jobs", "dashboard:open"]
        assert set(ready["refused"]) == set(topics) - {"jobs", "dashboard:open"}
        for secret in (JOB_SECRET, BOARD_SECRET, '"pulse"', f'"task":"{SECRET_TASK}"'):
            assert secret not in vic, secret
        assert JOB_SECRET in seen["olga"] and BOARD_SECRET in seen["olga"] and '"pulse"' in seen["olga"]
