"""examples/analysis_service end to end (scenario 5): uploaded FASTA files, a real blastn run as
pipeline steps, an HTML report; submitted through the API and through the form in a browser with
the same result; the Snakefile variant too. One server for the module."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import ServerProcess, need_service, open_page, shared_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

EXAMPLE = Path(__file__).parents[2] / "examples" / "analysis_service"
DATA = EXAMPLE / "data"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    if not shutil.which("blastn") or not shutil.which("makeblastdb"):
        need_service("NCBI BLAST+ is not installed (apt-get install ncbi-blast+)")
    home = tmp_path_factory.mktemp("analysis") / "home"
    with shared_server(ServerProcess(str(EXAMPLE / "app.py"), home, "--workers", "2"), request) as proc:
        yield proc


def submit(
    service: ServerProcess, task: str, preset: str, queries: bytes | None = None, **extra: str
) -> dict[str, Any]:
    files = [
        ("queries", ("queries.fa", queries or (DATA / "queries.fa").read_bytes(), "text/plain")),
        ("subjects", ("subjects.fa", (DATA / "subjects.fa").read_bytes(), "text/plain")),
    ]
    response = httpx.post(
        f"{service.url}/api/tasks/{task}/jobs", files=files, data={"preset": preset, **extra}, timeout=30
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def finished(service: ServerProcess, job_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = httpx.get(f"{service.url}/api/jobs/{job_id}", params={"wait": 20}, timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
    raise AssertionError(f"job {job_id} did not finish")


def steps(service: ServerProcess, job_id: int) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in httpx.get(f"{service.url}/api/jobs/{job_id}/steps").json()}


@pytest.fixture(scope="module")
def api_result(service: ServerProcess) -> dict[str, Any]:
    job = finished(service, submit(service, "blast_search", "sensitive")["id"])
    assert job["status"] == "succeeded", job
    return job


def test_api_submission_runs_blast_as_steps_and_renders_a_report(
    service: ServerProcess, api_result: dict[str, Any]
) -> None:
    best = {hit["query"]: hit["subject"] for hit in api_result["result"]["best_hits"]}
    assert best == {"read_a": "gene2", "read_b": "gene4", "read_c": None}  # sensitive finds the mutated read
    found = steps(service, api_result["id"])
    assert list(found) == ["validate", "makeblastdb", "blastn", "report"]
    assert all(s["status"] == "succeeded" and s["duration"] is not None for s in found.values())
    assert found["blastn"]["depends_on"] == ["validate", "makeblastdb"]
    assert found["validate"]["output"] == {"queries": 3, "subjects": 5}
    log = httpx.get(f"{service.url}/api/jobs/{api_result['id']}/steps/blastn/logs").json()["lines"]
    assert log and log[-1]["text"].endswith(" hits")
    report = httpx.get(f"{service.url}/api/jobs/{api_result['id']}/steps/report/artifacts/report.html")
    assert report.status_code == 200 and "gene4" in report.text and "<h1>BLAST report</h1>" in report.text


def test_fast_preset_is_a_different_configuration(service: ServerProcess) -> None:
    job = finished(service, submit(service, "blast_search", "fast")["id"])
    best = {hit["query"]: hit["subject"] for hit in job["result"]["best_hits"]}
    assert best == {"read_a": "gene2", "read_b": None, "read_c": None}


def test_the_form_in_a_browser_gives_the_same_result(
    browser: Browser, service: ServerProcess, api_result: dict[str, Any]
) -> None:
    outside: list[str] = []
    page = open_page(browser, service, outside)
    try:
        page.goto(f"{service.url}/tasks/blast_search")
        page.locator('[name="queries"]').set_input_files(str(DATA / "queries.fa"))
        page.locator('[name="subjects"]').set_input_files(str(DATA / "subjects.fa"))
        page.locator('[name="preset"]').select_option("sensitive")
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url("**/jobs/*")
        job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        page.locator('#job-panel [data-field="status"]', has_text="succeeded").wait_for(timeout=60_000)
        # the steps list and graph update live: every step ends succeeded
        page.locator('#steps details[data-step="report"][data-status="succeeded"]').wait_for(timeout=30_000)
        badges = page.locator("#steps details[data-step] [data-field='status']").all_text_contents()
        assert badges == ["succeeded"] * 4
        assert page.locator("#steps svg .node").count() == 4
        # a step's log on demand
        page.locator('#steps details[data-step="validate"] summary').click()
        page.locator('#steps pre[data-step-log="validate"]', has_text="3 queries, 5 subjects").wait_for()
        assert outside == [], f"the page reached outside the server: {outside}"
    finally:
        page.close()
    job = finished(service, job_id)
    assert job["result"] == api_result["result"]
    assert [a["name"] for a in job["artifacts"]] == ["report.html"]


def test_snakemake_variant_gives_the_same_result(service: ServerProcess, api_result: dict[str, Any]) -> None:
    pytest.importorskip("snakemake", reason="needs the snakemake extra")
    job = finished(service, submit(service, "blast_search_snakemake", "sensitive", cores="2")["id"])
    assert job["status"] == "succeeded", job
    assert job["result"] == api_result["result"]
    found = steps(service, job["id"])
    rules = [name for name, s in found.items() if s["kind"] == "rule"]
    assert rules[:1] == ["validate"] and set(rules) == {"validate", "makeblastdb", "blastn", "report"}
    assert all(found[r]["status"] == "succeeded" and found[r]["parent"] == "snakemake" for r in rules)
    assert found["blastn"]["depends_on"] == ["makeblastdb", "validate"]


def test_invalid_fasta_fails_at_validation_with_the_reason(service: ServerProcess) -> None:
    job = finished(service, submit(service, "blast_search", "fast", queries=b">q1\nACGTXZ\n")["id"])
    assert job["status"] == "failed"
    assert "queries.fa line 2: unexpected character 'X'" in job["error"]
    found = steps(service, job["id"])
    assert found["validate"]["status"] == "failed"
    assert found["blastn"]["status"] == "skipped" and found["report"]["status"] == "skipped"
    # makeblastdb waits on validate's output: it never ran either
    assert found["makeblastdb"]["status"] == "skipped"
