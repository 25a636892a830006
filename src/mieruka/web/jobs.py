"""Job routes: list and inspect jobs, read logs, download artifacts, cancel, retry, delete."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse

from ..core.clock import as_utc
from ..core.status import JobStatus
from ..errors import ArtifactNotFound, JobTimeoutError, ValidationError
from ..runtime import Runtime
from ..store.base import JobQuery
from .audit import note_change
from .identity import hidden
from .ids import JOB_ID
from .routers import Router
from .schemas import ERRORS, JobOut, JobPage, LogPage
from .serialize import JsonAnswer, job_json, log_json
from .state import RuntimeDep

INLINE_TYPES = (
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "application/json",
    "text/csv",
)


router = Router(prefix="/api/jobs", tags=["jobs"])


@router.get("", response_model=None, responses={200: {"model": JobPage}, 422: ERRORS[422]})
def list_jobs(
    runtime: RuntimeDep,
    request: Request,
    task: str | None = None,
    status: list[str] = Query([], description="One or more states; repeat or comma-separate."),
    owner: str | None = None,
    created_after: datetime | None = Query(None, description="ISO 8601; naive means UTC."),
    created_before: datetime | None = None,
    q: str | None = Query(None, max_length=200, description="Text to find in the parameters."),
    cursor: str | None = Query(None, description="next_cursor of the previous page."),
    limit: int = Query(50, ge=1, le=500),
) -> dict[str, Any]:
    """Jobs, newest first, a page at a time."""
    states = []
    for item in status:
        for value in item.split(","):
            if value.strip():
                try:
                    states.append(JobStatus(value.strip()))
                except ValueError:
                    allowed = ", ".join(s.value for s in JobStatus)
                    raise ValidationError(
                        f"status: unknown state {value!r}; use {allowed}",
                        [{"field": "status", "message": "unknown state"}],
                    ) from None
    before = None
    if cursor:
        if not cursor.isdigit() or int(cursor) >= 2**63:
            raise ValidationError("cursor: not a cursor from this API", [{"field": "cursor", "message": "invalid"}])
        before = int(cursor)
    query = JobQuery(
        task=task,
        status=states,
        owner=owner,
        created_after=as_utc(created_after, "created_after"),
        created_before=as_utc(created_before, "created_before"),
        search=q,
        before_id=before,
        limit=limit + 1,
        hidden_tasks=hidden(request),
    )
    records = runtime.engine.list_jobs(query)
    more = len(records) > limit
    records = records[:limit]
    root = request.scope.get("root_path", "")
    return {
        "jobs": [job_json(r, full=False, root=root) for r in records],
        "next_cursor": str(records[-1].id) if more and records else None,
    }


@router.get(f"/{JOB_ID}", response_model=None, responses={200: {"model": JobOut}, 404: ERRORS[404]})
async def get_job(
    runtime: RuntimeDep,
    request: Request,
    job_id: int,
    wait: float = Query(0, ge=0, le=300, description="Wait up to this many seconds for the job to finish (long poll)."),
) -> Response:
    return await job_answer(runtime, request, job_id, wait)


async def job_answer(runtime: Runtime, request: Request, job_id: int, wait: float) -> Response:
    """A job, after a long poll of up to `wait` seconds (the route's and web/fastpath.py's)."""
    engine = runtime.engine
    if wait:
        try:
            record = await engine.wait_async(job_id, wait)
        except JobTimeoutError:
            record = await engine.get_async(job_id)
    else:
        record = await engine.get_async(job_id)
    return JsonAnswer(job_json(record, root=request.scope.get("root_path", "")))


@router.get(f"/{JOB_ID}/logs", response_model=None, responses={200: {"model": LogPage}, 404: ERRORS[404]})
def get_logs(
    runtime: RuntimeDep,
    job_id: int,
    after: int = Query(0, ge=0, lt=2**63),
    limit: int = Query(1000, ge=1, le=10000),
    format: str = Query("json", pattern="^(json|text)$"),
) -> Any:
    """Log lines with seq > after. `format=text` downloads the whole log as plain text."""
    engine = runtime.engine
    record = engine.get(job_id)
    if format == "text":
        return StreamingResponse(
            _log_text(runtime, job_id),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="job-{job_id}.log"'},
        )
    lines = runtime.store.read_logs(job_id, after, limit)
    return {
        "job_id": job_id,
        "lines": [log_json(line) for line in lines],
        "next_after": lines[-1].seq if lines else after,
        "total": record.log_lines,
        "finished": record.finished,
    }


@router.get(f"/{JOB_ID}/artifacts", response_model=None, responses={404: ERRORS[404]})
def list_artifacts(runtime: RuntimeDep, request: Request, job_id: int) -> list[dict[str, Any]]:
    artifacts: list[dict[str, Any]] = job_json(runtime.engine.get(job_id), root=request.scope.get("root_path", ""))[
        "artifacts"
    ]
    return artifacts


@router.get(f"/{JOB_ID}/artifacts/{{name}}", response_model=None, responses={404: ERRORS[404]})
def get_artifact(runtime: RuntimeDep, job_id: int, name: str, inline: bool = False) -> Response:
    """Download an artifact (streamed). `inline=true` shows images, PDF and text in the browser;
    anything else is always a download."""
    return artifact_response(runtime, job_id, name, inline)


@router.post(f"/{JOB_ID}/cancel", response_model=None, responses={200: {"model": JobOut}, **ERRORS})
def cancel_job(runtime: RuntimeDep, request: Request, job_id: int) -> dict[str, Any]:
    """Cancel a queued job, or stop a running one (its child processes too)."""
    record = runtime.engine.cancel(job_id)
    note_change(request, runtime, record)
    return job_json(record, root=request.scope.get("root_path", ""))


@router.post(f"/{JOB_ID}/retry", response_model=None, responses={200: {"model": JobOut}, **ERRORS})
def retry_job(runtime: RuntimeDep, request: Request, job_id: int) -> dict[str, Any]:
    """Queue a failed or cancelled job again, with a fresh set of attempts."""
    record = runtime.engine.retry(job_id)
    # What the retry did: a worker may have taken the job already when the record was read.
    note_change(request, runtime, record, JobStatus.QUEUED.value)
    return job_json(record, root=request.scope.get("root_path", ""))


@router.delete(f"/{JOB_ID}", status_code=204, response_model=None, responses=ERRORS)
def delete_job(runtime: RuntimeDep, request: Request, job_id: int) -> Response:
    """Delete a finished job with its logs, artifacts and uploaded files."""
    record = runtime.engine.get(job_id)
    runtime.engine.delete(job_id)
    note_change(request, runtime, record, f"deleted ({record.status.value})")
    return Response(status_code=204)


def artifact_response(runtime: Runtime, job_id: int, name: str, inline: bool) -> Response:
    record = runtime.engine.get(job_id)
    info = next((a for a in record.artifacts if a.name == name), None)
    if info is None:
        raise ArtifactNotFound(f"job {job_id} has no artifact named {name!r}")
    storage = runtime.engine.artifacts
    try:
        size = storage.size(job_id, name)
    except FileNotFoundError:
        raise ArtifactNotFound(f"the file of artifact {name!r} is missing from storage") from None
    disposition = "inline" if inline and info.content_type in INLINE_TYPES else "attachment"
    headers = {
        "Content-Length": str(size),
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(name)}",
        "Content-Security-Policy": "sandbox; default-src 'none'",
    }
    return StreamingResponse(storage.open_chunks(job_id, name), media_type=info.content_type, headers=headers)


def _log_text(runtime: Runtime, job_id: int) -> Iterator[bytes]:
    after = 0
    while True:
        lines = runtime.store.read_logs(job_id, after, 5000)
        if not lines:
            return
        # A pipeline step's line says which step wrote it: steps running in parallel interleave.
        yield "".join(f"[{line.step}] {line.text}\n" if line.step else f"{line.text}\n" for line in lines).encode()
        after = lines[-1].seq
