"""The audit log says what was done: each way a person starts or changes a job (API submit on the
hot path and through FastAPI, run now, batch, the task form and its quick htmx run, a dashboard
control's press, retry, cancel, delete) records the task, the parameters with secrets hidden and
files by name and size only, the outcome and the duration; refused requests record nothing; the
page, the CSV and /api/audit show it and never a secret or a file's content."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from pydantic import Field

import mieruka
from mieruka import controls
from mieruka.auth.audit import MAX_DETAIL, AuditQuery, capped, shown_params
from mieruka.redaction import HIDDEN, secret_name, without_passwords
from mieruka.store.base import JobQuery
from mieruka.web.csrf import CSRF_FIELD

pytestmark = pytest.mark.in_process

app = mieruka.App("Audit detail")
# Values that must never reach the audit log, in any form it is read.
SECRETS = ("hunter2", "K3Y-VALUE", "T0KEN-VALUE", "open sesame", "FILE-CONTENT-XYZ")
PASSWORD = "correct horse"


@app.task
def connect(
    host: str,
    password: str,
    api_key: str = "",
    options: dict[str, str] = {},  # noqa: B006 - read only
    phrase: Annotated[str, Field(json_schema_extra={"writeOnly": True})] = "",
) -> str:
    """Connect to a host (the parameters named like secrets, or declared so, are hidden)."""
    return host


@app.task
def upload(document: mieruka.File, others: list[mieruka.File] = [], note: str = "") -> int:  # noqa: B006
    return document.size + sum(o.size for o in others)


@app.task(quick=True)
def quick_add(a: int, b: int = 2) -> int:
    return a + b


@app.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task
def nap(seconds: float = 0.1) -> float:
    time.sleep(seconds)
    return seconds


app.dashboard("ops", [controls.form(connect, params={"host": "db1"}, title="Connect")])


@pytest.fixture
def client(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    """The app on SQLite and on PostgreSQL (the detail is a JSON column on both)."""
    app._settings = None
    app.configure(
        home=str(tmp_path / "home"),
        database_url=database_url,
        executor="threads",
        workers=1,
        poll_interval=0.2,
        timezone="Asia/Tokyo",
    )
    with TestClient(app.asgi()) as test_client:
        yield test_client
    app._settings = None


def entries(action: str | None = None) -> list[dict[str, Any]]:
    """The log's entries, oldest first."""
    return [e.json() for e in reversed(app.auth.audit.query(AuditQuery(action=action, limit=1000)))]


def detail_of(target: str) -> dict[str, Any]:
    found = [e for e in entries() if e["target"] == target]
    assert len(found) == 1, entries()
    detail: dict[str, Any] = found[0]["detail"]
    return detail


def assert_no_secret(client: TestClient) -> None:
    """No secret in any way the log is read: the API (JSON and CSV), the page, the CSV export."""
    for path in ("/api/audit?limit=10000", "/api/audit?format=csv&limit=10000", "/audit", "/audit.csv"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        for secret in SECRETS:
            assert secret not in response.text, (path, secret)
            assert base64.b64encode(secret.encode()).decode() not in response.text, (path, secret)


CONNECT = {
    "host": "db1",
    "password": "hunter2",
    "api_key": "K3Y-VALUE",
    "options": {"accessToken": "T0KEN-VALUE", "mode": "fast"},
    "phrase": "open sesame",
}
SHOWN = {
    "host": "db1",
    "password": HIDDEN,
    "api_key": HIDDEN,
    "options": {"accessToken": HIDDEN, "mode": "fast"},
    "phrase": HIDDEN,
}


# -- each way a job is started ------------------------------------------------------------------------
def test_api_submit_on_the_hot_path_and_through_fastapi(client: TestClient) -> None:
    hot = client.post("/api/tasks/connect/jobs", json=CONNECT)
    assert hot.status_code == 202, hot.text
    # An unknown query parameter sends the request the FastAPI way (web/fastpath.py): same detail.
    slow = client.post("/api/tasks/connect/jobs", params={"colour": "red"}, json=CONNECT)
    assert slow.status_code == 202, slow.text
    for job in (hot.json()["id"], slow.json()["id"]):
        assert detail_of(f"job:{job}") == {"task": "connect", "params": SHOWN, "job": job, "outcome": "accepted"}
    # The same idempotency key again finds the first job: the entry says so.
    first = client.post("/api/tasks/connect/jobs", json=CONNECT, headers={"Idempotency-Key": "k1"}).json()["id"]
    again = client.post("/api/tasks/connect/jobs", json=CONNECT, headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == first
    outcomes = [e["detail"]["outcome"] for e in entries("job.submit") if e["target"] == f"job:{first}"]
    assert outcomes == ["accepted", "duplicate"]
    assert_no_secret(client)


def test_a_submissions_entry_is_stored_with_its_job_or_neither_is(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API submission writes its entry in the job's own transaction (web/submission.py): an entry
    that cannot be written leaves no job behind it either, and the next submission has both."""
    log = app.auth.audit
    write = log.write_on
    calls: list[int] = []

    def failing_once(cur: Any, new: Any) -> None:
        calls.append(len(new))
        if len(calls) == 1:
            raise OSError("disk full, for a moment")
        write(cur, new)

    before = len(client.get("/api/jobs", params={"limit": 500}).json()["jobs"])
    monkeypatch.setattr(log, "write_on", failing_once)
    failed = client.post("/api/tasks/connect/jobs", json=CONNECT)
    assert failed.status_code == 500, failed.text
    assert len(client.get("/api/jobs", params={"limit": 500}).json()["jobs"]) == before
    job = client.post("/api/tasks/connect/jobs", json=CONNECT).json()["id"]
    assert detail_of(f"job:{job}") == {"task": "connect", "params": SHOWN, "job": job, "outcome": "accepted"}
    assert calls == [1, 1]
    assert [e["target"] for e in entries("job.submit")] == [f"job:{job}"]


def test_a_submissions_entry_not_written_beside_its_job_is_written_after_the_answer_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submission that finds its job stored already (a repeated key) writes its entry in the
    thread that looked (web/submission.py); when that write fails, the security layer writes it
    after the answer, as for any route."""
    first = client.post("/api/tasks/connect/jobs", json=CONNECT, headers={"Idempotency-Key": "k2"}).json()["id"]
    log = app.auth.audit
    calls: list[int] = []
    write = log.record_many

    def failing_once(new: Any) -> None:
        calls.append(len(new))
        if len(calls) == 1:
            raise OSError("disk full, for a moment")
        write(new)

    monkeypatch.setattr(log, "record_many", failing_once)
    again = client.post("/api/tasks/connect/jobs", json=CONNECT, headers={"Idempotency-Key": "k2"})
    assert again.status_code == 200 and again.json()["id"] == first
    assert calls == [1, 1]  # beside the lookup (failed), after the answer
    outcomes = [e["detail"]["outcome"] for e in entries("job.submit") if e["target"] == f"job:{first}"]
    assert outcomes == ["accepted", "duplicate"]


def test_run_now_records_the_final_state_and_the_run_time(client: TestClient) -> None:
    for params in ({}, {"colour": "red"}):  # the hot path, then FastAPI's
        done = client.post("/api/tasks/connect/run", params=params, json=CONNECT)
        assert done.status_code == 200 and done.json()["status"] == "succeeded", done.text
        job = done.json()["id"]
        detail = detail_of(f"job:{job}")
        assert detail["task"] == "connect" and detail["params"] == SHOWN and detail["outcome"] == "succeeded"
        assert detail["duration"] == app.engine.get(job).duration and detail["duration"] >= 0
    failed = client.post("/api/tasks/fail/run", json={"message": "no luck"}).json()
    detail = detail_of(f"job:{failed['id']}")
    assert detail["outcome"] == "failed" and detail["params"] == {"message": "no luck"}
    assert isinstance(detail["duration"], float)
    # Still running when the wait ends (202): the entry says so, and the page shows how it ended.
    waited = client.post("/api/tasks/nap/run", params={"timeout": "0.05"}, json={"seconds": 1.5})
    assert waited.status_code == 202, waited.text
    job = waited.json()["id"]
    assert detail_of(f"job:{job}")["outcome"] in ("queued", "running")
    assert detail_of(f"job:{job}")["duration"] is None
    app.engine.wait(job, 30)
    row = next(r for r in re.findall(r"<tr><td.*?</tr>", client.get("/audit").text, re.S) if f"job:{job}" in r)
    assert f'href="/jobs/{job}">succeeded</a> · ran 1.' in row
    assert_no_secret(client)


def test_files_are_recorded_by_name_and_size_only(client: TestClient) -> None:
    content = b"FILE-CONTENT-XYZ" * 100
    multipart = client.post(
        "/api/tasks/upload/jobs",
        files=[("document", ("report.csv", content)), ("others", ("a.txt", b"FILE-CONTENT-XYZ"))],
        data={"note": "monthly"},
    )
    assert multipart.status_code == 202, multipart.text
    as_json = client.post(
        "/api/tasks/upload/jobs",
        json={"document": {"filename": "b64.bin", "content_base64": base64.b64encode(content).decode()}},
    )
    assert as_json.status_code == 202, as_json.text
    assert detail_of(f"job:{multipart.json()['id']}")["params"] == {
        "document": {"file": "report.csv", "size": 1600},
        "others": [{"file": "a.txt", "size": 16}],
        "note": "monthly",
    }
    assert detail_of(f"job:{as_json.json()['id']}")["params"] == {
        "document": {"file": "b64.bin", "size": 1600},
        "others": [],
        "note": "",
    }
    for job in (multipart.json()["id"], as_json.json()["id"]):
        assert "upload_id" not in json.dumps(detail_of(f"job:{job}"))
    assert "report.csv (1,600 bytes)" in client.get("/audit").text
    assert_no_secret(client)


def test_a_batch_records_the_task_the_count_and_small_parameters(client: TestClient) -> None:
    small = client.post(
        "/api/tasks/connect/jobs/batch", json={"jobs": [{"params": CONNECT}, {"params": {**CONNECT, "host": "db2"}}]}
    )
    assert small.status_code == 202, small.text
    ids = [job["id"] for job in small.json()["jobs"]]
    big = client.post("/api/tasks/quick_add/jobs/batch", json={"jobs": [{"params": {"a": i}} for i in range(30)]})
    assert big.status_code == 202, big.text
    first, second = [e["detail"] for e in entries("job.submit_batch")]
    assert first == {
        "task": "connect",
        "count": 2,
        "created": 2,
        "outcome": "accepted",
        "first_job": ids[0],
        "last_job": ids[1],
        "params": [SHOWN, {**SHOWN, "host": "db2"}],
    }
    assert second["task"] == "quick_add" and second["count"] == 30 and "params" not in second
    assert_no_secret(client)


def test_the_task_form_and_its_quick_run(client: TestClient) -> None:
    form = client.post(
        "/tasks/connect",
        data={"host": "db1", "password": "hunter2", "api_key": "K3Y-VALUE", "phrase": "open sesame"},
        follow_redirects=False,
    )
    assert form.status_code == 303, form.text
    job = int(form.headers["location"].rsplit("/", 1)[1])
    detail = detail_of(f"job:{job}")
    assert detail["task"] == "connect" and detail["outcome"] == "accepted"
    assert detail["params"] == {**SHOWN, "options": {}}
    quick = client.post("/tasks/quick_add", data={"a": "40"}, headers={"HX-Request": "true"})
    assert quick.status_code == 200 and "42" in quick.text
    last = entries("job.submit")[-1]
    detail = last["detail"]
    assert detail["task"] == "quick_add" and detail["params"] == {"a": 40, "b": 2}
    assert detail["outcome"] == "succeeded" and detail["duration"] == app.engine.get(detail["job"]).duration
    assert last["target"] == f"job:{detail['job']}"  # the job, though the answer named none (no Location)
    assert_no_secret(client)


def test_a_dashboard_controls_press(client: TestClient) -> None:
    secrets = {"password": "hunter2", "api_key": "K3Y-VALUE", "phrase": "open sesame"}
    pressed = client.post("/api/dashboards/ops/controls/connect", json={"params": secrets})
    assert pressed.status_code == 200 and pressed.json()["state"] == "succeeded", pressed.text
    job = pressed.json()["job"]
    detail = detail_of(f"job:{job}")
    assert {k: detail[k] for k in ("task", "params", "job", "outcome")} == {
        "task": "connect",
        "params": {**SHOWN, "options": {}},
        "job": job,
        "outcome": "succeeded",
    }
    assert detail["duration"] == app.engine.get(job).duration
    assert_no_secret(client)


def test_a_retry_says_it_queued_the_job_though_a_worker_took_it_at_once(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry says what the retry did: the record read after it may be a worker's already."""
    import dataclasses

    from mieruka.core.status import JobStatus

    failed = client.post("/api/tasks/fail/run", json={"message": "x"}).json()["id"]
    retry = app.engine.retry

    def taken_at_once(job_id: int) -> Any:
        return dataclasses.replace(retry(job_id), status=JobStatus.RUNNING)

    monkeypatch.setattr(app.engine, "retry", taken_at_once)
    assert client.post(f"/api/jobs/{failed}/retry").json()["status"] == "running"
    assert entries("job.retry")[-1]["detail"]["outcome"] == "queued"
    app.engine.wait(failed, 30)
    assert client.post(f"/jobs/{failed}/retry", follow_redirects=False).status_code == 303
    assert entries("job.retry")[-1]["detail"]["outcome"] == "queued"
    app.engine.wait(failed, 30)


def test_retry_cancel_and_delete_say_which_job_of_which_task(client: TestClient) -> None:
    failed = client.post("/api/tasks/fail/run", json={"message": "x"}).json()["id"]
    assert client.post(f"/api/jobs/{failed}/retry").status_code == 200
    retried = entries("job.retry")[-1]["detail"]
    assert retried == {"task": "fail", "params": {"message": "x"}, "job": failed, "outcome": "queued"}
    app.engine.wait(failed, 30)
    assert client.post(f"/jobs/{failed}/retry", follow_redirects=False).status_code == 303  # the page's button
    assert entries("job.retry")[-1]["detail"]["outcome"] == "queued"
    waiting = [client.post("/api/tasks/connect/jobs?delay=600", json=CONNECT).json()["id"] for _ in range(3)]
    assert client.post(f"/api/jobs/{waiting[0]}/cancel").status_code == 200
    assert client.post(f"/jobs/{waiting[1]}/cancel", follow_redirects=False).status_code == 303
    assert client.post("/jobs/cancel", data={"ids": str(waiting[2])}, follow_redirects=False).status_code == 303
    cancels = [e["detail"] for e in entries("job.cancel")]
    assert cancels == [{"task": "connect", "params": SHOWN, "job": job, "outcome": "cancelled"} for job in waiting]
    app.engine.wait(failed, 30)
    assert client.delete(f"/api/jobs/{waiting[0]}").status_code == 204
    deleted = entries("job.delete")[-1]
    assert deleted["target"] == f"job:{waiting[0]}"
    assert deleted["detail"] == {
        "task": "connect",
        "params": SHOWN,
        "job": waiting[0],
        "outcome": "deleted (cancelled)",
    }
    assert_no_secret(client)


# -- what is refused records nothing -----------------------------------------------------------------
def test_refused_requests_record_nothing(tmp_path: Path) -> None:
    app._settings = None
    app.configure(home=str(tmp_path / "home"), executor="threads", workers=1, poll_interval=0.2, max_upload_size=1000)
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("olga", "operator", PASSWORD)
        app.auth.accounts.add_user("vic", "viewer", PASSWORD)
        viewer = {"Authorization": f"Bearer {app.auth.accounts.create_token('vic', 'v')[1]}"}
        operator = {"Authorization": f"Bearer {app.auth.accounts.create_token('olga', 'o')[1]}"}
        done = client.post("/api/tasks/quick_add/run", json={"a": 1}, headers=operator).json()["id"]
        before = entries()
        refused = [
            client.post("/api/tasks/connect/jobs", json=CONNECT, headers=viewer),  # 403
            client.post("/api/tasks/connect/run", json=CONNECT, headers=viewer),
            client.post("/api/tasks/connect/jobs/batch", json={"jobs": [{"params": CONNECT}]}, headers=viewer),
            client.post("/api/tasks/connect/jobs", json={**CONNECT, "host": 5}, headers=operator),  # 422
            client.post("/api/tasks/connect/run", json={**CONNECT, "extra": 1}, headers=operator),
            client.post(
                "/api/tasks/connect/jobs/batch",
                json={"jobs": [{"params": CONNECT}, {"params": {"password": "hunter2"}}]},
                headers=operator,
            ),
            client.post("/api/tasks/nothing/jobs", json=CONNECT, headers=operator),  # 404
            client.post(  # 413
                "/api/tasks/upload/jobs", files={"document": ("big.bin", b"FILE-CONTENT-XYZ" * 100)}, headers=operator
            ),
            client.post(f"/api/jobs/{done}/retry", headers=operator),  # 409: it succeeded
            client.post(f"/api/jobs/{done}/cancel", headers=operator),
            client.delete(f"/api/jobs/{done + 1000}", headers=operator),  # 404
        ]
        assert [r.status_code for r in refused] == [403, 403, 403, 422, 422, 422, 404, 413, 409, 409, 404]
        assert entries() == before
        # The task form refused (a value of the wrong type): its page again, nothing recorded.
        client.post("/login", data={CSRF_FIELD: _login_token(client), "name": "olga", "password": PASSWORD})
        before = entries()
        csrf = str(client.get("/api/me").json()["csrf_token"])
        page = client.post("/tasks/quick_add", data={CSRF_FIELD: csrf, "a": "many"})
        assert page.status_code == 422, page.text
        assert entries() == before
        assert [job.id for job in app.runtime.store.list_jobs(JobQuery(limit=100))] == [done]
    app._settings = None


def _login_token(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text)
    assert match
    return match.group(1)


# -- how it is shown -------------------------------------------------------------------------------
def test_the_page_and_the_csv_show_it_readably_in_the_configured_zone(client: TestClient) -> None:
    job = client.post("/api/tasks/connect/jobs", json=CONNECT).json()["id"]
    run = client.post("/api/tasks/quick_add/run", json={"a": 1}).json()["id"]
    app.engine.wait(job, 30)
    page = client.get("/audit").text
    rows = re.findall(r"<tr><td.*?</tr>", page, re.S)
    submitted = next(r for r in rows if f"job:{job}" in r)
    assert "<strong>connect</strong>" in submitted and "password=(hidden)" in submitted
    assert "host=&#34;db1&#34;" in submitted and "accepted" in submitted
    # The job's state now, from its row, labelled as such; the entry itself does not change.
    assert f'href="/jobs/{job}">succeeded</a>' in submitted and "ran " in submitted
    assert "Job now" in page
    at = datetime.fromisoformat(entries("job.submit")[-1]["at"].replace("Z", "+00:00"))
    assert at.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%Y-%m-%d %H:%M:%S") in submitted
    ran = next(r for r in rows if f"job:{run}" in r)
    assert "quick_add" in ran and "a=1, b=2" in ran and "succeeded" in ran
    exported = list(csv.DictReader(io.StringIO(client.get("/audit.csv").text)))
    by_target = {row["target"]: row for row in exported}
    row = by_target[f"job:{job}"]
    assert row["task"] == "connect" and row["outcome"] == "accepted" and row["job"] == str(job)
    assert row["params"].startswith('host="db1", password=(hidden)')
    assert row["at_local"].endswith("+09:00") and row["at_utc"].endswith("Z")
    assert float(by_target[f"job:{run}"]["duration_s"]) == app.engine.get(run).duration
    # An entry whose job id now names a job of another task (a database replaced since) is not
    # shown that job's state.
    app.auth.audit.record("ann", "job.submit", f"job:{run}", "10.0.0.9", {"task": "upload", "job": run})
    other = next(r for r in re.findall(r"<tr><td.*?</tr>", client.get("/audit").text, re.S) if "10.0.0.9" in r)
    assert "succeeded" not in other and "no longer stored" in other
    # Deleted, the job is no longer there to ask: the entry still says what it was.
    assert client.delete(f"/api/jobs/{job}").status_code == 204
    page = client.get("/audit").text
    submitted = next(r for r in re.findall(r"<tr><td.*?</tr>", page, re.S) if f"job:{job}" in r and "job.submit" in r)
    assert "no longer stored" in submitted and "password=(hidden)" in submitted
    assert_no_secret(client)


def test_entries_about_one_task(client: TestClient) -> None:
    """Who did what with a task: the page, the CSV and the API filter by the task of the detail."""
    connect = client.post("/api/tasks/connect/jobs", json=CONNECT).json()["id"]
    add = client.post("/api/tasks/quick_add/run", json={"a": 1}).json()["id"]
    client.post("/api/tasks/quick_add/jobs/batch", json={"jobs": [{"params": {"a": 2}}]})
    app.auth.audit.record("ann", "odd", "", "", {"task": "quick_add' OR 1=1 --"})
    api = client.get("/api/audit", params={"task": "quick_add"}).json()["entries"]
    assert [(e["action"], e["detail"]["task"]) for e in api] == [
        ("job.submit_batch", "quick_add"),
        ("task.run", "quick_add"),
    ]
    assert [e["target"] for e in client.get("/api/audit", params={"task": "connect"}).json()["entries"]] == [
        f"job:{connect}"
    ]
    assert client.get("/api/audit", params={"task": "quick_add' OR 1=1 --"}).json()["entries"][0]["actor"] == "ann"
    page = client.get("/audit", params={"task": "quick_add"}).text
    targets = re.findall(r"<tr><td.*?</td><td>.*?</td><td>.*?</td>\s*<td>(.*?)</td>", page, re.S)
    assert targets == ["task:quick_add", f"job:{add}"] and 'name="task" value="quick_add"' in page
    assert "task=quick_add" in page  # the CSV link keeps the filter
    exported = list(csv.DictReader(io.StringIO(client.get("/audit.csv", params={"task": "connect"}).text)))
    assert [row["target"] for row in exported] == [f"job:{connect}"]
    assert "No entries match" in client.get("/audit", params={"task": "nothing"}).text
    for path in ("/audit", "/api/audit", "/audit.csv"):
        assert client.get(path, params={"task": "a\x00b"}).status_code == 422


# -- the rules -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name",
    ["password", "db_password", "dbPassword", "passwd", "pwd", "api_key", "apiKey", "APIKey", "key", "token"]
    + ["accessToken", "client_secret", "secret", "credentials", "passphrase", "auth", "session_cookie", "otp"],
)
def test_names_that_look_secret(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize("name", ["host", "max_tokens", "author", "passes", "pin", "relay", "sessions", "keys_count"])
def test_names_that_do_not(name: str) -> None:
    assert not secret_name(name)


def test_long_values_are_cut_and_the_detail_is_capped() -> None:
    shown = shown_params({"text": "x" * 10_000, "rows": list(range(1000)), "deep": {"a": {"b": {"c": {"d": 1}}}}})
    assert len(shown["text"]) == 200 and shown["text"].endswith("\u2026")
    assert len(shown["rows"]) == 21 and shown["rows"][-1] == "... 980 more"
    assert shown["deep"] == {"a": {"b": {"c": "(...)"}}}
    assert shown_params({f"p{i}": i for i in range(150)})["..."] == "50 more"
    many = {f"p{i}": "y" * 199 for i in range(100)}
    detail = capped({"task": "t", "params": shown_params(many), "job": 1, "outcome": "accepted"})
    assert detail["task"] == "t" and detail["job"] == 1 and detail["params"].startswith("(left out: ")
    assert len(json.dumps(detail)) <= MAX_DETAIL
    app_detail = capped({"note": "z" * 10_000, "job": 2})
    assert app_detail["job"] == 2 and "note" not in app_detail and len(json.dumps(app_detail)) <= MAX_DETAIL


def test_passwords_inside_text_are_hidden(client: TestClient) -> None:
    dsn = {"host": "postgresql://bob:hunter2@db/x", "password": "", "options": {"odbc": "UID=u;PWD=hunter2;X=1"}}
    job = client.post("/api/tasks/connect/jobs", json=dsn).json()["id"]
    params = detail_of(f"job:{job}")["params"]
    assert params["host"] == f"postgresql://bob:{HIDDEN}@db/x"
    assert params["options"] == {"odbc": f"UID=u;PWD={HIDDEN};X=1"}
    assert shown_params({"q": "ann@example.org", "u": "https://x.org/?password=hunter2&b=1"}) == {
        "q": "ann@example.org",
        "u": f"https://x.org/?password={HIDDEN}&b=1",
    }
    # What closes a hidden password stays: a bracket, a quote, a comma, a semicolon.
    assert shown_params(
        {"call": "connect(password=hunter2)", "odbc": "PWD=hunter2;UID=y", "py": "{'pwd': 'hunter2', 'x': 1}"}
    ) == {
        "call": f"connect(password={HIDDEN})",
        "odbc": f"PWD={HIDDEN};UID=y",
        "py": f"{{'pwd': '{HIDDEN}', 'x': 1}}",
    }
    assert shown_params({"urls": ["(mysql://bob:hunter2@db), x", "pwd='hunter2'"]}) == {
        "urls": [f"(mysql://bob:{HIDDEN}@db), x", f"pwd='{HIDDEN}'"]
    }
    assert without_passwords("password=hunter2)") == f"password={HIDDEN})"
    assert_no_secret(client)
