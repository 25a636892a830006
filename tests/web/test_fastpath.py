"""The hot routes served by web/fastpath.py: plain requests are answered there, with the security
headers and audit entries of every route; anything unusual goes to FastAPI and reads as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message

import mieruka
from mieruka.auth.audit import AuditQuery
from mieruka.web.feeds import MAX_TOPICS

pytestmark = pytest.mark.in_process


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def test_plain_parameters_are_taken(client: TestClient) -> None:
    response = client.post(
        "/api/tasks/add/jobs",
        params={"priority": "-5", "delay": "0.5"},
        json={"a": 1},
        headers={"Idempotency-Key": "k"},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["priority"] == -5 and job["run_after"] and job["idempotency_key"] == "k"
    assert response.headers["content-type"] == "application/json"
    assert (
        response.headers["cache-control"] == "no-store"
        and "default-src 'self'" in response.headers["content-security-policy"]
    )
    again = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Idempotency-Key": "k"})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    done = client.get(f"/api/jobs/{job['id']}", params={"wait": "30"}).json()
    assert done["status"] == "succeeded" and done["result"] == 3
    run = client.post("/api/tasks/add/run", params={"timeout": "30"}, json={"a": 2})
    assert run.status_code == 200 and run.json()["result"] == 4
    assert run.headers["location"] == f"/api/jobs/{run.json()['id']}"


@pytest.mark.parametrize(
    ("method", "path", "params", "field"),
    [
        ("GET", "/api/jobs/1", {"wait": "-1"}, "wait"),
        ("GET", "/api/jobs/1", {"wait": "abc"}, "wait"),
        ("GET", "/api/jobs/1", {"wait": "301"}, "wait"),
        ("POST", "/api/tasks/add/jobs", {"priority": "x"}, "priority"),
        ("POST", "/api/tasks/add/jobs", {"priority": str(2**31)}, "priority"),
        ("POST", "/api/tasks/add/jobs", {"delay": "-1"}, "delay"),
        ("POST", "/api/tasks/add/run", {"timeout": "0"}, "timeout"),
    ],
)
def test_unusual_parameters_get_fastapis_answer(
    client: TestClient, method: str, path: str, params: dict[str, str], field: str
) -> None:
    response = client.request(method, path, params=params, json={"a": 1} if method == "POST" else None)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and error["fields"][0]["field"] == field
    assert client.get("/api/jobs").json()["jobs"] == []


def test_a_long_idempotency_key_and_unknown_things(client: TestClient) -> None:
    long_key = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Idempotency-Key": "k" * 201})
    assert long_key.status_code == 422 and long_key.json()["error"]["fields"][0]["field"] == "idempotency-key"
    assert client.get("/api/jobs/999").json()["error"]["code"] == "job_not_found"
    assert client.post("/api/tasks/nope/jobs", json={}).json()["error"]["code"] == "task_not_found"
    bad = client.post("/api/tasks/add/jobs", json={"a": "x"})
    assert bad.status_code == 422 and bad.json()["error"]["fields"][0]["field"] == "a"
    # an unknown query parameter is ignored, as FastAPI does
    assert client.post("/api/tasks/add/jobs", params={"colour": "red"}, json={"a": 1}).status_code == 202


def test_submissions_are_audited_together(app: mieruka.App, client: TestClient) -> None:
    ids = [client.post("/api/tasks/add/jobs", json={"a": i}).json()["id"] for i in range(3)]
    batch = client.post("/api/tasks/add/jobs/batch", json={"jobs": [{"params": {"a": 1}}]})
    assert batch.status_code == 202
    entries = [(e.action, e.target) for e in app.auth.audit.query(AuditQuery(limit=100))]
    assert sorted(entries) == sorted([("job.submit", f"job:{i}") for i in ids] + [("job.submit_batch", "task:add")])


def _open(
    client: TestClient, path: str, query: str = "", headers: tuple[tuple[bytes, bytes], ...] = (), until: str = ""
) -> Opened:
    """Opens an event stream on the app as a server would, reads until `until` came (or the first
    frame), then leaves."""
    opened = Opened(
        {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"accept", b"text/event-stream"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 80),
        }
    )

    async def run() -> None:
        left = anyio.Event()

        async def receive() -> Message:
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            opened.messages.append(message)
            if (message.get("body") and until in opened.body) or message.get("more_body") is False:
                left.set()

        with anyio.fail_after(60):
            await client.app(opened.scope, receive, send)

    assert client.portal is not None
    client.portal.call(run)
    return opened


class Opened:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.messages: list[Message] = []

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> str:
        return b"".join(m.get("body", b"") for m in self.messages[1:]).decode()

    @property
    def by_fastapi(self) -> bool:
        return "endpoint" in self.scope  # FastAPI's router puts the route's endpoint in the scope


def test_event_streams_are_served_outside_fastapi(client: TestClient) -> None:
    job = client.post("/api/tasks/add/jobs", json={"a": 1}).json()
    every = _open(client, "/api/events", "task=add")
    assert every.status == 200 and not every.by_fastapi and "event: ready" in every.body, every.body
    one = _open(client, f"/api/jobs/{job['id']}/events", "last_event_id=0", until="event: snapshot")
    assert one.status == 200 and not one.by_fastapi and "event: snapshot" in one.body
    assert f'"id":{job["id"]}' in one.body
    shared = _open(client, "/api/live/events", f"topic=jobs&topic=job:{job['id']}&topic=stream:nope")
    assert shared.status == 200 and not shared.by_fastapi
    ready = json.loads(shared.body.split("data: ", 1)[1].split("\n", 1)[0])
    assert list(ready["refused"]) == ["stream:nope"], ready
    resumed = _open(client, "/api/events", headers=((b"last-event-id", b"0"),))
    assert resumed.status == 200 and not resumed.by_fastapi


@pytest.mark.parametrize(
    ("path", "query", "status", "code", "fastapi"),
    [
        ("/api/jobs/999999/events", "", 404, "job_not_found", False),
        ("/api/events", "task=nope", 404, "task_not_found", False),
        ("/api/streams/nope/events", "", 404, "not_found", False),
        ("/api/dashboards/nope/events", "", 404, "not_found", False),
        ("/api/live/events", "topic=" + "&topic=".join(["jobs"] * (MAX_TOPICS + 1)), 422, "validation_error", False),
        # the rest is not plainly valid: FastAPI says why, as before
        ("/api/events", "last_event_id=x", 422, "validation_error", True),
        ("/api/jobs/1/events", "last_event_id=-1&colour=red", 200, None, True),
        ("/api/streams/ticks/events", "after=-1", 422, "validation_error", True),
        ("/api/live/events", "", 422, "validation_error", True),
        ("/api/live/events", "topic=jobs%0Ajobs", 200, None, True),
    ],
)
def test_event_streams_refuse_what_fastapi_refused(
    client: TestClient, path: str, query: str, status: int, code: str | None, fastapi: bool
) -> None:
    client.post("/api/tasks/add/jobs", json={"a": 1})
    opened = _open(client, path, query)
    assert opened.status == status, opened.body
    assert opened.by_fastapi == fastapi
    if code is not None:
        assert json.loads(opened.body)["error"]["code"] == code, opened.body
