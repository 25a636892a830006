"""A tutorial-style Snakefile (input/output/params/log/threads, a wildcard over three samples, a
`run:` rule, an `expand()` target, a `configfile:`) served by a real server whose current folder
is not the app's, through the real snakemake: the workflow runs as `snakemake` would in its own
folder, each job in a folder of its own; failures name the rule; the job counts rule steps; the
step graph draws the workflow's DAG; every rule's stdout and stderr reach its own step."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import TESTS, ServerProcess, open_page, shared_server
from tests.servers.test_server import iter_events

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytest.importorskip("snakemake", reason="needs the snakemake extra: pip install 'mieruka[snakemake]'")

TUTORIAL = TESTS / "workflow" / "tutorial"
SAMPLES = ("A", "B", "C")
RULES = 1 + 3 * 3 + 2  # all; map_reads, sort and count per sample; merge; plot_quals


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    # The server's current folder is the repository, not tests/workflow: every path in the app is relative.
    home = tmp_path_factory.mktemp("tutorial") / "home"
    proc = ServerProcess("tests/workflow/tutorial_app.py", home, "--workers", "2")
    with shared_server(proc, request) as running:
        yield running


@pytest.fixture(scope="module")
def whole(server: ServerProcess) -> tuple[list[Path], dict[str, Any]]:
    """One run of the whole workflow, for the tests that read a finished one: the tutorial folder's
    files before it, and the job."""
    before = sorted(p.relative_to(TUTORIAL) for p in TUTORIAL.rglob("*"))
    return before, run(server, "tutorial")


@pytest.fixture(scope="module")
def failed(server: ServerProcess) -> dict[str, Any]:
    """A run whose map_reads of sample B fails."""
    return run(server, "tutorial", {"config": ["fail=B"]})


def run(server: ServerProcess, task: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The finished job."""
    job = httpx.post(f"{server.url}/api/tasks/{task}/jobs", json=params or {}, timeout=30).json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record: dict[str, Any] = httpx.get(f"{server.url}/api/jobs/{job['id']}", params={"wait": 30}, timeout=60).json()
        if record["status"] in ("succeeded", "failed", "cancelled"):
            return record
    raise AssertionError(f"job {job['id']} did not finish")


def run_heard(server: ServerProcess, task: str, params: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The finished job and each progress message it told, in order: heard on the task's event
    stream, open before the job is queued (however slow the machine, none is missed)."""
    messages: list[str] = []
    with (
        httpx.Client(base_url=server.url, timeout=httpx.Timeout(30, read=120)) as client,
        client.stream("GET", "/api/events", params={"task": task}) as stream,
    ):
        frames = iter_events(stream)
        assert next(frames)["event"] == "ready"  # subscribed: what the job tells from now on comes here
        job = client.post(f"/api/tasks/{task}/jobs", json=params).json()
        for frame in frames:
            data = frame["data"]
            if data.get("job_id") != job["id"]:
                continue
            if frame["event"] == "progress" and data.get("message"):
                messages.append(data["message"])
            if frame["event"] == "state" and data.get("status") in ("succeeded", "failed", "cancelled"):
                break
        return client.get(f"/api/jobs/{job['id']}").json(), messages


def steps_of(server: ServerProcess, job_id: int) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in httpx.get(f"{server.url}/api/jobs/{job_id}/steps", timeout=30).json()}


def log_of(server: ServerProcess, job_id: int, step: str) -> list[tuple[str, str]]:
    page = httpx.get(f"{server.url}/api/jobs/{job_id}/steps/{step}/logs", params={"limit": 10000}, timeout=30)
    return [(line["stream"], line["text"]) for line in page.json()["lines"]]


def test_the_workflow_runs_as_in_its_folder_with_a_step_per_rule(
    server: ServerProcess, whole: tuple[list[Path], dict[str, Any]]
) -> None:
    before, done = whole
    assert done["status"] == "succeeded", done["error"]
    # configfile: config.yaml and the data/ inputs were found; nothing was written beside the Snakefile.
    assert sorted(p.relative_to(TUTORIAL) for p in TUTORIAL.rglob("*")) == before
    steps = steps_of(server, done["id"])
    rules = {n: s for n, s in steps.items() if s["kind"] == "rule"}
    assert len(rules) == RULES and all(s["status"] == "succeeded" for s in rules.values()), rules.keys()
    assert done["message"] == f"{RULES}/{RULES} steps done"
    # The DAG Snakemake reported, rule execution by rule execution.
    for sample in SAMPLES:
        assert rules[f"sort[sample={sample}]"]["depends_on"] == [f"map_reads[sample={sample}]"]
        assert rules[f"count[sample={sample}]"]["depends_on"] == [f"sort[sample={sample}]"]
        assert rules[f"map_reads[sample={sample}]"]["depends_on"] == []
    assert rules["merge"]["depends_on"] == [f"sort[sample={s}]" for s in SAMPLES]
    assert rules["all"]["depends_on"] == sorted([f"count[sample={s}]" for s in SAMPLES] + ["plot_quals"])
    # A rule's stderr reaches its step.
    for sample in SAMPLES:
        mapped = log_of(server, done["id"], f"map_reads[sample={sample}]")
        assert ("stderr", f"mapping {sample} with 2 threads") in mapped, mapped
        assert ("stdout", "no reads could be mapped") not in mapped
    workflow = [text for _, text in log_of(server, done["id"], "snakemake")]
    assert not any(t == f"mapping {s} with 2 threads" for s in SAMPLES for t in workflow)
    assert any("Finished jobid" in t for t in workflow)  # Snakemake's own messages stay the workflow's
    everything = httpx.get(f"{server.url}/api/jobs/{done['id']}/logs", params={"limit": 10000}, timeout=30).json()
    for sample in SAMPLES:
        for text, step in (
            (f"counted {sample}", f"count[sample={sample}]"),
            (f"sorted {sample}", f"sort[sample={sample}]"),
        ):
            assert [line["step"] for line in everything["lines"] if line["text"] == text] == [step], text


def test_rules_running_side_by_side_keep_their_own_lines(server: ServerProcess) -> None:
    # "together": sort and count of A and B wait for each other, so each pair surely overlaps (one
    # waits on a core while the other's map_reads, threads: 2, runs: three cores at least).
    done, seen = run_heard(server, "tutorial", {"config": ["together=true", "pause=2"], "cores": 4})
    assert done["status"] == "succeeded", done["error"]
    # The job counts the workflow's rules from Snakemake's plan on, before any rule ended (not "0/1").
    first = next((i for i, m in enumerate(seen) if m.startswith(f"0/{RULES} steps done")), None)
    assert first is not None, seen
    planned = seen[first:]
    # ... naming the rules running: "3/12 steps done; running map_reads[sample=B]".
    assert all(re.match(rf"\d+/{RULES} steps done(; running .+)?$", m) for m in planned), sorted(set(planned))
    assert any("; running map_reads[sample=" in m for m in planned), sorted(set(planned))
    steps = steps_of(server, done["id"])
    for kind in ("sort", "count"):
        a, b = steps[f"{kind}[sample=A]"], steps[f"{kind}[sample=B]"]
        assert a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"], (a, b)  # side by side
    lines = httpx.get(f"{server.url}/api/jobs/{done['id']}/logs", params={"limit": 10000}, timeout=30).json()["lines"]
    for sample in SAMPLES:  # a shell rule's process and a run: block's thread alike
        for text, step in (
            (f"counted {sample}", f"count[sample={sample}]"),
            (f"sorted {sample}", f"sort[sample={sample}]"),
        ):
            assert [(line["step"], line["stream"]) for line in lines if line["text"] == text] == [(step, "stdout")]


def test_each_job_writes_into_a_folder_of_its_own(server: ServerProcess) -> None:
    first = run(server, "tutorial", {"config": ['samples=["A"]'], "cores": 1})
    second = run(server, "tutorial", {"config": ['samples=["A"]'], "cores": 1})
    for done in (first, second):
        assert done["status"] == "succeeded", done["error"]
        rules = [n for n, s in steps_of(server, done["id"]).items() if s["kind"] == "rule"]
        # The second job ran every rule again: it did not find the first one's outputs.
        assert sorted(rules) == [
            "all",
            "count[sample=A]",
            "map_reads[sample=A]",
            "merge",
            "plot_quals",
            "sort[sample=A]",
        ]
        assert done["message"] == "6/6 steps done"
        # One rule at a time: each line is its rule's, whatever pipe it came on (stdout of a run:
        # block or a shell, stderr of a shell), however the reading threads are scheduled.
        assert log_of(server, done["id"], "count[sample=A]") == [("stdout", "counted A")]
        assert log_of(server, done["id"], "sort[sample=A]") == [("stdout", "sorted A")]
        assert log_of(server, done["id"], "map_reads[sample=A]") == [("stderr", "mapping A with 1 threads")]


def test_a_failing_rule_is_named_with_its_wildcards_and_log(server: ServerProcess, failed: dict[str, Any]) -> None:
    done = failed
    assert done["status"] == "failed"
    error = done["error"]
    assert "rule map_reads (sample=B) failed" in error and "map_reads: cannot map B" in error, error
    assert "logs/map_reads/B.log" in error and "map_reads[sample=B]" in error, error
    steps = steps_of(server, done["id"])
    failed = steps["map_reads[sample=B]"]
    assert failed["status"] == "failed" and "logs/map_reads/B.log" in failed["error"]
    log = [text for _, text in log_of(server, done["id"], "map_reads[sample=B]")]
    assert "no reads could be mapped" in log and "map_reads: cannot map B" in log  # its log: file and stderr
    assert steps["snakemake"]["status"] == "failed" and "rule map_reads (sample=B)" in steps["snakemake"]["error"]


def test_snakemakes_own_message_reaches_the_job(server: ServerProcess) -> None:
    done = run(server, "tutorial_elsewhere")
    assert done["status"] == "failed"
    assert "configfile config.yaml but it is not present" in done["error"], done["error"]
    assert "KeyError" not in done["error"]
    # A key the Snakefile reads is missing from the config: Snakemake's message says where, not a bare KeyError.
    done = run(server, "tutorial_no_samples")
    assert done["status"] == "failed"
    assert f'snakemake: KeyError in file "{TUTORIAL / "Snakefile"}", line' in done["error"], done["error"]
    assert "'samples'" in done["error"]


def test_python_steps_import_the_app_from_their_own_folder(server: ServerProcess) -> None:
    done = run(server, "tutorial_then_python")
    assert done["status"] == "succeeded", done["error"]
    assert done["result"] == {"A": 3, "B": 3, "C": 3}
    assert done["message"] == f"{RULES + 1}/{RULES + 1} steps done"  # the rules and the Python step


def test_the_job_page_counts_rules_and_draws_the_dag(
    browser: Browser, server: ServerProcess, whole: tuple[list[Path], dict[str, Any]], failed: dict[str, Any]
) -> None:
    done = whole[1]
    assert done["status"] == "succeeded", done["error"]
    outside: list[str] = []
    page = open_page(browser, server, outside)
    try:
        page.goto(f"{server.url}/jobs/{done['id']}")
        assert page.locator('#job-panel [data-field="message"]').text_content() == f"{RULES}/{RULES} steps done"
        graph = page.locator("#steps .step-graph svg")
        assert graph.locator("g.node").count() == RULES + 1  # the workflow step and its rules
        # Solid edges are dependencies between rules (dashed ones hang a rule off its workflow).
        solid = graph.locator("line.edge:not(.dashed)").count()
        assert solid == 3 + 3 + 3 + 1 + 4, solid  # sort, count per sample; merge->plot; all's four inputs
        assert graph.locator("line.edge.dashed").count() == 3  # the three map_reads start the DAG
        overflowing = page.evaluate("""() => [...document.querySelectorAll('#steps .step-graph g.node')]
            .filter(g => g.querySelector('text').getBBox().width > g.querySelector('rect').getBBox().width - 16)
            .map(g => g.dataset.node)""")
        assert overflowing == [], overflowing  # each label inside its box ("map_reads[sample=A]" was cut)
        page.goto(f"{server.url}/jobs/{failed['id']}")
        link = page.locator("#steps .failed-rule a").first
        assert link.text_content() == "map_reads[sample=B]"
        assert link.get_attribute("href") == "#step-map_reads[sample=B]"
        its_log = page.locator("#steps .failed-rule a", has_text="its log").get_attribute("href")
        assert httpx.get(f"{server.url}{its_log}", timeout=30).text.count("no reads could be mapped") == 1
        step = page.locator('#steps details[data-step="map_reads[sample=B]"]')
        assert step.get_attribute("open") is not None  # open, with its log
        log = page.locator('#steps pre[data-step-log="map_reads[sample=B]"]', has_text="cannot map B")
        log.wait_for(timeout=30_000)
    finally:
        page.close()
    assert outside == []
