"""Against a real server process on a free port: SSE with a real HTTP client, and crash safety."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mieruka.store.database import Database
from tests.conftest import ServerProcess, assert_collector_on, fresh_postgres_database, running_server, wait_for_file


def iter_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """SSE frames as dicts (comments skipped); the caller stops when it has seen enough."""
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if line == "":
            if "event" in current:
                yield current
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            current[key] = json.loads(value) if key == "data" else value


def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    events = []
    for event in iter_events(response):
        events.append(event)
        if len(events) >= count:
            break
    return events


def test_sse_job_stream_with_resume(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        # Delayed a little: on a busy machine the job could otherwise end before the stream opens.
        job = client.post("/api/tasks/noisy/jobs", params={"delay": 0.5}, json={"lines": 3}).json()
        with client.stream("GET", f"/api/jobs/{job['id']}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            assert "no-transform" in response.headers["cache-control"]
            events = []
            for event in iter_events(response):
                events.append(event)
                if event["event"] == "state" and event["data"]["status"] == "succeeded":
                    break
        kinds = [e["event"] for e in events]
        assert kinds[:2] == ["ready", "snapshot"]
        assert "log" in kinds and "progress" in kinds
        assert events[-1]["data"]["status"] == "succeeded"
        ids = [int(e["id"]) for e in events if "id" in e]
        assert ids == sorted(ids)
        log_lines = [line[2] for e in events if e["event"] == "log" for line in e["data"]["lines"]]
        assert "line 0" in log_lines
        # Reconnect after the first event with an id: the rest is replayed, in order, nothing lost.
        first_id = ids[0]
        with client.stream(
            "GET", f"/api/jobs/{job['id']}/events", headers={"Last-Event-ID": str(first_id)}
        ) as response:
            replayed = read_events(response, len(ids) - 1 + 2)  # + ready + snapshot
        replayed_ids = [int(e["id"]) for e in replayed if "id" in e]
        assert replayed_ids[: len(ids) - 1] == ids[1:]


def test_sse_all_jobs_stream_sees_jobs_submitted_later(server: ServerProcess) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/api/events", params={"task": "add"}) as response,
    ):
        submitted = [client.post("/api/tasks/add/jobs", json={"a": i}).json()["id"] for i in range(3)]
        finished = set()
        for event in iter_events(response):
            data = event["data"]
            if event["event"] == "ready":
                continue
            assert data["task"] == "add"
            if event["event"] == "state" and data["status"] == "succeeded":
                finished.add(data["job_id"])
            if finished == set(submitted):
                break
        assert finished == set(submitted)


def test_sse_heartbeat(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "home", "--workers", "1", env={"MIERUKA_HEARTBEAT_INTERVAL": "0.3"}) as proc,
        httpx.Client(base_url=proc.url, timeout=10) as client,
        client.stream("GET", "/api/events") as response,
    ):
        for line in response.iter_lines():  # the client's read time-out (10 s) bounds the wait
            if line == ": heartbeat":
                break


def test_kill_9_mid_run_then_restart_accounts_for_every_job(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_server(home, "--workers", "2") as first:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            finished = [client.post("/api/tasks/add/jobs", json={"a": i}).json()["id"] for i in range(3)]
            for job_id in finished:
                assert client.get(f"/api/jobs/{job_id}", params={"wait": 20}).json()["status"] == "succeeded"
            retried = client.post(
                "/api/tasks/fail_then_succeed/jobs", json={"marker": str(tmp_path / "never"), "failures": 0}
            ).json()["id"]
            client.get(f"/api/jobs/{retried}", params={"wait": 20})
            running = [client.post("/api/tasks/sleep/jobs", json={"seconds": 30}).json()["id"] for _ in range(2)]
            queued = [client.post("/api/tasks/add/jobs", json={"a": 100 + i}).json()["id"] for i in range(5)]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                states = [client.get(f"/api/jobs/{j}").json()["status"] for j in running]
                if states == ["running", "running"]:
                    break
                time.sleep(0.05)
            assert states == ["running", "running"]
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    # Worker processes notice their server died and end their jobs' process groups.
    time.sleep(0.5)
    with running_server(home, "--workers", "2") as second, httpx.Client(base_url=second.url, timeout=30) as client:
        for job_id in running:  # sleep has no retries: failed as interrupted
            job = client.get(f"/api/jobs/{job_id}", params={"wait": 20}).json()
            assert job["status"] == "failed" and "interrupted" in job["error"], job
        for job_id in queued:  # never started: they run after the restart
            job = client.get(f"/api/jobs/{job_id}", params={"wait": 20}).json()
            assert job["status"] == "succeeded", job
        listed = client.get("/api/jobs", params={"limit": 500}).json()["jobs"]
        assert len(listed) == 3 + 1 + 2 + 5
        assert not [j for j in listed if j["status"] in ("running", "queued")]


def test_interrupted_job_with_retries_left_is_requeued(tmp_path: Path) -> None:
    home = tmp_path / "home"
    marker = tmp_path / "count"
    with running_server(home, "--workers", "1") as first:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            job_id = client.post(
                "/api/tasks/sleep_in_child/jobs", json={"seconds": 30, "pidfile": str(tmp_path / "p")}
            ).json()["id"]
            retryable = client.post("/api/tasks/too_slow_retried/jobs", json={"seconds": 0}).json()["id"]
            wait_for_file(tmp_path / "p")
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    with running_server(home, "--workers", "1") as second, httpx.Client(base_url=second.url, timeout=30) as client:
        job = client.get(f"/api/jobs/{job_id}", params={"wait": 20}).json()
        assert job["status"] == "failed" and "interrupted" in job["error"]
        assert client.get(f"/api/jobs/{retryable}", params={"wait": 20}).json()["status"] == "succeeded"
    assert not marker.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_requeues_running_jobs(tmp_path: Path, signum: int) -> None:
    home = tmp_path / "home"
    with running_server(home, "--workers", "1") as first:
        with httpx.Client(base_url=first.url, timeout=30) as client:
            job_id = client.post(
                "/api/tasks/sleep_in_child/jobs", json={"seconds": 0.5, "pidfile": str(tmp_path / "p")}
            ).json()["id"]
            wait_for_file(tmp_path / "p")
        first.process.send_signal(signum)
        assert first.process.wait(timeout=20) in (0, -signum), first.output()  # uvicorn re-raises the signal
    with running_server(home, "--workers", "1") as second, httpx.Client(base_url=second.url, timeout=30) as client:
        job = client.get(f"/api/jobs/{job_id}", params={"wait": 20}).json()
        assert job["status"] == "succeeded" and job["attempts"] == 1, job


def test_two_servers_share_live_events_through_redis(tmp_path: Path) -> None:
    """Behind a load balancer: a job submitted to one server is seen live on the other's stream."""
    from tests.conftest import need_service

    try:
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except Exception as exc:
        need_service(f"Redis is not reachable at 127.0.0.1:6379: {exc}")
    env = {
        "MIERUKA_EVENT_BUS": "redis://127.0.0.1:6379/0",
        "MIERUKA_DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
    }
    with (
        running_server(tmp_path / "a", "--workers", "1", env=env) as first,
        running_server(tmp_path / "b", "--workers", "1", env=env) as second,
        httpx.Client(timeout=30) as client,
        client.stream("GET", f"{second.url}/api/events", params={"task": "add"}) as response,
    ):
        job = client.post(f"{first.url}/api/tasks/add/jobs", json={"a": 5}).json()
        for event in iter_events(response):
            if (
                event["event"] == "state"
                and event["data"]["job_id"] == job["id"]
                and event["data"]["status"] == "succeeded"
            ):
                break
        assert client.get(f"{second.url}/api/jobs/{job['id']}").json()["result"] == 7


@pytest.mark.parametrize("executor", ["threads", "local"])
def test_jobs_run_with_the_collector_on_and_the_start_frozen(tmp_path: Path, executor: str) -> None:
    """The server starts with the collector paused (cli._dispatch): it is on again once it serves, in
    the server (threads) and in the zygote's workers (local), with what the start made frozen."""
    with running_server(tmp_path / "home", "--workers", "1", env={"MIERUKA_EXECUTOR": executor}) as server:
        assert_collector_on(server)


LEAN_APP = '''
import sys
import time

import mieruka
from mieruka import charts

app = mieruka.App("lean")


@app.task
def loaded(names: list[str]) -> list[str]:
    """Which of `names` the server's process has imported (the threads executor runs it there)."""
    return [name for name in names if name in sys.modules]


@app.task
def load(name: str) -> bool:
    """Import `name` in the server's process: the probe's own check that `loaded` can tell."""
    __import__(name)
    return True


@app.task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.stream(every=None, window="1h")
def points():
    yield {"time": 0.0, "y": 1.0}


app.dashboard("main", [charts.stream(points)])
'''
HEAVY = ["sqlalchemy", "alembic"]


def _heartbeats(url: str) -> object:
    db = Database(url)
    try:
        return db.rows("SELECT max(heartbeat_at) FROM engines")[0][0]
    finally:
        db.close()


@pytest.mark.parametrize(
    ("backend", "caller"), [("sqlite", "open"), ("sqlite", "token"), ("postgres", "token")], ids="-".join
)
def test_a_server_serves_pages_and_jobs_and_idles_without_sqlalchemy(tmp_path: Path, backend: str, caller: str) -> None:
    """SQLAlchemy is a quarter of a server's start and 12 MB: the store's statements are plain SQL
    (store/database.py), and starting (on PostgreSQL, its schema check too), pages, listings and
    jobs (of the open mode's caller, or of a user's API token: the token, the user's language,
    presence), and idling (the engine's beats, retention, the notifier's rounds, stream history) need
    none of it."""
    app_file = tmp_path / "lean_app.py"
    app_file.write_text(LEAN_APP)
    home = tmp_path / "home"
    env = {
        "MIERUKA_EXECUTOR": "threads",
        "MIERUKA_HEARTBEAT_INTERVAL": "0.2",
        "MIERUKA_NOTIFY_POLL_INTERVAL": "0.1",
        "MIERUKA_POLL_INTERVAL": "0.1",  # the engine's polls while a job runs: cancels asked elsewhere
    }
    url = f"sqlite:///{home / 'mieruka.db'}"
    with contextlib.ExitStack() as stack:
        if backend == "postgres":
            url = stack.enter_context(fresh_postgres_database("mieruka_lean"))
            made = Database(url)
            made.migrate()  # the schema at its newest: the server's start only checks it
            made.close()
            env["MIERUKA_DATABASE_URL"] = url
        _serve_a_lean_day(app_file, home, env, url, caller)


def _serve_a_lean_day(app_file: Path, home: Path, env: dict[str, str], url: str, caller: str) -> None:
    headers = {}
    if caller == "token":
        made = {**os.environ, "MIERUKA_HOME": str(home), **env}
        cli = [sys.executable, "-m", "mieruka.cli"]
        subprocess.run([*cli, "users", "add", "ann", "--role", "operator", "--no-password"], env=made, check=True)
        made_token = [*cli, "tokens", "create", "--user", "ann", "--name", "lean"]
        secret = subprocess.run(made_token, env=made, check=True, capture_output=True, text=True).stdout.split()[-1]
        headers = {"Authorization": f"Bearer {secret}"}
    with (
        running_server(home, app_ref=f"{app_file}:app", env=env) as server,
        httpx.Client(base_url=server.url, timeout=30, headers=headers) as client,
    ):
        page = client.get("/dashboards/main", headers={"Accept": "text/html"})
        assert page.status_code == 200 and ("ann" in page.text) == (caller == "token")
        first = _heartbeats(url)
        deadline = time.monotonic() + 30
        beats = {first}
        while len(beats) < 3 and time.monotonic() < deadline:  # the engine's rounds of upkeep
            beats.add(_heartbeats(url))
            time.sleep(0.05)
        assert len(beats) >= 3, beats
        assert client.post("/api/tasks/nap/run", json={"seconds": 1}).json()["result"] == 1
        run = client.post("/api/tasks/loaded/run", json={"names": HEAVY})
        assert run.status_code == 200 and run.json()["result"] == [], run.text
        job = client.post("/api/tasks/loaded/jobs", json={"names": HEAVY}).json()
        assert client.get(f"/api/jobs/{job['id']}", params={"wait": 30}).json()["result"] == []
        # The pages and listings of a user's day: none of them needs SQLAlchemy either.
        for path in ("/dashboards/main", "/jobs", f"/jobs/{job['id']}", "/api/jobs", f"/api/jobs/{job['id']}/logs"):
            assert client.get(path).status_code == 200, path
        if caller == "token":
            assert client.get("/api/me").status_code == 200
        again = client.post("/api/tasks/loaded/run", json={"names": HEAVY})
        assert again.json()["result"] == [], again.text
        # The probe can tell: a module the server's process imported is seen.
        assert client.post("/api/tasks/load/run", json={"name": "sqlalchemy"}).json()["result"] is True
        again = client.post("/api/tasks/loaded/run", json={"names": HEAVY})
        assert again.json()["result"] == ["sqlalchemy"], again.text
