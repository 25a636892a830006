"""How an attempt ends: the new state and the fields to record. Pure logic, shared by the engine
(for workers that died) and by workers recording their own results."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..notes import note
from .status import JobStatus
from .task import Task

Settled = tuple[JobStatus, dict[str, Any]]


def succeeded(result: Any, now: datetime) -> Settled:
    return JobStatus.SUCCEEDED, {
        "finished_at": now,
        "result": result,
        "error": None,
        "traceback": None,
        "progress": 1.0,
    }


def cancelled(now: datetime) -> Settled:
    return JobStatus.CANCELLED, {"finished_at": now, "message": note("job.cancelled")}


def failed(attempts: int, max_attempts: int, task: Task | None, error: str, tb: str | None, now: datetime) -> Settled:
    """Failed for good, or back to the queue after a backoff while attempts remain."""
    if task is not None and attempts < max_attempts:
        delay = task.backoff(attempts)
        return JobStatus.QUEUED, {
            "error": error,
            "traceback": tb,
            "worker": None,
            "engine_id": None,
            "run_after": now + timedelta(seconds=delay) if delay else None,
            "message": note("job.retrying", attempt=attempts, delay=float(delay)),
        }
    return JobStatus.FAILED, {"finished_at": now, "error": error, "traceback": tb}
