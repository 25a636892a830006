"""A browser's tabs share one event stream (a SharedWorker holds it; /api/live/events carries the
union of their topics): twenty open tabs all stay live though browsers open about six connections
per host, each tab gets the events of its own page, and what a viewer may not see stays out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, running_server
from tests.test_metrics import samples

TABS = 10


def open_streams(server: ServerProcess) -> float:
    return samples(httpx.get(f"{server.url}/metrics").text)[("mieruka_sse_clients", ())]


def progress_of(tab: Any) -> str | None:
    return tab.locator('#job-panel [data-field="message"]').text_content()


@pytest.fixture
def jobs_server(tmp_path: Path) -> Any:
    with running_server(tmp_path / "home", "--workers", "2") as server:
        yield server


def test_ten_tabs_stay_live_on_one_stream(browser: Any, jobs_server: ServerProcess, tmp_path: Path) -> None:
    server = jobs_server
    marker = tmp_path / "done"
    first = httpx.post(f"{server.url}/api/tasks/progress_until/jobs", json={"marker": str(marker)}).json()["id"]
    second = httpx.post(f"{server.url}/api/tasks/progress_until/jobs", json={"marker": str(marker)}).json()["id"]
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    outside: list[str] = []
    context.route("**/*", lambda route: (outside.append(route.request.url), route.abort())
                  if not route.request.url.startswith(server.url) else route.continue_())
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
