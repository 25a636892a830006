"""Monitoring for both engines (what Flower shows Celery users): every process that runs jobs, on
any machine, with its queues, concurrency, running jobs and last heartbeat; queue depths; and the
last hour's throughput and wait/run times. `GET /api/nodes` and `GET /api/stats` are the JSON
twins of the /workers page.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import Query

from ..core.clock import utcnow
from ..nodes import is_up
from ..runtime import Runtime
from .routers import Router
from .serialize import iso
from .state import RuntimeDep

DOWN_SHOWN_FOR = timedelta(hours=24)  # a vanished process stays listed (as down) this long


def nodes(runtime: Runtime) -> list[dict[str, Any]]:
    """Servers' engines and Celery workers, newest heartbeat first; `up` as `nodes.is_up` says."""
    now = utcnow()
    out = []
    for engine in runtime.store.engines():
        age = now - engine.heartbeat_at
        if age > DOWN_SHOWN_FOR:
            continue
        info = engine.info
        out.append(
            {
                "id": engine.id,
                "kind": info.get("kind", "server"),
                "name": info.get("name", f"{engine.host}:{engine.pid}"),
                "host": engine.host,
                "pid": engine.pid,
                "queues": info.get("queues", []),
                "concurrency": info.get("concurrency"),
                "running": engine.running,
                "last_heartbeat": iso(engine.heartbeat_at),
                "seconds_since_heartbeat": round(age.total_seconds(), 1),
                "up": is_up(engine, now, runtime.settings.engine_stale_after),
                "started_at": info.get("started_at"),
                "this_server": engine.id == runtime.engine.id,
            }
        )
    return out


def stats(runtime: Runtime, minutes: int = 60) -> dict[str, Any]:
    """Jobs finished per minute over the last `minutes`, with wait and run times."""
    now = utcnow().replace(second=0, microsecond=0)
    since = now - timedelta(minutes=minutes - 1)
    buckets = {b.start: b for b in runtime.store.timeline(since, 60)}
    series: list[dict[str, Any]] = []
    total = 0
    for i in range(minutes):
        start = since + timedelta(minutes=i)
        b = buckets.get(start)
        total += sum(b.finished.values()) if b else 0
        series.append(
            {
                "start": iso(start),
                "succeeded": b.finished.get("succeeded", 0) if b else 0,
                "failed": b.finished.get("failed", 0) if b else 0,
                "cancelled": b.finished.get("cancelled", 0) if b else 0,
                "wait_avg": b.wait_avg if b else None,
                "wait_max": b.wait_max if b else None,
                "run_avg": b.run_avg if b else None,
                "run_max": b.run_max if b else None,
            }
        )
    return {"minutes": minutes, "since": iso(since), "finished": total, "per_minute": series}


router = Router(tags=["system"])


@router.get("/api/nodes")
def list_nodes(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Every process that runs jobs, on any machine: servers (with their local worker pool) and
    Celery workers, with queues, concurrency, running jobs, last heartbeat and up/down."""
    return nodes(runtime)


@router.get("/api/stats")
def job_stats(runtime: RuntimeDep, minutes: int = Query(60, ge=1, le=1440)) -> dict[str, Any]:
    """Jobs finished per minute over the last `minutes` (default an hour), by final state, with
    average and longest wait (queued to started) and run time in seconds."""
    return stats(runtime, minutes)
