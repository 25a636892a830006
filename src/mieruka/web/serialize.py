"""Job records and log lines as JSON, and the JSON answer of the hot routes (orjson where installed)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.responses import Response

from ..core.job import JobRecord
from ..core.steps import StepRecord
from ..notes import json_of
from ..store.base import LogLine

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency; the standard library is the fallback
    orjson = None  # type: ignore[assignment]


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON. orjson is 5-10x faster than json; it refuses integers beyond 64 bits,
    which the standard library writes."""
    if orjson is not None:
        try:
            return orjson.dumps(data)
        except TypeError:
            pass
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class JsonAnswer(Response):
    """starlette's JSONResponse, encoded by dumps()."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def job_json(record: JobRecord, *, full: bool = True, root: str = "") -> dict[str, Any]:
    """A job for the API; `full=False` (lists) leaves out the result and the traceback."""
    data: dict[str, Any] = {
        "id": record.id,
        "task": record.task,
        "status": record.status.value,
        "params": record.params,
        "owner": record.owner,
        "priority": record.priority,
        "queue": record.queue,
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "progress": record.progress,
        "message": record.message,
        "message_note": json_of(record.message),  # mieruka's own message: its code, for any language
        "error": record.error,
        "error_note": json_of(record.error),
        "worker": record.worker,
        "schedule": record.schedule,
        "idempotency_key": record.idempotency_key,
        "cancel_requested": record.cancel_requested,
        "log_lines": record.log_lines,
        "created_at": iso(record.created_at),
        "run_after": iso(record.run_after),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "duration": record.duration,
        "has_result": record.result is not None,
        "url": f"{root}/api/jobs/{record.id}",
    }
    if full:
        data["result"] = record.result
        data["traceback"] = record.traceback
        data["artifacts"] = [
            {
                "name": a.name,
                "size": a.size,
                "content_type": a.content_type,
                "created_at": iso(a.created_at),
                "url": artifact_url(root, record.id, a.name),
            }
            for a in record.artifacts
        ]
    return data


def artifact_url(root: str, job_id: int, name: str) -> str:
    """Names may hold spaces, '#', '?', '%' or any script: one path segment, percent-encoded."""
    return f"{root}/api/jobs/{job_id}/artifacts/{quote(name, safe='')}"


def log_json(line: LogLine) -> dict[str, Any]:
    return {"seq": line.seq, "at": iso(line.at), "stream": line.stream, "text": line.text, "step": line.step}


def step_json(step: StepRecord, *, root: str = "") -> dict[str, Any]:
    base = f"{root}/api/jobs/{step.job_id}/steps/{quote(step.name, safe='')}"
    return {
        "name": step.name,
        "position": step.position,
        "kind": step.kind,
        "status": step.status.value,
        "depends_on": step.depends_on,
        "description": step.description,
        "allow_failure": step.allow_failure,
        "parent": step.parent,
        "started_at": iso(step.started_at),
        "finished_at": iso(step.finished_at),
        "duration": step.duration,
        "progress": step.progress,
        "message": step.message,
        "message_note": json_of(step.message),
        "output": step.output,
        "error": step.error,
        "error_note": json_of(step.error),
        "artifacts": step.artifacts,
        "reused": step.reused,
        "logs_url": f"{base}/logs",
    }
