"""The ASGI application: wires the routers, live events, health, docs and static files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from ..core.events import Event
from ..errors import TaskNotFound
from ..runtime import Runtime
from ..store.outage import RETRY_AFTER, reason, unavailable
from . import accounts_api, jobs, monitor, pools, steps, tasks
from .assets import Assets
from .errors import install_error_handlers
from .ids import JOB_ID
from .live import live_router
from .metrics import Metrics
from .openapi import install_openapi
from .policy import hidden_names
from .prefix import PathPrefix
from .security import hidden, install_security, principal
from .serialize import iso, job_json
from .sse import event_response
from .state import attach
from .ui.dashboards import dashboards_ui_router
from .ui.pages import ui_router
from .ui.templating import page_templates


def create_api(runtime: Runtime, stop_app: bool = False) -> FastAPI:
    """The ASGI app. Its lifespan starts the runtime unless it runs already, and stops it at shutdown
    if it started it, or if `stop_app` (the server of `mieruka run` started it before serving)."""
    metrics = Metrics(runtime)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started_here = not runtime.running
        if started_here:
            await run_in_threadpool(runtime.start)
        metrics.attach(runtime)
        try:
            yield
        finally:
            metrics.detach()
            if started_here or stop_app:
                await run_in_threadpool(runtime.stop)

    api = FastAPI(title=runtime.title, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    pages = page_templates(runtime)
    install_error_handlers(api, pages)
    api.include_router(tasks.router)
    api.include_router(jobs.router)
    api.include_router(accounts_api.router)
    api.include_router(monitor.router)
    api.include_router(pools.router)
    api.include_router(steps.router)
    _events_routes(api, runtime, metrics)
    _system_routes(api, runtime, metrics)
    _docs_routes(api, pages)
    api.include_router(live_router(runtime, metrics.sse_clients, metrics.registry))
    api.include_router(ui_router(runtime))
    api.include_router(dashboards_ui_router(runtime))
    api.mount("/static", Assets(), name="static")
    install_openapi(api, runtime)
    install_security(api, runtime)
    attach(api, runtime)
    if runtime.settings.root_path:
        api.add_middleware(PathPrefix, prefix=runtime.settings.root_path)
    return api


def _last_id(header: str | None, query: int | None) -> int:
    # The header wins: a reconnecting EventSource sends it, newer than the page's starting point.
    if header and header.strip().isdigit():
        return int(header)
    return query or 0


def _events_routes(api: FastAPI, runtime: Runtime, metrics: Metrics) -> None:
    @api.get("/api/events", tags=["events"], response_class=Response,
             responses={200: {"content": {"text/event-stream": {}}}})
    def all_events(
        request: Request,
        task: str | None = Query(None, description="Only events of this task's jobs."),
        last_event_id: int | None = Query(None, description="Resume after this event id (as the "
                                          "Last-Event-ID header does)."),
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
        return event_response(runtime.engine.bus, None, _last_id(last_event_id_header, last_event_id),
                              runtime.settings.heartbeat_interval, accept=accept, clients=metrics.sse_clients)

    @api.get(f"/api/jobs/{JOB_ID}/events", tags=["events"], response_class=Response,
             responses={200: {"content": {"text/event-stream": {}}}})
    def job_events(
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

        return event_response(runtime.engine.bus, [f"job:{job_id}"], _last_id(last_event_id_header, last_event_id),
                              runtime.settings.heartbeat_interval, snapshot=snapshot, accept=accept,
                              clients=metrics.sse_clients)


def _system_routes(api: FastAPI, runtime: Runtime, metrics: Metrics) -> None:
    @api.get("/metrics", tags=["system"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    def prometheus(request: Request) -> Response:
        """Prometheus metrics: jobs by state, workers, wait and run times, finished jobs, SSE clients."""
        who = principal(request)
        shown = {"source": {s for b in runtime.dashboards for s in b.sources},
                 "stream": {s for b in runtime.dashboards for s in b.streams}}
        unseen = {"task": hidden(request),
                  **{kind: hidden_names(runtime, who, kind, names) for kind, names in shown.items()}}
        return Response(metrics.exposition(unseen), media_type=CONTENT_TYPE_LATEST)

    @api.get("/healthz", tags=["system"])
    def healthz() -> JSONResponse:
        """Database and worker status; 503 when jobs cannot run, with the reason."""
        engine = runtime.engine
        checks: dict[str, Any] = {}
        healthy = True
        try:
            checks["jobs"] = engine.store.count_by_status()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            problem = unavailable(exc, runtime.settings.effective_database_url)
            checks["database"] = problem.message if problem is not None else f"error: {type(exc).__name__}: {exc}"
            healthy = False
        pool: list[dict[str, object]] | None = None
        try:
            pool = engine.workers()
            checks["workers"] = {"total": len(pool), "ready": sum(1 for w in pool if w["ready"]),
                                 "busy": sum(1 for w in pool if w["job_id"] is not None)}
        except Exception as exc:  # noqa: BLE001 - the Celery executor reads its workers from the database
            checks["workers"] = {"problem": f"not known now: {reason(exc)}"}
        broken = getattr(engine.executor, "broken", None)
        if broken:
            checks["executor"] = broken
            healthy = False
        problems = []
        broker_problem = getattr(engine.executor, "broker_problem", None)
        if broker_problem is not None:  # Celery: jobs are sent through the broker
            problem = broker_problem()
            checks["broker"] = problem or "ok"
            if problem:
                healthy = False
            elif pool == []:
                # Jobs wait until a worker comes (a compute pool may be starting): degraded, not failing.
                problems.append("no Celery worker is up: jobs wait in the queue")
                checks["workers"]["problem"] = problems[-1]
        # Without the event bus jobs still run; only live updates suffer: degraded, not failing.
        bus_problem = engine.bus.problem()
        checks["events"] = bus_problem or "ok"
        status = "failing" if not healthy else "degraded" if bus_problem or problems else "ok"
        headers = {"Retry-After": str(RETRY_AFTER)} if not healthy else None
        return JSONResponse({"status": status, **checks}, status_code=200 if healthy else 503, headers=headers)

    @api.get("/api/workers", tags=["system"])
    def workers() -> list[dict[str, object]]:
        """The worker processes of this server and what each is running (with the Celery
        executor: a slot of each Celery worker that is up); every machine: `GET /api/nodes`."""
        return runtime.engine.workers()

    @api.get("/api/queues", tags=["system"])
    def queues() -> list[dict[str, object]]:
        """Each queue with active jobs: how many wait, how many run, and since when the oldest waits."""
        return [{"queue": q.queue, "queued": q.queued, "running": q.running,
                 "oldest_queued_at": iso(q.oldest_queued_at)} for q in runtime.engine.store.queue_stats()]


def _docs_routes(api: FastAPI, templates: Jinja2Templates) -> None:
    # Our own pages rather than FastAPI's: those start the viewers with an inline script, which
    # the Content-Security-Policy forbids.
    def docs_page(request: Request, kind: str) -> HTMLResponse:
        return templates.TemplateResponse(request, "docs.html",
                                          {"root": request.scope.get("root_path", ""), "kind": kind})

    @api.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        return docs_page(request, "swagger")

    @api.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return docs_page(request, "redoc")
