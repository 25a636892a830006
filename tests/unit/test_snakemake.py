"""A Snakemake workflow run unchanged as a pipeline step: each rule execution is a step."""

from __future__ import annotations

from pathlib import Path

import pytest

import mieruka
from mieruka import JobStatus
from mieruka.core.steps import StepStatus

pytestmark = pytest.mark.in_process  # jobs run on threads of this process: no worker interpreters to start

pytest.importorskip("snakemake", reason="needs the snakemake extra: pip install 'mieruka[snakemake]'")


@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # The store's side of steps runs on every backend in the contract tests; once is enough here.
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


def test_each_rule_shows_as_a_step_with_its_state_and_log(app: mieruka.App) -> None:
    done = app.wait(app.submit("pipe_snake", n=4), 120)
    logs = [line.text for line in app.engine.store.read_logs(done.id)]
    assert done.status is JobStatus.SUCCEEDED, (done.error, logs[-30:])
    assert done.result == 1 + 4 + 9 + 16
    steps = {s.name: s for s in app.engine.store.list_steps(done.id)}
    rules = {n: s for n, s in steps.items() if s.kind == "rule"}
    assert {"numbers", "squares", "total"} <= set(rules)
    assert all(s.status is StepStatus.SUCCEEDED and s.parent == "snakemake" for s in rules.values())
    assert rules["squares"].depends_on == ["numbers"] and rules["total"].depends_on == ["squares"]
    assert steps["snakemake"].status is StepStatus.SUCCEEDED and steps["read"].status is StepStatus.SUCCEEDED
    assert steps["snakemake"].message == "3 of 3 jobs done"  # Snakemake's own progress reports
    assert done.message == "4/4 steps done"  # the job counts the rules, not the workflow step
    order = [s.name for s in app.engine.store.list_steps(done.id)]
    assert order.index("snakemake") < order.index("numbers") < order.index("read")
    assert "squared" in [line.text for line in app.engine.store.read_logs(done.id, step="squares")]
    # A rule's printed output reaches the runner on another pipe than its start and end events: under
    # load the line may come after the rule's end and stay in the workflow step's log. Never lost.
    printed = [line.step for line in app.engine.store.read_logs(done.id) if line.text == "made numbers"]
    assert len(printed) == 1 and printed[0] in ("numbers", "snakemake"), printed


def test_a_failed_rule_fails_the_job_and_retry_continues_the_workflow(app: mieruka.App, tmp_path: Path) -> None:
    block = tmp_path / "block"
    block.write_text("x")
    job = app.submit("pipe_snake", n=3, block=str(block))
    failed = app.wait(job, 120)
    assert failed.status is JobStatus.FAILED and failed.error is not None and "snakemake" in failed.error
    steps = {s.name: s for s in app.engine.store.list_steps(job.id)}
    assert steps["numbers"].status is StepStatus.SUCCEEDED and steps["squares"].status is StepStatus.SUCCEEDED
    assert steps["total"].status is StepStatus.FAILED and steps["read"].status is StepStatus.SKIPPED
    assert "blocked" in [line.text for line in app.engine.store.read_logs(job.id, step="snakemake")] + [
        line.text for line in app.engine.store.read_logs(job.id, step="total")
    ]
    block.unlink()
    app.engine.retry(job.id)
    done = app.wait(job.id, 120)
    assert done.status is JobStatus.SUCCEEDED, done.error
    assert done.result == 1 + 4 + 9
    steps = {s.name: s for s in app.engine.store.list_steps(job.id)}
    assert sorted(n for n, s in steps.items() if s.kind == "rule") == ["numbers", "squares", "total"]
    assert steps["numbers"].reused and steps["squares"].reused  # Snakemake did not run them again
    assert steps["total"].status is StepStatus.SUCCEEDED and not steps["total"].reused
    # The rule run again still hangs off the one it needs, although that one ran in the first attempt.
    assert steps["total"].depends_on == ["squares"]
    assert done.message == "4/4 steps done"  # three rules (two reused) and the Python step
