"""Uploads belong to their uploader, and Idempotency-Key is per user and task, on a real server
(SQLite and PostgreSQL) with operators made by the CLI: another operator naming someone's upload
is refused and the victim's queued job still reads its file; a file is deleted with the last job
that uses it; one key submitted at once by many threads makes one job per user and task."""

from __future__ import annotations

import base64
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import mieruka
from mieruka.errors import JobNotFound
from tests.conftest import BACKENDS, ServerProcess, fresh_postgres_database, shared_server

FINISHED = {"succeeded", "failed", "cancelled"}


@dataclass
class Lab:
    server: ServerProcess
    tokens: dict[str, dict[str, str]]  # user name -> its Authorization header

    def post(self, user: str, path: str, **kw: Any) -> httpx.Response:
        headers = {**self.tokens[user], **kw.pop("headers", {})}
        return httpx.post(f"{self.server.url}{path}", headers=headers, timeout=60, **kw)

    def get(self, user: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(f"{self.server.url}{path}", headers=self.tokens[user], timeout=60, **kw)

    def delete(self, user: str, path: str) -> httpx.Response:
        return httpx.delete(f"{self.server.url}{path}", headers=self.tokens[user], timeout=60)

    def wait(self, user: str, job_id: int) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job: dict[str, Any] = self.get(user, f"/api/jobs/{job_id}", params={"wait": 10}).json()
            if job["status"] in FINISHED:
                return job
        raise AssertionError(f"job {job_id} never finished")

    def upload_folder(self, upload_id: str) -> Path:
        return self.server.home / "uploads" / upload_id


@pytest.fixture(scope="module", params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A server with one worker; operators alice and bob, admin ada, each with an API token."""
    home = tmp_path_factory.mktemp(f"uploads-{request.param}") / "home"
    with _database(request.param, home) as database_url:
        # The accounts are made in this process: `mieruka users add` and `tokens create` have tests of
        # their own (test_cli), and six CLI processes cost this fixture half its time.
        setup = mieruka.App("setup", home=str(home), database_url=database_url)
        setup.auth.db.migrate()
        tokens = {}
        for user, role in (("alice", "operator"), ("bob", "operator"), ("ada", "admin")):
            setup.auth.accounts.add_user(user, role, None)
            tokens[user] = {"Authorization": f"Bearer {setup.auth.accounts.create_token(user, 'tests')[1]}"}
        setup.stop()
        proc = ServerProcess("tests/jobs.py:app", home, "--workers", "1", "--database-url", database_url)
        with shared_server(proc, request) as server:
            yield Lab(server, tokens)


def _database(backend: str, home: Path) -> Any:
    if backend == "postgres":
        return fresh_postgres_database("mieruka_uploads_own")
    from contextlib import nullcontext

    return nullcontext(f"sqlite:///{home / 'mieruka.db'}")


def file_json(name: str, content: bytes) -> dict[str, str]:
    return {"filename": name, "content_base64": base64.b64encode(content).decode()}


def test_another_operator_cannot_use_someones_upload(lab: Lab) -> None:
    """The attack: bob names alice's upload (its id is in her job's parameters) in a job of his
    own, to have it deleted with that job. Refused, naming the field; nothing queued; alice's
    queued job still runs with her file; she may run it again with the same file."""
    blocker = lab.post("alice", "/api/tasks/sleep/jobs", json={"seconds": 600}).json()
    queued = lab.post(
        "alice", "/api/tasks/read_upload/jobs", files=[("document", ("secret.txt", b"alice's data", "text/plain"))]
    )
    assert queued.status_code == 202, queued.text
    victim = queued.json()
    ref = victim["params"]["document"]
    assert lab.upload_folder(ref["upload_id"]).is_dir()
    before = {job["id"] for job in lab.get("ada", "/api/jobs", params={"limit": 500}).json()["jobs"]}
    uploads_before = set(os.listdir(lab.server.home / "uploads"))

    refused = lab.post("bob", "/api/tasks/read_upload/jobs", json={"document": ref})
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["fields"] == [{"field": "document", "message": error["fields"][0]["message"]}]
    assert "another user" in error["message"] and error["message"].startswith("document:")
    # With a file of his own besides: refused too, and his file is not kept.
    mixed = lab.post(
        "bob", "/api/tasks/read_upload/jobs", json={"document": file_json("mine.txt", b"bob"), "extra": [ref]}
    )
    assert mixed.status_code == 422 and mixed.json()["error"]["fields"][0]["field"] == "extra", mixed.text
    # With a key, or as an admin: the same (an upload is its uploader's; an admin re-sends the file).
    keyed = lab.post("bob", "/api/tasks/read_upload/jobs", json={"document": ref}, headers={"Idempotency-Key": "steal"})
    assert keyed.status_code == 422
    assert lab.post("ada", "/api/tasks/read_upload/jobs", json={"document": ref}).status_code == 422
    after = {job["id"] for job in lab.get("ada", "/api/jobs", params={"limit": 500}).json()["jobs"]}
    assert after == before, "a refused job must not be queued"
    assert set(os.listdir(lab.server.home / "uploads")) == uploads_before

    rerun = lab.post("alice", "/api/tasks/read_upload/jobs", json={"document": ref})
    assert rerun.status_code == 202, rerun.text
    assert lab.get("alice", f"/api/jobs/{victim['id']}").json()["status"] == "queued"
    assert lab.post("alice", f"/api/jobs/{blocker['id']}/cancel").status_code == 200
    for job_id in (victim["id"], rerun.json()["id"]):
        done = lab.wait("alice", job_id)
        assert done["status"] == "succeeded", done
        assert done["result"]["text"] == "alice's data"

    # The file goes with the last job that uses it.
    assert lab.delete("alice", f"/api/jobs/{victim['id']}").status_code == 204
    assert lab.upload_folder(ref["upload_id"]).is_dir()
    assert lab.delete("alice", f"/api/jobs/{rerun.json()['id']}").status_code == 204
    assert not lab.upload_folder(ref["upload_id"]).exists()
    gone = lab.post("alice", "/api/tasks/read_upload/jobs", json={"document": ref})
    assert gone.status_code == 422 and gone.json()["error"]["fields"][0]["field"] == "document"


def test_one_key_at_once_makes_one_job_per_user_and_task(lab: Lab) -> None:
    """Twenty submissions at the same moment with one Idempotency-Key: alice's on one task get one
    job; bob's with the same key, and alice's on another task, get jobs of their own."""
    senders = [("alice", "add")] * 10 + [("bob", "add")] * 5 + [("alice", "quick_hello")] * 5
    start = threading.Barrier(len(senders))
    body = {"add": {"a": 1}, "quick_hello": {"name": "x"}}

    def send(sender: tuple[str, str]) -> tuple[str, str, int, int]:
        user, task = sender
        start.wait(timeout=60)
        response = lab.post(user, f"/api/tasks/{task}/jobs", json=body[task], headers={"Idempotency-Key": "once"})
        job = response.json()
        assert job["owner"] == user and job["task"] == task, job
        return user, task, job["id"], response.status_code

    with ThreadPoolExecutor(len(senders)) as pool:
        results = list(pool.map(send, senders))
    jobs: dict[tuple[str, str], set[int]] = {}
    for user, task, job_id, _ in results:
        jobs.setdefault((user, task), set()).add(job_id)
    assert {scope: len(found) for scope, found in jobs.items()} == {
        ("alice", "add"): 1,
        ("bob", "add"): 1,
        ("alice", "quick_hello"): 1,
    }
    assert len(set().union(*jobs.values())) == 3
    for scope in jobs:
        statuses = sorted(code for user, task, _, code in results if (user, task) == scope)
        assert statuses.count(202) == 1 and set(statuses) <= {200, 202}, (scope, statuses)


def test_pruning_one_of_two_jobs_sharing_an_upload_keeps_the_file(app: Any) -> None:
    """The open mode (no accounts, owner None): a rerun with the same file is allowed; retention
    deletes the file only with the last job that uses it."""
    from fastapi.testclient import TestClient

    with TestClient(app.asgi()) as client:
        first = client.post("/api/tasks/read_upload/jobs", files=[("document", ("a.txt", b"abc", "text/plain"))])
        ref = first.json()["params"]["document"]
        again = client.post("/api/tasks/read_upload/jobs", json={"document": ref, "extra": [ref]})
        assert (first.status_code, again.status_code) == (202, 202), again.text
        for job in (first.json(), again.json()):
            assert client.get(f"/api/jobs/{job['id']}", params={"wait": 60}).json()["status"] == "succeeded"
    folder = app.settings.home_path / "uploads" / ref["upload_id"]
    app.engine.settings = app.settings.with_overrides(retention_max_jobs=1)
    app.engine._prune()
    with pytest.raises(JobNotFound):
        app.get_job(first.json()["id"])
    assert app.get_job(again.json()["id"]).status.value == "succeeded"
    assert folder.is_dir()
    app.engine.settings = app.settings.with_overrides(retention_max_jobs=0)
    app.engine._prune()
    assert not folder.exists()
