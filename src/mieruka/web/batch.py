"""Many jobs of one task in one request: `POST /api/tasks/{task}/jobs/batch` with
`{"jobs": [{"params": {...}, "priority": 5, "delay": 60, "idempotency_key": "row-17"}, ...]}`.

Every item is checked before any job is queued: one bad item is a 422 naming it (`jobs[3].x`), and
nothing is queued. The jobs are then queued in order, each a durable row like any other, in one trip
to a worker thread. The items are not one transaction: should the database fail half way, the
answer is an error and the jobs before it stay queued; give the items idempotency keys and send the
batch again to queue just the rest (a repeated key answers its first job, `created` false).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..auth.audit import shown_params
from ..core.job import JobRecord
from ..core.task import Task
from ..errors import ValidationError
from ..runtime import Runtime
from .audit import note, secret_params
from .identity import owner_name
from .limits import MAX_ERROR_FIELDS
from .offload import offload
from .serialize import JsonAnswer, job_json

MAX_JOBS = 1000  # jobs in one batch; the body's size is bounded by max_body_size
MAX_NOTED, MAX_NOTED_SIZE = 20, 2048  # the audit entry keeps the items' parameters within both
MAX_KEY = 200
MAX_DELAY = 10 * 366 * 86400
_FIELDS = frozenset({"params", "priority", "delay", "idempotency_key"})

# The request body in the OpenAPI document (the route reads it by hand: see `items`).
BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["jobs"],
    "additionalProperties": False,
    "properties": {
        "jobs": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_JOBS,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "params": {"type": "object", "description": "The task's parameters, as for one job."},
                    "priority": {"type": "integer", "description": "Higher runs first; default the task's."},
                    "delay": {"type": "number", "minimum": 0, "description": "Start no sooner (seconds)."},
                    "idempotency_key": {
                        "type": "string",
                        "maxLength": MAX_KEY,
                        "description": "Sending this item again answers its first job instead of queueing another.",
                    },
                },
            },
        }
    },
}


@dataclass(frozen=True)
class Item:
    params: dict[str, Any]
    priority: int | None = None
    delay: float | None = None
    idempotency_key: str | None = None


def items(body: bytes) -> list[Item]:
    """The body's items, or ValidationError naming what is wrong with it."""
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list) or set(data) != {"jobs"}:
        raise ValidationError(
            'the body must be {"jobs": [{"params": {...}}, ...]}', [{"field": "jobs", "message": "required list"}]
        )
    raw = data["jobs"]
    if not raw or len(raw) > MAX_JOBS:
        raise ValidationError(
            f"jobs: a batch holds 1 to {MAX_JOBS:,} jobs, not {len(raw):,}",
            [{"field": "jobs", "message": f"1 to {MAX_JOBS} items"}],
        )
    found, problems = [], []
    for index, entry in enumerate(raw):
        try:
            found.append(_item(entry))
        except ValueError as exc:
            problems.append({"field": f"jobs[{index}]", "message": str(exc)})
    if problems:
        raise _invalid(problems)
    return found


def _item(entry: Any) -> Item:
    if not isinstance(entry, dict):
        raise ValueError('an item is an object: {"params": {...}}')
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}; an item has {', '.join(sorted(_FIELDS))}")
    params = entry.get("params", {})
    priority, delay, key = entry.get("priority"), entry.get("delay"), entry.get("idempotency_key")
    if not isinstance(params, dict):
        raise ValueError("params: must be an object of the task's parameters")
    if priority is not None and (type(priority) is not int or not -(2**31) <= priority < 2**31):
        raise ValueError("priority: must be a whole number (32 bits)")
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, int | float) or not (math.isfinite(delay) and delay >= 0)
    ):
        raise ValueError("delay: must be a number of seconds, 0 or more")
    if delay is not None and delay > MAX_DELAY:
        raise ValueError("delay: at most 10 years")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= MAX_KEY):
        raise ValueError(f"idempotency_key: must be text of 1 to {MAX_KEY} characters")
    return Item(params, priority, float(delay) if delay else None, key)


def _invalid(problems: list[dict[str, str]]) -> ValidationError:
    shown = problems[:MAX_ERROR_FIELDS]
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in shown[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return ValidationError(f"invalid batch, nothing queued: {summary}{more}", shown)


async def batch_answer(runtime: Runtime, request: Request, task: str) -> Response:
    """Queue the batch's jobs (the route's and web/fastpath.py's answer)."""
    found = runtime.tasks.get(task)
    batch = items(await request.body())
    signature = found.signature
    problems = []
    for index, item in enumerate(batch):
        try:
            signature.validate(item.params)
        except ValidationError as exc:
            fields = exc.fields or [{"field": "params", "message": exc.message}]
            problems += [{"field": f"jobs[{index}].{f['field']}", "message": f["message"]} for f in fields]
    if problems:
        raise _invalid(problems)
    owner = owner_name(request)
    engine = runtime.engine

    def queue() -> list[tuple[Any, bool]]:
        return [
            engine.submit(
                found.name,
                item.params,
                owner=owner,
                priority=item.priority,
                idempotency_key=item.idempotency_key,
                delay=item.delay,
            )
            for item in batch
        ]

    queued = await offload(queue)
    _note(request, found, [record for record, _ in queued], sum(created for _, created in queued))
    root = request.scope.get("root_path", "")
    return JsonAnswer(
        {"jobs": [job_json(record, full=False, root=root) for record, _ in queued], "created": [c for _, c in queued]},
        status_code=202 if any(created for _, created in queued) else 200,
    )


def _note(request: Request, task: Task, records: list[JobRecord], created: int) -> None:
    """The batch's audit detail: the task, how many jobs (new and found by their keys), the first
    and last job, and each job's parameters when they are small together."""
    params: list[dict[str, Any]] = []
    if len(records) <= MAX_NOTED:
        secret = secret_params(task)
        params = [shown_params(r.params, secret, task.signature.file_fields) for r in records]
    small = bool(params) and len(json.dumps(params, ensure_ascii=False, default=str)) <= MAX_NOTED_SIZE
    note(
        request,
        task=task.name,
        count=len(records),
        created=created,
        outcome="accepted" if created == len(records) else f"accepted {created}, duplicate {len(records) - created}",
        first_job=records[0].id,
        last_job=records[-1].id,
        **({"params": params} if small else {}),
    )
