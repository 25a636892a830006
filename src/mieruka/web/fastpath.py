"""The hot routes served without FastAPI's request cycle: submit a job or a batch, run a task now,
get a job, and the event streams (a server holds hundreds open, and FastAPI's layers held about a
quarter of each one's memory for as long as it stayed open).

The security middleware has matched the route, identified the caller, checked access, CSRF and
the body's limits by the time it hands a request here; what FastAPI would add is routing again,
dependency injection, parameter validation through pydantic and the encoding of the answer, which
together cost more than the job's durable row. Here the parameters are read by hand and the same
answer functions as the FastAPI routes' are called (web/tasks.py, web/jobs.py). A request whose
parameters are anything but plainly valid (a bad or repeated query parameter, an unknown one, a
key too long) goes the FastAPI way, so its errors read the same as ever; the FastAPI routes stay
declared for the OpenAPI document.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import events, live
from .access import Target
from .batch import batch_answer
from .jobs import job_answer
from .tasks import run_answer, submit_answer

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Runtime

Handler = Callable[["Runtime", Request, Target, dict[str, str]], Awaitable[Response]]
_INT = re.compile(r"-?[0-9]{1,19}")
_FLOAT = re.compile(r"[0-9]{1,20}(?:\.[0-9]{0,20})?")
MAX_KEY = 200  # the Idempotency-Key header's max_length in web/tasks.py


def _query(scope: Scope, names: frozenset[str]) -> dict[str, str] | None:
    """The query's parameters when each is one of `names` and given once, else None. `topic` (of
    the shared live stream) may be given again and again: its values are joined by newlines (a
    value holding one goes the FastAPI way)."""
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in names or "\n" in value:
            return None
        if name in found:
            if name != "topic":
                return None
            found[name] += "\n" + value
        else:
            found[name] = value
    return found


class _NotPlain(Exception):
    """A parameter that is not plainly valid: the request goes the FastAPI way."""


def _number(text: str | None, low: float, high: float, default: float) -> float:
    """A plain decimal within [low, high]."""
    if text is None:
        return default
    if not _FLOAT.fullmatch(text):
        raise _NotPlain
    value = float(text)
    if not (math.isfinite(value) and low <= value <= high):
        raise _NotPlain
    return value


def _key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_KEY:
        raise _NotPlain
    return key


def _submit(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    text = query.get("priority")
    if text is not None and (not _INT.fullmatch(text) or not -(2**31) <= int(text) < 2**31):
        raise _NotPlain
    priority = int(text) if text is not None else None
    delay = _number(query.get("delay"), 0, 10 * 366 * 86400, 0.0)
    return submit_answer(runtime, request, str(target.params["task"]), priority, delay or None, _key(request))


def _run(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    timeout = _number(query.get("timeout"), 0, math.inf, 30.0)
    if timeout == 0:
        raise _NotPlain  # FastAPI says why (gt=0)
    return run_answer(runtime, request, str(target.params["task"]), timeout, _key(request))


def _batch(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    return batch_answer(runtime, request, str(target.params["task"]))


def _get_job(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    wait = _number(query.get("wait"), 0, 300, 0.0)
    job_id = target.job_id()
    if job_id is None:
        raise _NotPlain
    return job_answer(runtime, request, job_id, wait)


def _count(text: str | None) -> int | None:
    """A plain count (an id, a position) or None."""
    if text is None:
        return None
    if not _INT.fullmatch(text) or not 0 <= int(text) < 2**63:
        raise _NotPlain
    return int(text)


def _last_event_id(request: Request) -> str | None:
    return request.headers.get("last-event-id")


def _stream_events(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    after = _count(query.get("after"))
    name = str(target.params["name"])
    return run_in_threadpool(live.stream_events, runtime, request, name, after, _last_event_id(request))


def _dashboard_events(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    return run_in_threadpool(
        live.dashboard_events, runtime, request, str(target.params["name"]), _last_event_id(request)
    )


def _live_events(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    topics = query.get("topic")
    if topics is None:
        raise _NotPlain  # FastAPI says it is required
    header = _last_event_id(request)
    return run_in_threadpool(live.live_events, runtime, request, topics.split("\n"), query.get("last_event_id"), header)


def _all_events(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    last = _count(query.get("last_event_id"))
    return run_in_threadpool(events.all_events, runtime, request, query.get("task"), last, _last_event_id(request))


def _job_events(runtime: Runtime, request: Request, target: Target, query: dict[str, str]) -> Awaitable[Response]:
    job_id = target.job_id()
    if job_id is None:
        raise _NotPlain
    last = _count(query.get("last_event_id"))
    return run_in_threadpool(events.job_events, runtime, request, job_id, last, _last_event_id(request))


# (method, route template) -> (the query parameters it takes, its handler)
HOT: dict[tuple[str, str], tuple[frozenset[str], Handler]] = {
    ("POST", "/api/tasks/{task}/jobs"): (frozenset({"priority", "delay"}), _submit),
    ("POST", "/api/tasks/{task}/run"): (frozenset({"timeout"}), _run),
    ("POST", "/api/tasks/{task}/jobs/batch"): (frozenset(), _batch),
    ("GET", "/api/jobs/{job_id}"): (frozenset({"wait"}), _get_job),
    ("GET", "/api/streams/{name}/events"): (frozenset({"after"}), _stream_events),
    ("GET", "/api/dashboards/{name}/events"): (frozenset(), _dashboard_events),
    ("GET", "/api/live/events"): (frozenset({"topic", "last_event_id"}), _live_events),
    ("GET", "/api/events"): (frozenset({"task", "last_event_id"}), _all_events),
    ("GET", "/api/jobs/{job_id}/events"): (frozenset({"last_event_id"}), _job_events),
}


class FastPath:
    """Serves a hot route's request (`serve` returns False for the rest, which go to FastAPI).
    An error is answered by the app's own exception handlers, as FastAPI would."""

    def __init__(self, api: FastAPI, runtime: Runtime) -> None:
        self.api = api
        self.runtime = runtime

    async def serve(self, scope: Scope, receive: Receive, send: Send, target: Target) -> bool:
        response = await self._response(scope, receive, target)
        if response is None:
            return False
        # Only the response lives on while it is sent: an event stream is sent for hours.
        await response(scope, receive, send)
        return True

    async def _response(self, scope: Scope, receive: Receive, target: Target) -> Response | None:
        hot = HOT.get((scope["method"], target.template))
        if hot is None:
            return None
        names, handler = hot
        query = _query(scope, names)
        if query is None:
            return None
        request = Request(scope, receive)
        try:
            answer = handler(self.runtime, request, target, query)
        except _NotPlain:
            return None
        try:
            return await answer
        except Exception as exc:
            return await self._handled(request, exc)

    async def _handled(self, request: Request, exc: Exception) -> Response:
        for kind in type(exc).__mro__:
            handler = self.api.exception_handlers.get(kind)
            if handler is not None:
                answer = handler(request, exc)
                response: Response = await answer if isinstance(answer, Awaitable) else answer
                return response
        raise exc
