"""Task routes: list tasks, submit a job, run a short task and answer with its result."""

from __future__ import annotations

from typing import Any

from fastapi import Header, Query, Request
from fastapi.responses import Response

from ..core.access import allowed
from ..errors import JobTimeoutError, PayloadTooLarge
from ..runtime import Runtime
from .audit import note_result
from .batch import BODY_SCHEMA, batch_answer
from .errors import respond
from .identity import owner_name, principal
from .routers import Router
from .schemas import ERRORS, BatchOut, JobOut, TaskOut
from .serialize import JsonAnswer, job_json
from .state import RuntimeDep
from .submission import CLOSE, Submission

router = Router(prefix="/api/tasks", tags=["tasks"])


@router.get("", response_model=None, responses={200: {"model": list[TaskOut]}})
def list_tasks(runtime: RuntimeDep, request: Request) -> list[dict[str, Any]]:
    """Every task (that you may use) with its parameters as JSON Schema."""
    who = principal(request)
    return [task.summary() for task in runtime.tasks if allowed(who, task.allow)]


@router.get("/{task}", response_model=None, responses={200: {"model": TaskOut}, **ERRORS})
def get_task(runtime: RuntimeDep, task: str) -> dict[str, Any]:
    return runtime.tasks.get(task).summary()


def _too_large(request: Request, exc: PayloadTooLarge) -> Response:
    return respond(request, exc.status_code, headers=CLOSE, **exc.to_dict())


@router.post(
    "/{task}/jobs",
    status_code=202,
    response_model=None,
    responses={
        202: {"model": JobOut, "description": "Queued"},
        200: {"model": JobOut, "description": "Already submitted with this key"},
        **ERRORS,
    },
)
async def submit_job(
    runtime: RuntimeDep,
    request: Request,
    task: str,
    priority: int | None = Query(None, ge=-(2**31), le=2**31 - 1, description="Higher runs first; default the task's."),
    delay: float | None = Query(
        None, ge=0, le=10 * 366 * 86400, description="Start no sooner than this many seconds (at most 10 years)."
    ),
    idempotency_key: str | None = Header(
        None,
        max_length=200,
        description="Submitting this task again with the same key "
        "returns your first job instead of queueing another "
        "(keys are per user and task).",
    ),
) -> Response:
    """Queue a job. Send parameters as a JSON object, or as multipart/form-data when files are
    included (files may also travel in JSON as {"filename", "content_base64"})."""
    return await submit_answer(runtime, request, task, priority, delay, idempotency_key)


async def submit_answer(
    runtime: Runtime, request: Request, task: str, priority: int | None, delay: float | None, key: str | None
) -> Response:
    """The answer to a submission (the route's and web/fastpath.py's, which checked the parameters)."""
    submission = Submission(runtime, request, runtime.tasks.get(task), owner_name(request))
    try:
        record, created = await submission.submit(priority, delay, key, audit_with_job=True)
    except PayloadTooLarge as exc:
        return _too_large(request, exc)
    root = request.scope.get("root_path", "")
    return JsonAnswer(
        job_json(record, root=root),
        status_code=202 if created else 200,
        headers={"Location": f"{root}/api/jobs/{record.id}"},
    )


@router.post(
    "/{task}/jobs/batch",
    status_code=202,
    response_model=None,
    responses={
        202: {"model": BatchOut, "description": "Queued (`created` says which are new)"},
        200: {"model": BatchOut, "description": "Every item was submitted before with its key"},
        **ERRORS,
    },
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA}}}},
)
async def submit_batch(runtime: RuntimeDep, request: Request, task: str) -> Response:
    """Queue many jobs of one task in one request (at most 1,000): `{"jobs": [{"params": {...},
    "priority": 5, "delay": 60, "idempotency_key": "row-17"}, ...]}`, every field but `params`
    optional. Each item is checked first: one bad item is a 422 naming it, and nothing is queued.
    The answer lists the jobs in the items' order, and `created` says which are new."""
    return await batch_answer(runtime, request, task)


@router.post(
    "/{task}/run",
    response_model=None,
    responses={
        200: {"model": JobOut, "description": "Finished (see status)"},
        202: {"model": JobOut, "description": "Still running after the wait"},
        **ERRORS,
    },
)
async def run_task(
    runtime: RuntimeDep,
    request: Request,
    task: str,
    timeout: float = Query(30.0, gt=0, description="Longest wait in seconds (capped by the server)."),
    idempotency_key: str | None = Header(None, max_length=200),
) -> Response:
    """Run a short task now: submit, wait for the result, answer with the finished job.
    If it takes longer than `timeout`, the answer is 202 with the job, which keeps running."""
    return await run_answer(runtime, request, task, timeout, idempotency_key)


async def run_answer(runtime: Runtime, request: Request, task: str, timeout: float, key: str | None) -> Response:
    """The answer to a run-now request (the route's and web/fastpath.py's)."""
    submission = Submission(runtime, request, runtime.tasks.get(task), owner_name(request))
    try:
        record, _ = await submission.submit(idempotency_key=key)
    except PayloadTooLarge as exc:
        return _too_large(request, exc)
    root = request.scope.get("root_path", "")
    location = {"Location": f"{root}/api/jobs/{record.id}"}
    wait = min(timeout, runtime.settings.run_wait_max)
    try:
        record = await runtime.engine.wait_async(record.id, wait)
    except JobTimeoutError:
        record = await runtime.engine.get_async(record.id)
        note_result(request, record)
        return JsonAnswer(job_json(record, root=root), status_code=202, headers=location)
    note_result(request, record)
    return JsonAnswer(job_json(record, root=root), headers=location)
