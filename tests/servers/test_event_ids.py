"""Event streams survive a restart of the server (issue 18 item 2): a real server is killed with
SIGKILL and started again on the same port and home; clients that reconnect with the Last-Event-ID
of the killed server get a `resync` and then the next jobs' events, and the jobs monitor in a real
browser shows a job submitted after the restart without a reload."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import ServerProcess, shared_server
from tests.servers.test_metrics import samples

if TYPE_CHECKING:
    from playwright.sync_api import Browser

WAIT = 30.0


@pytest.fixture(scope="module")
def module_server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("event-ids") / "home"
    with shared_server(ServerProcess("tests/jobs.py:app", home, "--workers", "2"), request) as proc:
        yield proc


@pytest.fixture
def restartable(module_server: ServerProcess) -> ServerProcess:
    """The module's server, which each test kills and starts again (up, whatever the test before did)."""
    if module_server.process.poll() is not None:
        module_server.restart()
    return module_server


class Listener:
    """An SSE client in a thread, like a browser's EventSource: it keeps the last id it saw."""

    def __init__(self, url: str, params: dict[str, Any] | None = None, last_id: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.last_id = last_id
        self._changed = threading.Condition()
        self._stop = threading.Event()
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self._thread = threading.Thread(target=self._read, args=(url, params or {}, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, params: dict[str, Any], headers: dict[str, str]) -> None:
        event: dict[str, Any] = {}
        try:
            with httpx.stream("GET", url, params=params, headers=headers, timeout=WAIT) as response:
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line:
                        if "data" in event:
                            event["data"] = json.loads(event["data"])
                            with self._changed:
                                if "id" in event:
                                    self.last_id = event["id"]
                                self.events.append(event)
                                self._changed.notify_all()
                        event = {}
                    elif not line.startswith(":"):
                        key, _, value = line.partition(":")
                        event[key] = value[1:] if value.startswith(" ") else value
        except httpx.HTTPError:
            pass  # the server was killed

    def wait_for(self, done: Any, what: str) -> list[dict[str, Any]]:
        with self._changed:
            if not self._changed.wait_for(lambda: done(self.events), WAIT):
                raise AssertionError(f"no {what} within {WAIT}s; got {[e['event'] for e in self.events]}")
            return list(self.events)

    def close(self) -> None:
        self._stop.set()


def ended(job_ids: set[int]) -> Any:
    def check(events: list[dict[str, Any]]) -> bool:
        done = {e["data"]["job_id"] for e in events if e["event"] == "state" and e["data"]["status"] == "succeeded"}
        return job_ids <= done

    return check


def submit(server: ServerProcess, n: int) -> set[int]:
    return {
        httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": i, "b": 1}, timeout=WAIT).json()["id"]
        for i in range(n)
    }


STREAMS = [("/api/events", {}, lambda i: str(i)), ("/api/live/events", {"topic": "jobs"}, lambda i: f"@={i}")]


def test_streams_go_on_after_the_server_was_killed_and_started_again(restartable: ServerProcess) -> None:
    server = restartable
    before = [Listener(server.url + path, params) for path, params, _ in STREAMS]
    for listener in before:  # connected before the jobs: a stream without an id starts from now
        listener.wait_for(lambda events: any(e["event"] == "ready" for e in events), "the stream's ready")
    first = submit(server, 3)
    old_ids = []
    for listener in before:
        listener.wait_for(ended(first), "events of the first jobs")
        old_ids.append(listener.last_id)
    server.kill()
    for listener in before:
        listener.close()
    server.restart()
    # As browsers do: reconnect with the last id seen, from the killed server.
    after = [Listener(server.url + path, params, last_id) for (path, params, _), last_id in zip(STREAMS, old_ids)]
    for listener in after:
        listener.wait_for(lambda events: any(e["event"] == "resync" for e in events), "resync")
    following = submit(server, 20)
    for listener, old in zip(after, old_ids):
        events = listener.wait_for(ended(following), "events of the jobs after the restart")
        kinds = [e["event"] for e in events]
        assert kinds[:2] == ["ready", "resync"], kinds
        assert listener.last_id != old
    # A job's own stream with an old id: a snapshot of the job, then its events.
    job = submit(server, 1).pop()
    httpx.get(f"{server.url}/api/jobs/{job}", params={"wait": WAIT}, timeout=WAIT + 5)
    single = Listener(f"{server.url}/api/jobs/{job}/events", last_id=str(before[0].last_id))
    events = single.wait_for(lambda events: any(e["event"] == "snapshot" for e in events), "snapshot")
    assert events[-1]["data"]["status"] == "succeeded"
    for listener in after:
        listener.close()
    single.close()


def test_the_jobs_monitor_shows_a_new_job_after_a_restart_without_reload(
    browser: Browser, restartable: ServerProcess
) -> None:
    server = restartable
    old = submit(server, 2)
    for job in old:
        httpx.get(f"{server.url}/api/jobs/{job}", params={"wait": WAIT}, timeout=WAIT + 5)
    page = browser.new_page()
    try:
        page.goto(server.url + "/jobs")
        late = submit(server, 1).pop()  # heard live: the page's stream works
        page.locator(f'tr[data-job-id="{late}"] [data-field="status"]').filter(has_text="succeeded").wait_for(
            timeout=WAIT * 1000
        )
        server.kill()
        server.restart()
        deadline = time.monotonic() + WAIT
        while (
            not samples(httpx.get(f"{server.url}/metrics").text).get(("mieruka_sse_clients", ()))
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)  # the page's EventSource reconnects by itself
        new = submit(server, 1).pop()
        page.locator(f'tr[data-job-id="{new}"] [data-field="status"]').filter(has_text="succeeded").wait_for(
            timeout=WAIT * 1000
        )
        assert "polling" not in (page.locator("#live-note").text_content() or "")
    finally:
        page.close()
