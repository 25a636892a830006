"""The hot routes served by web/fastpath.py: plain requests are answered there, with the security
headers and audit entries of every route; anything unusual goes to FastAPI and reads as before."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import mieruka
from mieruka.auth.audit import AuditQuery

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
