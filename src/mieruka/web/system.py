"""The system routes: Prometheus metrics, health, the worker processes and the queues."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from ..store.outage import RETRY_AFTER, reason, unavailable
from .counts import job_counts
from .identity import hidden, principal
from .policy import hidden_names
from .routers import Router
from .serialize import iso
from .state import RuntimeDep, metrics_of

router = Router()


@router.get("/metrics", tags=["system"], response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def prometheus(runtime: RuntimeDep, request: Request) -> Response:
    """Prometheus metrics: jobs by state, workers, wait and run times, finished jobs, SSE clients."""
    who = principal(request)
    shown = {
        "source": {s for b in runtime.dashboards for s in b.sources},
        "stream": {s for b in runtime.dashboards for s in b.streams},
    }
    unseen = {
        "task": hidden(request),
        **{kind: hidden_names(runtime, who, kind, names) for kind, names in shown.items()},
    }
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics_of(request).exposition(unseen), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", tags=["system"])
def healthz(runtime: RuntimeDep) -> JSONResponse:
    """Database and worker status; 503 when jobs cannot run, with the reason."""
    engine = runtime.engine
    checks: dict[str, Any] = {}
    healthy = True
    try:
        checks["jobs"] = job_counts(runtime.store)
        checks["database"] = "ok"
    except Exception as exc:
        problem = unavailable(exc, runtime.settings.effective_database_url)
        checks["database"] = problem.message if problem is not None else f"error: {type(exc).__name__}: {exc}"
        healthy = False
    pool: list[dict[str, object]] | None = None
    try:
        pool = engine.workers()
        checks["workers"] = {
            "total": len(pool),
            "ready": sum(1 for w in pool if w["ready"]),
            "busy": sum(1 for w in pool if w["job_id"] is not None),
        }
    except Exception as exc:
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


@router.get("/api/workers", tags=["system"])
def workers(runtime: RuntimeDep) -> list[dict[str, object]]:
    """The worker processes of this server and what each is running (with the Celery
    executor: a slot of each Celery worker that is up); every machine: `GET /api/nodes`."""
    return runtime.engine.workers()


@router.get("/api/queues", tags=["system"])
def queues(runtime: RuntimeDep) -> list[dict[str, object]]:
    """Each queue with active jobs: how many wait, how many run, and since when the oldest waits."""
    return [
        {"queue": q.queue, "queued": q.queued, "running": q.running, "oldest_queued_at": iso(q.oldest_queued_at)}
        for q in runtime.store.queue_stats()
    ]
