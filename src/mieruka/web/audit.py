"""The audit log of the web layer: every successful state-changing request is recorded by the
security middleware (`record`, policy.py names the action); a route that records its own entries
calls `audit(request, "source.refresh", f"source:{name}")`. An entry that cannot be written is
logged; the answer has gone already.

The automatic entries of concurrent requests are written together (`AuditWriter`): one transaction
for all that arrived while the one before was written. A SQLite database has one writer at a time,
and an entry a transaction of its own halved the submissions per second the server could take.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.types import Message, Send

from ..core.access import Principal
from ..core.clock import utcnow
from .access import Target
from .errors import outage
from .identity import address, principal
from .offload import offload
from .policy import AUTO, SAFE_METHODS, Rule
from .state import runtime_of

if TYPE_CHECKING:
    from datetime import datetime

    from ..runtime import Runtime

Entry = tuple[str, str, str, str, "datetime"]  # actor, action, target, address, at

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


class AuditWriter:
    """Writes the entries handed to `add` in group transactions; `add` returns once its entry is
    written, or raises what stopped it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pending: list[tuple[Entry, asyncio.Future[None]]] = []
        self.draining: asyncio.Task[None] | None = None

    async def add(self, actor: str, action: str, target: str, address: str) -> None:
        written = asyncio.get_running_loop().create_future()
        self.pending.append(((actor, action, target, address, utcnow()), written))
        if self.draining is None:
            self.draining = asyncio.ensure_future(self._drain())
        await written

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    await offload(self._write, [entry for entry, _ in batch])
                except Exception as exc:
                    for _, written in batch:
                        if not written.done():  # its request was cancelled meanwhile
                            written.set_exception(exc)
                else:
                    for _, written in batch:
                        if not written.done():
                            written.set_result(None)
        finally:
            self.draining = None

    def _write(self, entries: list[Entry]) -> None:
        log = self.runtime.auth.audit
        with log.db.write() as conn:
            for actor, action, target, address, at in entries:
                log.record(actor, action, target, address, None, at, conn)


async def record(
    writer: AuditWriter, request: Request, who: Principal | None, rule: Rule, target: Target, outcome: Outcome
) -> None:
    """The automatic entry of a state-changing request that succeeded."""
    if request.method in SAFE_METHODS or who is None or rule.audit is None:
        return
    if outcome.status is None or outcome.status >= 400:
        return
    action = f"{request.method} {target.template}" if rule.audit == AUTO else rule.audit
    subject = _subject(target.params, outcome.location)
    try:
        await writer.add(who.name, action, subject, address(request))
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
