"""Server-Sent Events of jobs: every job's (`/api/events`), or one job's with a snapshot first."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Header, Query, Request
from fastapi.responses import Response

from ..core.events import Event
from ..errors import TaskNotFound
from .identity import hidden
from .ids import JOB_ID
from .routers import Router
from .serialize import job_json
from .sse import event_response
from .state import RuntimeDep, open_streams_of

router = Router()


@router.get(
    "/api/events", tags=["events"], response_class=Response, responses={200: {"content": {"text/event-stream": {}}}}
)
def all_events(
    runtime: RuntimeDep,
    request: Request,
    task: str | None = Query(None, description="Only events of this task's jobs."),
    last_event_id: int | None = Query(
        None, description="Resume after this event id (as the Last-Event-ID header does)."
    ),
    last_event_id_header: str | None = Header(None, alias="Last-Event-ID"),
) -> Response:
    """Server-Sent Events of every job: state, progress, log, artifact."""
    unseen = hidden(request)
    if task is not None and (task in unseen or task not in runtime.tasks):
        raise TaskNotFound(task)  # a task the caller may not see is one it cannot name
    accept: Callable[[Event], bool] | None = None
    if task is not None:
        accept = lambda e: e.task == task  # noqa: E731
    elif unseen:
        accept = lambda e: e.task not in unseen  # noqa: E731
    return event_response(
        runtime.engine.bus,
        None,
        _last_id(last_event_id_header, last_event_id),
        runtime.settings.heartbeat_interval,
        accept=accept,
        streams=open_streams_of(request),
    )


@router.get(
    f"/api/jobs/{JOB_ID}/events",
    tags=["events"],
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def job_events(
    runtime: RuntimeDep,
    request: Request,
    job_id: int,
    last_event_id: int | None = Query(None),
    last_event_id_header: str | None = Header(None, alias="Last-Event-ID"),
) -> Response:
    """Server-Sent Events of one job. The first event is a `snapshot` of the whole job."""
    runtime.engine.get(job_id)
    root = request.scope.get("root_path", "")

    def snapshot() -> dict[str, Any]:
        return job_json(runtime.engine.get(job_id), root=root)

    def accept(event: Event) -> bool:
        return event.job_id == job_id

    return event_response(
        runtime.engine.bus,
        [f"job:{job_id}"],
        _last_id(last_event_id_header, last_event_id),
        runtime.settings.heartbeat_interval,
        snapshot=snapshot,
        accept=accept,
        streams=open_streams_of(request),
    )


def _last_id(header: str | None, query: int | None) -> int:
    # The header wins: a reconnecting EventSource sends it, newer than the page's starting point.
    if header and header.strip().isdigit():
        return int(header)
    return query or 0
