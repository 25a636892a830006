"""Monitoring for both engines: processes that run jobs on any machine, queue depths, the last
hour's charts, /healthz and /metrics; the Celery side against a real `mieruka worker`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from fastapi.testclient import TestClient

import mieruka
from mieruka.core.clock import utcnow
from tests.celery_worker import CeleryWorker
from tests.conftest import ServerProcess, open_page, running_server, text_of, wait_for_file
from tests.servers.test_metrics import samples

if TYPE_CHECKING:
    from playwright.sync_api import Browser


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def test_nodes_stats_and_page_on_the_local_engine(app: mieruka.App, tmp_path: Path) -> None:
    with TestClient(app.asgi()) as client:
        for job in [
            client.post("/api/tasks/sleep/jobs", json={"seconds": 0.1}).json(),
            client.post("/api/tasks/fail/jobs", json={}).json(),
        ]:
            client.get(f"/api/jobs/{job['id']}", params={"wait": 30})
        running = client.post(
            "/api/tasks/sleep_in_child/jobs", json={"seconds": 30, "pidfile": str(tmp_path / "p")}
        ).json()
        wait_for_file(tmp_path / "p")
        # A worker on another machine that stopped beating a minute ago.
        app.engine.store.heartbeat(
            "gone",
            "elsewhere",
            4242,
            utcnow() - timedelta(minutes=1),
            {"kind": "celery", "name": "celery@elsewhere", "queues": ["gpu"], "concurrency": 8},
        )
        nodes = {n["id"]: n for n in client.get("/api/nodes").json()}
        me = nodes[app.engine.id]
        assert me["kind"] == "server" and me["up"] and me["this_server"] and me["concurrency"] == 2
        assert me["queues"] == ["*"] and me["running"] == [running["id"]]
        gone = nodes["gone"]
        assert not gone["up"] and gone["host"] == "elsewhere" and gone["queues"] == ["gpu"]
        assert gone["seconds_since_heartbeat"] >= 59

        stats = client.get("/api/stats", params={"minutes": 5}).json()
        assert stats["finished"] == 2 and len(stats["per_minute"]) == 5
        done = [m for m in stats["per_minute"] if m["succeeded"] or m["failed"]]
        assert sum(m["succeeded"] for m in done) == 1 and sum(m["failed"] for m in done) == 1
        assert all(m["run_avg"] is not None and m["wait_avg"] is not None for m in done)
        assert client.get("/api/stats", params={"minutes": 0}).status_code == 422

        page = client.get("/workers").text
        assert f'data-node="{app.engine.id}"' in page and 'data-node="gone"' in page
        assert page.count("<svg") == 2 and "2 in the last hour" in page
        assert "celery@elsewhere" in page and ">down<" in page

        metrics = samples(client.get("/metrics").text)
        assert metrics[("mieruka_queue_jobs", (("queue", "default"), ("state", "running")))] == 1
        assert metrics[("mieruka_nodes", (("kind", "celery"), ("state", "down")))] == 1
        assert metrics[("mieruka_nodes", (("kind", "server"), ("state", "up")))] == 1
        client.post(f"/api/jobs/{running['id']}/cancel")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "home", "--workers", "1") as proc:
        yield proc


def test_the_workers_page_in_a_browser_draws_its_charts_without_outside_requests(
    browser: Browser, server: ServerProcess
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        job = client.post("/api/tasks/add/jobs", json={"a": 1}).json()
        client.get(f"/api/jobs/{job['id']}", params={"wait": 30})
    outside: list[str] = []
    page = open_page(browser, server, outside)
    try:
        page.goto(f"{server.url}/workers")
        page.locator("#nodes tbody tr").first.wait_for()
        bars = page.locator("#throughput-chart svg rect")
        assert bars.count() == 1 and "1 finished" in text_of(bars.first.locator("title"))
        box = page.locator("#throughput-chart svg").bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 50
    finally:
        page.close()
    assert outside == []


# -- Celery --------------------------------------------------------------------------------------
def _celery_app(worker: CeleryWorker, **overrides: object) -> mieruka.App:
    return worker.jobs_app(**overrides)


def test_celery_workers_are_listed_with_their_queues_and_running_jobs(
    celery_worker: CeleryWorker, tmp_path: Path
) -> None:
    celery_worker.reset()
    app = _celery_app(celery_worker)
    try:
        with TestClient(app.asgi()) as client:
            job = client.post(
                "/api/tasks/sleep_in_child/jobs", json={"seconds": 30, "pidfile": str(tmp_path / "p")}
            ).json()
            wait_for_file(tmp_path / "p")
            nodes = [n for n in client.get("/api/nodes").json() if n["kind"] == "celery"]
            assert len(nodes) == 1
            node = nodes[0]
            assert node["up"] and node["queues"] == ["default"] and node["concurrency"] == 2
            assert node["pid"] == celery_worker.consumer_pid() and node["running"] == [job["id"]]
            assert node["name"].startswith("celery@")
            health = client.get("/healthz").json()
            assert health["status"] == "ok" and health["broker"] == "ok", health
            assert health["workers"] == {"total": 2, "ready": 2, "busy": 1}
            page = client.get("/workers").text
            assert "Celery worker" in page and f'href="/jobs/{job["id"]}"' in page
            client.post(f"/api/jobs/{job['id']}/cancel")
            deadline = time.monotonic() + 30
            while client.get(f"/api/jobs/{job['id']}").json()["status"] != "cancelled":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            added = client.post("/api/tasks/add/jobs", json={"a": 1}).json()
            assert client.get(f"/api/jobs/{added['id']}", params={"wait": 30}).json()["status"] == "succeeded"
            # The workers' events reach this server's metrics over Redis.
            # Each end travels on its own: wait for both, in whatever order they come.
            cancelled = ("mieruka_jobs_finished_total", (("state", "cancelled"), ("task", "sleep_in_child")))
            deadline = time.monotonic() + 30
            while True:
                metrics = samples(client.get("/metrics").text)
                if (
                    metrics.get(("mieruka_job_run_seconds_count", (("task", "add"),))) == 1
                    and metrics.get(cancelled) == 1
                ):
                    break
                assert time.monotonic() < deadline, metrics
                time.sleep(0.05)
            assert metrics[("mieruka_job_wait_seconds_count", (("task", "add"),))] == 1
            assert metrics[("mieruka_nodes", (("kind", "celery"), ("state", "up")))] == 1
    finally:
        app._settings = None


def test_healthz_fails_when_the_broker_is_down(celery_worker: CeleryWorker) -> None:
    app = _celery_app(celery_worker, broker_url="redis://127.0.0.1:1/0", event_bus=celery_worker.broker_url)
    try:
        with TestClient(app.asgi()) as client:
            response = client.get("/healthz")
            assert response.status_code == 503
            assert response.json()["status"] == "failing"
            assert response.json()["broker"].startswith("the broker does not answer")
    finally:
        app._settings = None


def test_healthz_is_degraded_while_no_celery_worker_is_up(broker_url: str, tmp_path: Path) -> None:
    from tests.conftest import fresh_postgres_database
    from tests.jobs import app

    with fresh_postgres_database("mieruka_noworker") as database_url:
        app._settings = None
        app.configure(
            home=str(tmp_path),
            database_url=database_url,
            executor="celery",
            broker_url=broker_url.rsplit("/", 1)[0] + "/4",
        )
        try:
            with TestClient(app.asgi()) as client:
                health = client.get("/healthz")
                assert health.status_code == 200, health.text
                assert health.json()["status"] == "degraded" and health.json()["broker"] == "ok"
                assert health.json()["workers"]["problem"] == "no Celery worker is up: jobs wait in the queue"
        finally:
            app._settings = None
