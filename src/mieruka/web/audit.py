"""The audit log of the web layer: every successful state-changing request is recorded by the
security middleware (`record`, policy.py names the action); a route that records its own entries
calls `audit(request, "source.refresh", f"source:{name}")`. An entry that cannot be written is
logged; the answer has gone already."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import Message, Send

from ..core.access import Principal
from .access import Target
from .errors import outage
from .identity import address, principal
from .policy import AUTO, SAFE_METHODS, Rule
from .state import runtime_of

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("mieruka.web")
_JOB_URL = re.compile(r"/jobs/(\d+)(?:$|[/?])")


def audit(request: Request, action: str, target: str = "", **detail: Any) -> None:
    """Record an audit entry for this request's user: `audit(request, "source.refresh", "source:x")`."""
    runtime_of(request).auth.audit.record(principal(request).name, action, target, address(request), detail or None)


@dataclass
class Outcome:
    """What the route answered, as far as its audit entry needs it."""

    status: int | None = None
    location: str = ""

    def watching(self, send: Send) -> Callable[[Message], Awaitable[None]]:
        """`send`, noting the status and Location of the answer on the way."""

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and self.status is None:
                self.status = message["status"]
                self.location = next(
                    (v.decode("latin-1") for k, v in message.get("headers", []) if k.lower() == b"location"), ""
                )
            await send(message)

        return watched


async def record(
    runtime: Runtime, request: Request, who: Principal | None, rule: Rule, target: Target, outcome: Outcome
) -> None:
    """The automatic entry of a state-changing request that succeeded."""
    if request.method in SAFE_METHODS or who is None or rule.audit is None:
        return
    if outcome.status is None or outcome.status >= 400:
        return
    action = f"{request.method} {target.template}" if rule.audit == AUTO else rule.audit
    subject = _subject(target.params, outcome.location)
    try:
        await run_in_threadpool(runtime.auth.audit.record, who.name, action, subject, address(request), None)
    except Exception as exc:
        outage(request, exc)
        log.error("audit entry not recorded: %s %s by %s (%s)", action, subject, who.name, address(request))


def _subject(params: dict[str, Any], location: str) -> str:
    """What the entry is about: the job a new job's Location names, else the route's parameters."""
    match = _JOB_URL.search(location)
    if match:
        return f"job:{match.group(1)}"
    if "job_id" in params:
        return f"job:{params['job_id']}"
    return " ".join(f"{k}:{v}" for k, v in params.items())
