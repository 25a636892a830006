"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import mieruka
from tests.conftest import ServerProcess


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_jobs_workers_and_durations(app: mieruka.App) -> None:
    with TestClient(app.asgi()) as client:
        ok = client.post("/api/tasks/sleep/jobs", json={"seconds": 0.2}).json()
        bad = client.post("/api/tasks/fail/jobs", json={}).json()
        for job in (ok, bad):
            client.get(f"/api/jobs/{job['id']}", params={"wait": 30})
        response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found[("mieruka_jobs", (("state", "succeeded"),))] == 1
    assert found[("mieruka_jobs", (("state", "failed"),))] == 1
    assert found[("mieruka_jobs_finished_total", (("state", "succeeded"), ("task", "sleep")))] == 1
    assert found[("mieruka_jobs_finished_total", (("state", "failed"), ("task", "fail")))] == 1
    assert found[("mieruka_job_run_seconds_count", (("task", "sleep"),))] == 1
    assert found[("mieruka_job_run_seconds_sum", (("task", "sleep"),))] >= 0.2
    assert found[("mieruka_job_wait_seconds_count", (("task", "sleep"),))] == 1
    workers = sum(v for (name, _), v in found.items() if name == "mieruka_workers")
    assert workers == 2


def test_metrics_count_open_event_streams(server: ServerProcess) -> None:
    def streams() -> float:
        text = httpx.get(f"{server.url}/metrics").text
        return samples(text)[("mieruka_sse_clients", ())]

    assert streams() == 0
    with httpx.Client(timeout=10) as client, client.stream("GET", f"{server.url}/api/events") as response:
        lines = response.iter_lines()  # kept: a dropped iterator closes the stream
        assert next(lines).startswith("retry")
        assert streams() == 1
    deadline = time.monotonic() + 30
    while streams() != 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert streams() == 0
