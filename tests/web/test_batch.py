"""Batch submit, `POST /api/tasks/{task}/jobs/batch`: in-process, and through a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from mieruka.web.batch import MAX_JOBS
from tests.conftest import running_server

pytestmark = pytest.mark.in_process

BATCH = "/api/tasks/add/jobs/batch"


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def results(client: httpx.Client | TestClient, jobs: list[dict[str, Any]]) -> list[Any]:
    done = [client.get(f"/api/jobs/{job['id']}", params={"wait": 30}).json() for job in jobs]
    assert all(job["status"] == "succeeded" for job in done), done
    return [job["result"] for job in done]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_a_batch_queues_each_job_in_order(client: TestClient) -> None:
    items = [{"params": {"a": i}} for i in range(5)] + [{"params": {"a": 1, "b": 10}, "priority": 7, "delay": 0}]
    response = client.post(BATCH, json={"jobs": items})
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["created"] == [True] * 6
    assert [job["params"]["a"] for job in body["jobs"]] == [0, 1, 2, 3, 4, 1]
    assert body["jobs"][5]["priority"] == 7 and body["jobs"][0]["url"] == f"/api/jobs/{body['jobs'][0]['id']}"
    assert results(client, body["jobs"]) == [2, 3, 4, 5, 6, 11]
    assert len(client.get("/api/jobs", params={"task": "add"}).json()["jobs"]) == 6


def test_one_bad_item_queues_nothing_and_is_named(client: TestClient) -> None:
    response = client.post(BATCH, json={"jobs": [{"params": {"a": 1}}, {"params": {"a": "x"}}, {"params": {}}]})
    error = error_of(response, 422)
    assert error["code"] == "validation_error" and "nothing queued" in error["message"]
    assert [f["field"] for f in error["fields"]] == ["jobs[1].a", "jobs[2].a"]
    assert client.get("/api/jobs").json()["jobs"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobs": []}, "jobs"),
        ({"jobs": [{"params": {"a": 1}}] * (MAX_JOBS + 1)}, "jobs"),
        ([{"params": {"a": 1}}], "jobs"),
        ({"jobs": [{"params": {"a": 1}}], "more": 1}, "jobs"),
        ({"jobs": [{"params": {"a": 1}, "colour": "red"}]}, "jobs[0]"),
        ({"jobs": [{"params": [1]}]}, "jobs[0]"),
        ({"jobs": [5]}, "jobs[0]"),
        ({"jobs": [{"params": {"a": 1}, "priority": 1.5}]}, "jobs[0]"),
        ({"jobs": [{"params": {"a": 1}, "priority": 2**31}]}, "jobs[0]"),
        ({"jobs": [{"params": {"a": 1}, "delay": -1}]}, "jobs[0]"),
        ({"jobs": [{"params": {"a": 1}, "delay": True}]}, "jobs[0]"),
        ({"jobs": [{"params": {"a": 1}, "idempotency_key": "k" * 201}]}, "jobs[0]"),
        ({"jobs": [{"params": {"a": 1}, "idempotency_key": ""}]}, "jobs[0]"),
    ],
)
def test_a_malformed_batch_is_a_readable_422(client: TestClient, body: Any, field: str) -> None:
    error = error_of(client.post(BATCH, json=body), 422)
    assert error["fields"][0]["field"] == field and error["message"]
    assert client.get("/api/jobs").json()["jobs"] == []


def test_bodies_that_are_not_json_and_unknown_tasks(client: TestClient) -> None:
    headers = {"Content-Type": "application/json"}
    assert "not valid JSON" in error_of(client.post(BATCH, content=b"{nope", headers=headers), 422)["message"]
    assert error_of(client.post(BATCH, content=b"", headers=headers), 422)["fields"][0]["field"] == "jobs"
    unknown = client.post("/api/tasks/nope/jobs/batch", json={"jobs": [{"params": {}}]})
    assert error_of(unknown, 404)["code"] == "task_not_found"


def test_idempotency_keys_are_per_item(client: TestClient) -> None:
    first = client.post(BATCH, json={"jobs": [{"params": {"a": 1}, "idempotency_key": "row-1"}]}).json()
    again = client.post(
        BATCH,
        json={
            "jobs": [{"params": {"a": 1}, "idempotency_key": "row-1"}, {"params": {"a": 2}, "idempotency_key": "row-2"}]
        },
    )
    assert again.status_code == 202 and again.json()["created"] == [False, True]
    assert again.json()["jobs"][0]["id"] == first["jobs"][0]["id"]
    repeat = client.post(BATCH, json={"jobs": [{"params": {"a": 2}, "idempotency_key": "row-2"}]})
    assert repeat.status_code == 200 and repeat.json()["created"] == [False]
    assert len(client.get("/api/jobs").json()["jobs"]) == 2


def test_the_batch_route_is_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/tasks/{task}/jobs/batch"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["jobs"]["maxItems"] == MAX_JOBS
    assert {"202", "422", "404"} <= set(operation["responses"])


def test_a_batch_through_a_real_server(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", "--workers", "2") as server, httpx.Client(base_url=server.url) as http:
        response = http.post(BATCH, json={"jobs": [{"params": {"a": i}} for i in range(50)]})
        assert response.status_code == 202, response.text
        jobs = response.json()["jobs"]
        assert len({job["id"] for job in jobs}) == 50
        assert results(http, jobs) == [i + 2 for i in range(50)]
        bad = http.post(BATCH, json={"jobs": [{"params": {"a": 1}}, {"params": {"b": 1}}]})
        assert error_of(bad, 422)["fields"][0]["field"] == "jobs[1].a"
        assert len(http.get("/api/jobs", params={"limit": 500}).json()["jobs"]) == 50


def test_the_documented_batch_is_accepted(client: TestClient) -> None:
    page = (Path(__file__).parents[2] / "docs" / "http_api.md").read_text()
    example = json.loads(page.split("```json\n", 1)[1].split("```", 1)[0])
    response = client.post(BATCH, json=example)
    assert response.status_code == 202, response.text
    assert response.json()["created"] == [True, True, True]
    jobs = response.json()["jobs"]
    assert results(client, jobs[:2]) == [3, 7]
    assert jobs[1]["priority"] == 5 and jobs[2]["run_after"] and jobs[2]["idempotency_key"] == "row-3"
