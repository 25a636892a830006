"""Response shapes, for the OpenAPI document (handlers build plain dicts for speed)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ArtifactOut(BaseModel):
    name: str
    size: int
    content_type: str
    created_at: str
    url: str


class JobOut(BaseModel):
    id: int
    task: str
    status: str
    params: dict[str, Any]
    owner: str | None
    priority: int
    queue: str
    attempts: int
    max_attempts: int
    progress: float | None
    message: str | None
    error: str | None
    worker: str | None
    schedule: str | None
    idempotency_key: str | None
    cancel_requested: bool
    log_lines: int
    created_at: str
    run_after: str | None
    started_at: str | None
    finished_at: str | None
    duration: float | None
    has_result: bool
    url: str
    result: Any = None
    traceback: str | None = None
    artifacts: list[ArtifactOut] = []


class BatchOut(BaseModel):
    jobs: list[JobOut]
    created: list[bool]


class JobPage(BaseModel):
    jobs: list[JobOut]
    next_cursor: str | None


class LogLineOut(BaseModel):
    seq: int
    at: str
    stream: str
    text: str
    step: str | None = None


class StepOut(BaseModel):
    name: str
    position: int
    kind: str
    status: str
    depends_on: list[str]
    description: str
    allow_failure: bool
    parent: str | None
    started_at: str | None
    finished_at: str | None
    duration: float | None
    progress: float | None
    message: str | None
    output: Any = None
    error: str | None
    artifacts: list[ArtifactOut]
    reused: bool
    logs_url: str


class LogPage(BaseModel):
    job_id: int
    lines: list[LogLineOut]
    next_after: int
    total: int
    finished: bool


class TaskOut(BaseModel):
    name: str
    title: str
    description: str
    timeout: float | None
    retries: int
    priority: int
    concurrency: int | None
    queue: str
    quick: bool
    schedule: str | None
    accepts_files: bool
    file_fields: list[str]
    tags: list[str]
    params_schema: dict[str, Any]


class ErrorBody(BaseModel):
    code: str
    message: str
    fields: list[dict[str, str]] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown task or job"},
    409: {"model": ErrorOut, "description": "Not possible in the job's state"},
    413: {"model": ErrorOut, "description": "Upload too large"},
    422: {"model": ErrorOut, "description": "Invalid parameters; `fields` names each bad field"},
}
