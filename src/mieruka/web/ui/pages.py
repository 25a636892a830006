"""The pages: home, a task's form, a job, the jobs monitor. Forms post to the same submission code
as the API, so a value the API rejects is rejected the same way here, next to its field."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ...core.access import allowed
from ...core.clock import utcnow
from ...core.job import JobRecord
from ...core.status import JobStatus, state_label
from ...core.task import Task
from ...errors import ConflictError, JobNotFound, JobTimeoutError, PayloadTooLarge, ValidationError
from ...i18n import N_, _
from ...runtime import Runtime
from ...store.base import JobQuery
from .. import monitor
from ..audit import audit, change_detail, note_change, note_result
from ..counts import job_counts
from ..identity import hidden, owner_name, principal
from ..ids import JOB_ID, parse_id
from ..pools import pools_json
from ..routers import Router, adopt
from ..state import RuntimeDep, pages_of
from ..submission import CLOSE, Submission
from . import account_pages, charts, render, step_graph
from .forms import form_fields, unplaced_errors

TEMPLATES = Path(__file__).parent.parent / "templates"
LOG_TAIL = 1000  # lines a job page shows at first; older ones are a download away


router = Router(include_in_schema=False)


adopt(router, account_pages.router)


def _page(runtime: Runtime, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("root", request.scope.get("root_path", ""))
    # Live updates resume from here: nothing that happens while the page loads is missed.
    context.setdefault("last_event_id", runtime.engine.bus.last_id())
    context.setdefault("state_label", state_label)
    context.setdefault("pool_label", pool_label)
    return pages_of(request).TemplateResponse(request, name, context, status_code=status)


@router.get("/", response_class=HTMLResponse)
def home(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    who = principal(request)
    return _page(
        runtime,
        request,
        "home.html",
        tasks=[t for t in runtime.tasks if allowed(who, t.allow)],
        dashboards=[b for b in runtime.dashboards if allowed(who, b.allow)],
    )


@router.get("/tasks/{name}", response_class=HTMLResponse)
def task_page(runtime: RuntimeDep, request: Request, name: str, again: int | None = None) -> HTMLResponse:
    task = runtime.tasks.get(name)
    values: dict[str, Any] | None = None
    if again is not None:
        earlier = runtime.engine.get(again)
        if earlier.task in hidden(request):
            raise JobNotFound(again)
        values = _values_of(earlier)
    return _page(runtime, request, "task.html", task=task, fields=form_fields(task, values, None), again=again)


@router.post("/tasks/{name}", response_class=HTMLResponse)
async def submit(runtime: RuntimeDep, request: Request, name: str) -> Response:
    task = runtime.tasks.get(name)
    submission = Submission(runtime, request, task, owner_name(request))
    try:
        record, _created = await submission.submit()
    except (ValidationError, PayloadTooLarge) as exc:
        return _refused(runtime, request, task, submission, exc)
    root = request.scope.get("root_path", "")
    if task.quick and request.headers.get("HX-Request"):
        try:
            record = await runtime.engine.wait_async(record.id, min(30.0, runtime.settings.run_wait_max))
        except JobTimeoutError:
            record = await runtime.engine.get_async(record.id)
        note_result(request, record)
        return _page(runtime, request, "_quick_result.html", job=record, result=render.result_view(record))
    return RedirectResponse(f"{root}/jobs/{record.id}", status_code=303)


def _refused(
    runtime: Runtime, request: Request, task: Task, submission: Submission, exc: ValidationError | PayloadTooLarge
) -> HTMLResponse:
    """The task's form again, as the user filled it in (what was read of it), each error by its field."""
    errors = {f["field"]: f["message"] for f in getattr(exc, "fields", [])} or {"": exc.message}
    fields = form_fields(task, submission.values, errors)
    response = _page(
        runtime,
        request,
        "task.html",
        status=exc.status_code,
        task=task,
        fields=fields,
        form_error=exc.message,
        unplaced=unplaced_errors(fields, errors),
    )
    if isinstance(exc, PayloadTooLarge):
        response.headers.update(CLOSE)
    return response


@router.get(f"/jobs/{JOB_ID}", response_class=HTMLResponse)
def job_page(runtime: RuntimeDep, request: Request, job_id: int) -> HTMLResponse:
    record = runtime.engine.get(job_id)
    after = max(record.log_lines - LOG_TAIL, 0)
    lines = runtime.store.read_logs(job_id, after, LOG_TAIL)
    task = _task_or_none(runtime, record.task)
    steps = runtime.store.list_steps(job_id)
    return _page(
        runtime,
        request,
        "job.html",
        job=record,
        task=task,
        lines=lines,
        skipped=after,
        result=render.result_view(record),
        images=render.IMAGE_TYPES,
        steps=steps,
        graph=step_graph.layout(steps),
        is_pipeline=bool(steps) or hasattr(getattr(task, "func", None), "mieruka_pipeline"),
    )


@router.get(f"/jobs/{JOB_ID}/steps", response_class=HTMLResponse)
def job_steps(runtime: RuntimeDep, request: Request, job_id: int) -> HTMLResponse:
    """The job page's steps (list and graph), swapped in live when a step changes."""
    record = runtime.engine.get(job_id)
    steps = runtime.store.list_steps(job_id)
    return _page(runtime, request, "_steps.html", job=record, steps=steps, graph=step_graph.layout(steps))


@router.get(f"/jobs/{JOB_ID}/panel", response_class=HTMLResponse)
def job_panel(runtime: RuntimeDep, request: Request, job_id: int) -> HTMLResponse:
    """The job page's summary, result and artifacts, swapped in live when the job changes."""
    record = runtime.engine.get(job_id)
    return _page(
        runtime, request, "_job_panel.html", job=record, result=render.result_view(record), images=render.IMAGE_TYPES
    )


@router.get("/jobs", response_class=HTMLResponse)
def monitor_page(
    runtime: RuntimeDep,
    request: Request,
    task: str | None = None,
    status: str | None = None,
    owner: str | None = None,
    q: str | None = None,
    since: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> HTMLResponse:
    """Every job, newest first, updated live; pages are cut by job id, so rows never jump."""
    states = _states(status)
    created_after = _since(since)
    if cursor is not None and not 0 < cursor < 2**63:
        raise ValidationError(_("cursor: not a cursor from this page"), [{"field": "cursor", "message": _("invalid")}])
    unseen = hidden(request)
    query = JobQuery(
        task=task or None,
        status=states,
        owner=owner or None,
        search=q or None,
        created_after=created_after,
        before_id=cursor,
        limit=min(max(limit, 1), 200) + 1,
        hidden_tasks=unseen,
    )
    records = runtime.engine.list_jobs(query)
    more = len(records) > query.limit - 1
    records = records[: query.limit - 1]
    filters = {"task": task or "", "status": status or "", "owner": owner or "", "q": q or "", "since": since or ""}
    return _page(
        runtime,
        request,
        "jobs.html",
        jobs=records,
        filters=filters,
        tasks=[t for t in runtime.tasks if t.name not in unseen],
        states=[s.value for s in JobStatus],
        sinces={key: _(label) for key, label in SINCE_LABELS.items()},
        next_cursor=records[-1].id if more and records else None,
        first_page=cursor is None,
    )


@router.get(f"/jobs/{JOB_ID}/row", response_class=HTMLResponse)
def job_row(runtime: RuntimeDep, request: Request, job_id: int) -> HTMLResponse:
    """One row of the monitor, for jobs that appear while the page is open."""
    return _page(runtime, request, "_job_row.html", job=runtime.engine.get(job_id))


@router.post("/jobs/cancel")
async def cancel_many(runtime: RuntimeDep, request: Request) -> RedirectResponse:
    form = await request.form()
    who = principal(request)
    for value in form.getlist("ids"):
        job_id = parse_id(value) if isinstance(value, str) else None
        if job_id is not None:
            try:
                record = await runtime.engine.get_async(job_id)
                if record.task in hidden(request) or not who.may_change_job(record.owner):
                    continue  # an operator cancels only its own jobs
                record = await run_in_threadpool(runtime.engine.cancel, job_id)
                await run_in_threadpool(audit, request, "job.cancel", f"job:{job_id}", **change_detail(runtime, record))
            except (ConflictError, JobNotFound):
                pass  # finished or gone meanwhile: nothing to cancel
    return RedirectResponse(
        request.headers.get("referer") or f"{request.scope.get('root_path', '')}/jobs", status_code=303
    )


@router.get("/workers", response_class=HTMLResponse)
def workers_page(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    return _page(runtime, request, "workers.html", **_pool(runtime))


@router.get("/workers/panel", response_class=HTMLResponse)
def workers_panel(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    """The workers and queues tables, refreshed every few seconds by the page."""
    return _page(runtime, request, "_workers_panel.html", **_pool(runtime))


@router.post(f"/jobs/{JOB_ID}/cancel")
def cancel(runtime: RuntimeDep, request: Request, job_id: int) -> RedirectResponse:
    note_change(request, runtime, runtime.engine.cancel(job_id))
    return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs/{job_id}", status_code=303)


@router.post(f"/jobs/{JOB_ID}/retry")
def retry(runtime: RuntimeDep, request: Request, job_id: int) -> RedirectResponse:
    # What the retry did: a worker may have taken the job already when the record was read.
    note_change(request, runtime, runtime.engine.retry(job_id), JobStatus.QUEUED.value)
    return RedirectResponse(f"{request.scope.get('root_path', '')}/jobs/{job_id}", status_code=303)


SINCE = {"15m": 900, "1h": 3600, "24h": 86400, "7d": 7 * 86400}
SINCE_LABELS = {
    "15m": N_("last 15 minutes"),
    "1h": N_("last hour"),
    "24h": N_("last 24 hours"),
    "7d": N_("last 7 days"),
}
POOL_STATES = {
    "stopped": N_("stopped"),
    "starting": N_("starting"),
    "running": N_("running"),
    "stopping": N_("stopping"),
}


def pool_label(value: str) -> str:
    """A compute pool's state as people read it (the value stays in attributes and classes)."""
    return _(POOL_STATES[value]) if value in POOL_STATES else value


def _states(text: str | None) -> list[JobStatus]:
    states = []
    for value in (text or "").split(","):
        if value.strip():
            try:
                states.append(JobStatus(value.strip()))
            except ValueError:
                raise ValidationError(
                    _("unknown state %(state)s", state=repr(value)),
                    [{"field": "status", "message": _("unknown state")}],
                ) from None
    return states


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    if text not in SINCE:
        raise ValidationError(
            _("since must be one of %(choices)s", choices=", ".join(SINCE)),
            [{"field": "since", "message": _("invalid")}],
        )
    return utcnow() - timedelta(seconds=SINCE[text])


def _pool(runtime: Runtime) -> dict[str, Any]:
    now = utcnow()
    queues = [
        {
            "queue": q.queue,
            "queued": q.queued,
            "running": q.running,
            "waiting": (now - q.oldest_queued_at).total_seconds() if q.oldest_queued_at else None,
        }
        for q in runtime.store.queue_stats()
    ]
    last_hour = monitor.stats(runtime, 60)
    local = runtime.settings.executor in ("local", "threads")  # workers of this server
    return {
        "workers": runtime.engine.workers() if local else [],
        "queues": queues,
        "counts": job_counts(runtime.store),
        "broken": getattr(runtime.engine.executor, "broken", None),
        "nodes": monitor.nodes(runtime),
        "last_hour": last_hour,
        "pools": pools_json(runtime),
        "throughput_chart": charts.throughput(last_hour["per_minute"]),
        "durations_chart": charts.durations(last_hour["per_minute"]),
    }


def _task_or_none(runtime: Runtime, name: str) -> Task | None:
    return runtime.tasks.get(name) if name in runtime.tasks else None


def _values_of(record: JobRecord) -> dict[str, Any]:
    """A finished job's parameters as form values, for "run again with these parameters"."""
    values: dict[str, Any] = {}
    for key, value in record.params.items():
        if isinstance(value, dict) and "upload_id" in value:
            continue  # files cannot be pre-filled: the browser must choose them again
        values[key] = value
    return values
