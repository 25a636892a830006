"""Pipeline step routes: a job's steps, one step, its log, its artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse

from ..core.job import JobRecord
from ..core.steps import StepRecord
from ..errors import ArtifactNotFound, StepNotFound
from ..runtime import Runtime
from .ids import JOB_ID
from .jobs import artifact_response
from .routers import Router
from .schemas import ERRORS, ArtifactOut, LogPage, StepOut
from .serialize import job_json, log_json, step_json
from .state import RuntimeDep

router = Router(prefix=f"/api/jobs/{JOB_ID}/steps", tags=["jobs"])


def _step(runtime: Runtime, job_id: int, name: str) -> StepRecord:
    runtime.engine.get(job_id)  # 404 for an unknown job first
    step = next((s for s in runtime.store.list_steps(job_id) if s.name == name), None)
    if step is None:
        raise StepNotFound(f"job {job_id} has no step named {name!r}")
    return step


@router.get("", response_model=None, responses={200: {"model": list[StepOut]}, 404: ERRORS[404]})
def list_steps(runtime: RuntimeDep, request: Request, job_id: int) -> list[dict[str, Any]]:
    """The steps of a pipeline job in plan order (a Snakemake rule execution follows its
    workflow step); an ordinary job has none."""
    record = runtime.engine.get(job_id)
    root = request.scope.get("root_path", "")
    listed = _job_artifacts(record, root)
    return [_step_out(s, listed, root) for s in runtime.store.list_steps(job_id)]


@router.get("/{name}", response_model=None, responses={200: {"model": StepOut}, 404: ERRORS[404]})
def get_step(runtime: RuntimeDep, request: Request, job_id: int, name: str) -> dict[str, Any]:
    step = _step(runtime, job_id, name)
    root = request.scope.get("root_path", "")
    return _step_out(step, _job_artifacts(runtime.engine.get(job_id), root), root)


@router.get("/{name}/logs", response_model=None, responses={200: {"model": LogPage}, 404: ERRORS[404]})
def get_step_logs(
    runtime: RuntimeDep,
    job_id: int,
    name: str,
    after: int = Query(0, ge=0, lt=2**63),
    limit: int = Query(1000, ge=1, le=10000),
    format: str = Query("json", pattern="^(json|text)$"),
) -> Any:
    """The step's log lines with seq > after (seq numbers are the job log's). `format=text`
    downloads the step's whole log."""
    _step(runtime, job_id, name)
    store = runtime.store
    if format == "text":
        return StreamingResponse(
            _text(runtime, job_id, name),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="job-{job_id}-{_safe(name)}.log"'},
        )
    record = runtime.engine.get(job_id)
    lines = store.read_logs(job_id, after, limit, step=name)
    return {
        "job_id": job_id,
        "lines": [log_json(line) for line in lines],
        "next_after": lines[-1].seq if lines else after,
        "total": record.log_lines,
        "finished": record.finished,
    }


@router.get("/{name}/artifacts", response_model=None, responses={200: {"model": list[ArtifactOut]}, 404: ERRORS[404]})
def list_step_artifacts(runtime: RuntimeDep, request: Request, job_id: int, name: str) -> list[dict[str, Any]]:
    """The step's artifacts, in the jobs API's shape (the same files as the job's artifacts)."""
    step = _step(runtime, job_id, name)
    listed = _job_artifacts(runtime.engine.get(job_id), request.scope.get("root_path", ""))
    return [a for a in listed if a["name"] in step.artifacts]


@router.get("/{name}/artifacts/{artifact}", response_model=None, responses={404: ERRORS[404]})
def get_step_artifact(runtime: RuntimeDep, job_id: int, name: str, artifact: str, inline: bool = False) -> Response:
    """Download an artifact the step attached (the same file as the job's artifact)."""
    if artifact not in _step(runtime, job_id, name).artifacts:
        raise ArtifactNotFound(f"step {name!r} of job {job_id} has no artifact named {artifact!r}")
    return artifact_response(runtime, job_id, artifact, inline)


def _job_artifacts(job: JobRecord, root: str) -> list[dict[str, Any]]:
    """The job's artifacts as the jobs API gives them (name, size, content_type, created_at, url)."""
    listed: list[dict[str, Any]] = job_json(job, root=root)["artifacts"]
    return listed


def _step_out(step: StepRecord, job_artifacts: list[dict[str, Any]], root: str) -> dict[str, Any]:
    """A step for the API: its artifacts in the jobs API's shape (one shape everywhere)."""
    data = step_json(step, root=root)
    data["artifacts"] = [a for a in job_artifacts if a["name"] in step.artifacts]
    return data


def _text(runtime: Runtime, job_id: int, step: str) -> Iterator[bytes]:
    after = 0
    while True:
        lines = runtime.store.read_logs(job_id, after, 5000, step=step)
        if not lines:
            return
        yield "".join(f"{line.text}\n" for line in lines).encode()
        after = lines[-1].seq


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
