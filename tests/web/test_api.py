"""The REST API in-process (FastAPI TestClient), against a real engine with worker processes."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import mieruka

pytestmark = pytest.mark.in_process  # jobs run on threads of this process: no worker interpreters to start


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def wait_done(client: TestClient, job_id: int) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}", params={"wait": 30})
    assert response.status_code == 200
    job: dict[str, Any] = response.json()
    return job


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    error: dict[str, Any] = body["error"]
    return error


def test_tasks_are_listed_with_schemas(client: TestClient) -> None:
    tasks = {t["name"]: t for t in client.get("/api/tasks").json()}
    assert tasks["add"]["description"] == "Add two numbers."
    schema = tasks["add"]["params_schema"]
    assert schema["required"] == ["a"] and schema["properties"]["b"]["default"] == 2
    assert tasks["read_upload"]["file_fields"] == ["document", "extra"]
    assert client.get("/api/tasks/add").json()["name"] == "add"
    assert_error(client.get("/api/tasks/nope"), 404, "task_not_found")


def test_submit_json_and_get_result(client: TestClient) -> None:
    response = client.post("/api/tasks/add/jobs", json={"a": 40})
    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued" and response.headers["location"] == f"/api/jobs/{job['id']}"
    done = wait_done(client, job["id"])
    assert done["status"] == "succeeded" and done["result"] == 42
    assert done["finished_at"].endswith("Z")


def test_run_answers_with_the_result(client: TestClient) -> None:
    response = client.post("/api/tasks/add/run", json={"a": 1, "b": 1})
    assert response.status_code == 200 and response.json()["result"] == 2
    slow = client.post("/api/tasks/sleep/run", params={"timeout": 0.2}, json={"seconds": 1.5})
    assert slow.status_code == 202 and slow.json()["status"] in ("queued", "running")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"a": "x"}, "a"),
        ({}, "a"),
        ({"a": 1, "zzz": 1}, "zzz"),
        ({"a": 1, "b": [1]}, "b"),
    ],
)
def test_bad_parameters_answer_422_naming_the_field(client: TestClient, body: dict[str, object], field: str) -> None:
    error = assert_error(client.post("/api/tasks/add/jobs", json=body), 422, "validation_error")
    assert error["fields"][0]["field"] == field
    assert client.get("/api/jobs").json()["jobs"] == []  # nothing was queued


def test_malformed_bodies(client: TestClient) -> None:
    assert_error(
        client.post("/api/tasks/add/jobs", content=b"{not json", headers={"content-type": "application/json"}),
        422,
        "validation_error",
    )
    assert_error(client.post("/api/tasks/add/jobs", json=[1, 2]), 422, "validation_error")
    assert_error(client.get("/api/jobs/abc"), 404, "job_not_found")
    assert_error(client.get("/api/jobs/+5"), 404, "job_not_found")
    assert_error(client.get("/api/jobs", params={"status": "weird"}), 422, "validation_error")
    assert_error(client.get("/api/jobs", params={"limit": 0}), 422, "validation_error")
    assert_error(client.get("/api/jobs", params={"cursor": "x"}), 422, "validation_error")
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.get("/api/jobs/999999"), 404, "job_not_found")
    assert_error(client.post("/api/tasks/nope/jobs", json={}), 404, "task_not_found")


def test_file_upload_multipart(client: TestClient, app: mieruka.App) -> None:
    files = [
        ("document", ("reads.fa", b">r1\nACGT\n", "text/plain")),
        ("extra", ("a.txt", b"a", "text/plain")),
        ("extra", ("../../b.txt", b"b", "text/plain")),
    ]
    response = client.post("/api/tasks/read_upload/jobs", files=files)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["params"]["document"]["filename"] == "reads.fa"
    done = wait_done(client, job["id"])
    assert done["result"] == {"name": "reads.fa", "size": 9, "text": ">r1\nACGT\n", "extra": ["a.txt", "b.txt"]}


def test_file_upload_as_base64_json(client: TestClient) -> None:
    body = {"document": {"filename": "x.txt", "content_base64": base64.b64encode(b"hi there").decode()}}
    done = wait_done(client, client.post("/api/tasks/read_upload/jobs", json=body).json()["id"])
    assert done["result"]["text"] == "hi there"
    bad = {"document": {"filename": "x.txt", "content_base64": "!!!"}}
    assert_error(client.post("/api/tasks/read_upload/jobs", json=bad), 422, "validation_error")


def test_missing_file_is_422_and_leaves_no_upload_behind(client: TestClient, app: mieruka.App) -> None:
    uploads = app.settings.home_path / "uploads"
    before = set(uploads.iterdir()) if uploads.exists() else set()
    response = client.post("/api/tasks/read_upload/jobs", files=[("extra", ("a.txt", b"a", "text/plain"))])
    error = assert_error(response, 422, "validation_error")
    assert error["fields"][0]["field"] == "document"
    assert set(uploads.iterdir()) == before


def test_oversized_upload_is_413_and_leaves_nothing(tmp_path: Path, database_url: str) -> None:
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    jobs_app.configure(home=str(tmp_path / "home"), database_url=database_url, workers=1, max_upload_size="1KB")
    try:
        with TestClient(jobs_app.asgi()) as client:
            big = [("document", ("big.bin", b"x" * 5000, "application/octet-stream"))]
            assert_error(client.post("/api/tasks/read_upload/jobs", files=big), 413, "payload_too_large")
            body = {"document": {"filename": "b", "content_base64": base64.b64encode(b"y" * 3000).decode()}}
            assert_error(client.post("/api/tasks/read_upload/jobs", json=body), 413, "payload_too_large")
            uploads = jobs_app.settings.home_path / "uploads"
            assert not uploads.exists() or list(uploads.iterdir()) == []
            assert client.get("/api/jobs").json()["jobs"] == []
    finally:
        jobs_app._settings = None


def test_form_fields_are_converted_like_json(client: TestClient) -> None:
    data = {
        "text": "hi",
        "count": "3",
        "flag": "on",
        "day": "2026-03-04",
        "names": ["x", "y"],
        "window": '{"start": 2, "end": 5}',
        "colour": "blue",
    }
    response = client.post("/api/tasks/echo_types/jobs", data=data)
    assert response.status_code == 202, response.text
    params = response.json()["params"]
    assert params["count"] == 3 and params["flag"] is True and params["names"] == ["x", "y"]
    assert params["window"] == {"start": 2, "end": 5} and params["day"] == "2026-03-04"
    error = assert_error(client.post("/api/tasks/echo_types/jobs", data={"count": "many"}), 422, "validation_error")
    assert error["fields"][0]["field"] == "count"


def test_list_filters_and_cursor_pagination(client: TestClient) -> None:
    ids = [client.post("/api/tasks/add/jobs", json={"a": i}).json()["id"] for i in range(5)]
    failed = client.post("/api/tasks/fail/jobs", json={"message": "needle-in-haystack"}).json()["id"]
    for job_id in [*ids, failed]:
        wait_done(client, job_id)
    page = client.get("/api/jobs", params={"task": "add", "limit": 2}).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2]
    page2 = client.get("/api/jobs", params={"task": "add", "limit": 2, "cursor": page["next_cursor"]}).json()
    assert [j["id"] for j in page2["jobs"]] == ids[::-1][2:4]
    assert "result" not in page["jobs"][0]  # lists stay small
    assert [j["id"] for j in client.get("/api/jobs", params={"status": "failed"}).json()["jobs"]] == [failed]
    assert [j["id"] for j in client.get("/api/jobs", params={"q": "needle"}).json()["jobs"]] == [failed]
    assert len(client.get("/api/jobs", params={"status": "succeeded,failed"}).json()["jobs"]) == 6
    assert client.get("/api/jobs", params={"created_after": "2999-01-01T00:00:00"}).json()["jobs"] == []
    out_of_range = client.get("/api/jobs", params={"created_before": "0001-01-01T00:30:00+01:00"})
    assert out_of_range.status_code == 422 and "created_before" in out_of_range.json()["error"]["message"]


def test_logs_by_range(client: TestClient) -> None:
    job = wait_done(client, client.post("/api/tasks/noisy/jobs", json={"lines": 5}).json()["id"])
    page = client.get(f"/api/jobs/{job['id']}/logs", params={"after": 1, "limit": 2}).json()
    assert [line["seq"] for line in page["lines"]] == [2, 3] and page["next_after"] == 3
    assert page["total"] == job["log_lines"] and page["finished"] is True
    text = client.get(f"/api/jobs/{job['id']}/logs", params={"format": "text"})
    assert text.text.startswith("line 0\nline 1\n")


def test_artifact_download(client: TestClient) -> None:
    job = wait_done(client, client.post("/api/tasks/with_artifacts/jobs", json={}).json()["id"])
    assert {a["name"] for a in job["artifacts"]} == {"hello.txt", "data.bin"}
    response = client.get(f"/api/jobs/{job['id']}/artifacts/data.bin")
    assert response.content == bytes(range(256)) * 4
    assert response.headers["content-disposition"].startswith("attachment")
    assert response.headers["x-content-type-options"] == "nosniff"
    inline = client.get(f"/api/jobs/{job['id']}/artifacts/hello.txt", params={"inline": True})
    assert inline.headers["content-disposition"].startswith("inline") and inline.text == "hello artifact"
    assert_error(client.get(f"/api/jobs/{job['id']}/artifacts/nope.txt"), 404, "artifact_not_found")


def test_artifact_urls_are_encoded(client: TestClient) -> None:
    """Names with spaces, '#', '?', '%' and any script: the URL in the answer and on the page fetch them."""
    names = ["a b.txt", "x#y?z.txt", "結果 2026.csv", "100%.txt", "Отчёт&1.txt"]
    job = wait_done(client, client.post("/api/tasks/named_artifacts/jobs", json={"names": names}).json()["id"])
    assert job["status"] == "succeeded", job
    urls = {a["name"]: a["url"] for a in job["artifacts"]}
    assert sorted(urls) == sorted(names)
    page = client.get(f"/jobs/{job['id']}").text
    for name, url in urls.items():
        assert "#" not in url and "?" not in url and " " not in url and url.isascii(), url
        assert client.get(url).text == f"content of {name}", name
        assert f'href="{url}"' in page, url
    listed = client.get(f"/api/jobs/{job['id']}/artifacts").json()
    assert {a["url"] for a in listed} == set(urls.values())


def test_cancel_retry_delete(client: TestClient) -> None:
    job = client.post("/api/tasks/sleep/jobs", json={"seconds": 30}).json()
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{job['id']}").json()["status"] != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert_error(client.delete(f"/api/jobs/{job['id']}"), 409, "conflict")
    client.post(f"/api/jobs/{job['id']}/cancel")
    assert wait_done(client, job["id"])["status"] == "cancelled"
    assert_error(client.post(f"/api/jobs/{job['id']}/cancel"), 409, "conflict")
    retried = client.post(f"/api/jobs/{job['id']}/retry").json()
    assert retried["status"] == "queued"
    client.post(f"/api/jobs/{job['id']}/cancel")
    wait_done(client, job["id"])
    assert client.delete(f"/api/jobs/{job['id']}").status_code == 204
    assert_error(client.get(f"/api/jobs/{job['id']}"), 404, "job_not_found")


def test_idempotency_key_header(client: TestClient) -> None:
    first = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    again = client.post("/api/tasks/add/jobs", json={"a": 1}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]


def test_priority_and_delay_options(client: TestClient) -> None:
    job = client.post("/api/tasks/add/jobs", params={"priority": 7, "delay": 0.3}, json={"a": 1}).json()
    assert job["priority"] == 7 and job["run_after"] is not None
    assert_error(client.post("/api/tasks/add/jobs", params={"delay": -1}, json={"a": 1}), 422, "validation_error")
    assert wait_done(client, job["id"])["status"] == "succeeded"


def test_openapi_has_an_operation_per_task(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/api/tasks/add/jobs"]["post"]
    schema_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert schema["required"] == ["a"]
    upload = doc["paths"]["/api/tasks/read_upload/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload["schema"]["properties"]["document"]["format"] == "binary"
    assert upload["schema"]["properties"]["extra"]["items"]["format"] == "binary"
    for path in (
        "/api/jobs",
        "/api/jobs/{job_id}/logs",
        "/api/jobs/{job_id}/artifacts/{name}",
        "/api/jobs/{job_id}/cancel",
        "/api/events",
        "/healthz",
    ):
        assert path in doc["paths"]


def test_docs_pages_use_only_local_assets(client: TestClient) -> None:
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
        assert urls, page
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url}"
            assert client.get(url).status_code == 200, url
        assert "fonts.googleapis" not in html and "cdn.jsdelivr" not in html


def test_healthz(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["workers"]["total"] == 2
    assert body["events"] == "ok"


def test_root_path_prefix(tmp_path: Path, database_url: str) -> None:
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    jobs_app.configure(home=str(tmp_path / "home"), database_url=database_url, workers=1)
    try:
        with TestClient(jobs_app.asgi(), root_path="/mieruka") as client:
            html = client.get("/docs").text
            assert "/mieruka/static/vendor/swagger-ui/swagger-ui-bundle.js" in html
            job = client.post("/api/tasks/add/jobs", json={"a": 1})
            assert job.headers["location"].startswith("/mieruka/api/jobs/")
    finally:
        jobs_app._settings = None


@pytest.mark.parametrize("path", ["/mieruka/api/tasks/add/jobs", "/api/tasks/add/jobs"])
def test_root_path_setting_works_whether_the_proxy_strips_the_prefix_or_not(
    tmp_path: Path, database_url: str, path: str
) -> None:
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    jobs_app.configure(home=str(tmp_path / "home"), database_url=database_url, workers=1, root_path="/mieruka")
    try:
        with TestClient(jobs_app.asgi()) as client:
            response = client.post(path, json={"a": 1})
            assert response.status_code == 202, response.text
            assert response.headers["location"].startswith("/mieruka/api/jobs/")
            page = client.get(path.replace("/api/tasks/add/jobs", "/tasks/add"))
            assert 'action="/mieruka/tasks/add"' in page.text
    finally:
        jobs_app._settings = None


def test_queues_and_workers(client: TestClient) -> None:
    running = [client.post("/api/tasks/sleep/jobs", json={"seconds": 2}).json()["id"] for _ in range(3)]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        # The store says a job runs once it is claimed; the worker list, once the job reached its
        # worker, a moment later: both are waited for.
        queues = client.get("/api/queues").json()
        busy = {w["job_id"] for w in client.get("/api/workers").json()} - {None}
        if queues and queues[0]["running"] == 2 and len(busy) == 2:
            break
        time.sleep(0.05)
    assert queues == [
        {"queue": "default", "queued": 1, "running": 2, "oldest_queued_at": queues[0]["oldest_queued_at"]}
    ]
    assert queues[0]["oldest_queued_at"].endswith("Z")
    assert busy <= set(running) and len(busy) == 2
    page = client.get("/workers").text
    assert "Workers of this server" in page and 'data-queue="default"' in page
    for job_id in running:
        client.post(f"/api/jobs/{job_id}/cancel")


def test_an_app_without_sources_answers_the_live_routes(client: TestClient) -> None:
    assert client.get("/api/sources").json() == [] and client.get("/api/streams").json() == []
    assert client.get("/api/dashboards").json() == []
    missing = client.get("/api/sources/anything")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "this app declares no sources or streams"
    assert client.get("/dashboards").status_code == 200
