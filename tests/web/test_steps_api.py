"""Steps through the REST API: the list, one step, its log and artifacts, step events, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import mieruka
from mieruka.core.events import Event
from tests.web.test_api import assert_error, wait_done

pytestmark = pytest.mark.in_process  # jobs run on threads of this process: no worker interpreters to start


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def test_steps_logs_and_artifacts_of_a_pipeline_job(client: TestClient) -> None:
    job = client.post("/api/tasks/pipe_values/jobs", json={"text": "kiwi banana"}).json()
    done = wait_done(client, job["id"])
    assert done["status"] == "succeeded", done
    steps = client.get(f"/api/jobs/{job['id']}/steps").json()
    assert [s["name"] for s in steps] == ["count", "sort", "read"]
    sort = steps[1]
    assert sort["status"] == "succeeded" and sort["kind"] == "shell" and sort["depends_on"] == ["count"]
    assert sort["duration"] is not None
    # One shape for artifacts everywhere: the step's, the step's list and the job's are the same objects.
    job_artifacts = [a for a in client.get(f"/api/jobs/{job['id']}").json()["artifacts"] if a["name"] == "sorted.txt"]
    assert sort["artifacts"] == job_artifacts
    assert sort["artifacts"][0]["name"] == "sorted.txt" and sort["artifacts"][0]["size"] == len("banana\nkiwi\n")
    assert client.get(f"/api/jobs/{job['id']}/steps/sort").json()["artifacts"] == job_artifacts
    assert [a["name"] for a in steps[0]["artifacts"]] == ["words.txt"]
    assert steps[0]["output"] == {"words": 2, "first": "kiwi"}
    assert client.get(f"/api/jobs/{job['id']}/steps/count").json()["output"]["words"] == 2
    logs = client.get(sort["logs_url"]).json()
    assert [(line["text"], line["step"]) for line in logs["lines"]] == [("first word: kiwi", "sort")]
    text = client.get(f"/api/jobs/{job['id']}/steps/sort/logs", params={"format": "text"}).text
    assert text == "first word: kiwi\n"
    whole = client.get(f"/api/jobs/{job['id']}/logs", params={"format": "text"}).text
    assert "[sort] first word: kiwi\n" in whole
    assert client.get(f"/api/jobs/{job['id']}/steps/sort/artifacts").json() == job_artifacts
    schema = client.get("/openapi.json").json()["components"]["schemas"]["StepOut"]["properties"]["artifacts"]
    assert schema["items"] == {"$ref": "#/components/schemas/ArtifactOut"}
    got = client.get(f"/api/jobs/{job['id']}/steps/sort/artifacts/sorted.txt")
    assert got.status_code == 200 and got.text == "banana\nkiwi\n"
    assert_error(client.get(f"/api/jobs/{job['id']}/steps/sort/artifacts/words.txt"), 404, "artifact_not_found")
    assert_error(client.get(f"/api/jobs/{job['id']}/steps/nope"), 404, "step_not_found")
    assert_error(client.get(f"/api/jobs/{job['id']}/steps/nope/logs"), 404, "step_not_found")
    # a position no database integer holds (found by the fuzzer: it was a 500)
    assert client.get(f"/api/jobs/{job['id']}/steps/sort/logs", params={"after": 2**80}).status_code == 422
    assert_error(client.get("/api/jobs/999999/steps"), 404, "job_not_found")
    plain = client.post("/api/tasks/add/jobs", json={"a": 1, "b": 2}).json()
    wait_done(client, plain["id"])
    assert client.get(f"/api/jobs/{plain['id']}/steps").json() == []


def test_step_events_on_the_job_stream(client: TestClient, app: mieruka.App) -> None:
    seen: list[Event] = []
    unsubscribe = app.engine.bus.subscribe(seen.append, None)
    try:
        job = client.post("/api/tasks/pipe_values/jobs", json={}).json()
        wait_done(client, job["id"])
    finally:
        unsubscribe()
    mine = [e for e in seen if e.job_id == job["id"]]
    planned = [e for e in mine if e.kind == "steps"]
    assert planned and [s["name"] for s in planned[0].data["steps"]] == ["count", "sort", "read"]
    states = [(e.data["name"], e.data["status"]) for e in mine if e.kind == "step"]
    for name in ("count", "sort", "read"):
        assert states.index((name, "running")) < states.index((name, "succeeded"))
    progress = [e.data for e in mine if e.kind == "step" and e.data["name"] == "sort" and e.data["message"]]
    assert any(d["progress"] == 0.4 and d["message"] == "sorting" for d in progress)
    assert all(e.topic == f"job:{job['id']}" for e in mine)
    json.dumps([e.to_dict() for e in mine])  # every event can travel as JSON (SSE, Redis)


def test_snakemake_task_form_parameters(client: TestClient) -> None:
    pytest.importorskip("snakemake", reason="needs the snakemake extra")
    task = client.get("/api/tasks/snake_flow").json()
    props = task["params_schema"]["properties"]
    assert set(props) == {"targets", "config", "cores"}
    assert props["targets"]["default"] == ["report.txt"] and props["config"]["default"] == ["n=3"]
    job = client.post("/api/tasks/snake_flow/jobs", json={"config": ["n=2"], "cores": 1}).json()
    done = wait_done(client, job["id"])
    assert done["status"] == "succeeded", done
    steps = {s["name"]: s for s in client.get(f"/api/jobs/{job['id']}/steps").json()}
    assert {"numbers", "squares", "total"} <= set(steps)
    assert all(steps[n]["status"] == "succeeded" and steps[n]["parent"] == "snakemake" for n in ("numbers", "total"))
    bad = client.post("/api/tasks/snake_flow/jobs", json={"config": ["no equals sign"]})
    assert assert_error(bad, 422, "validation_error")["fields"][0]["field"].startswith("config")
    assert_error(client.post("/api/tasks/snake_flow/jobs", json={"cores": 0}), 422, "validation_error")
