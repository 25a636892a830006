"""The audit log of the web layer: every successful state-changing request is recorded by the
security middleware (`record`, policy.py names the action); a route that records its own entries
calls `audit(request, "source.refresh", f"source:{name}")`. An entry that cannot be written is
logged; the answer has gone already.

A route says what its automatic entry is about with `note(request, **detail)`; for a job it starts,
`note_job(request, record, task)` (the task, its parameters without secrets or file contents, the
job, "accepted"), then, for a job it waited for, `note_result(request, record)` (its state when the
answer went and its run time); for a job it changed, `note_change(request, runtime, record)`. A
request answered with an error records nothing, whatever was noted. The audit page shows beside an
entry the job as it is now (`shown_entries`), from the job's row: entries never change.

The automatic entries of concurrent requests are written together (`AuditWriter`): one transaction
for all that arrived while the one before was written. A SQLite database has one writer at a time,
and an entry a transaction of its own halved the submissions per second the server could take. An
API submission writes its own entry (its `Ticket`) in the thread that stored its job, right after
it: a client that submits one job after the other waited for a second thread hop before.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

from starlette.requests import Request
from starlette.types import Message, Send

from ..auth.audit import Described, NewEntry, describe, job_detail
from ..auth.audit import Entry as AuditEntry
from ..core.access import Principal
from ..core.clock import utcnow
from ..core.job import JobRecord
from ..core.status import state_label
from ..core.task import Task
from ..i18n import N_, _
from .access import Target
from .errors import outage
from .identity import address, principal
from .ids import parse_id
from .offload import offload
from .policy import AUTO, SAFE_METHODS, Rule
from .state import runtime_of

if TYPE_CHECKING:
    from ..core.params import Signature
    from ..runtime import Runtime

DETAIL_KEY = "mieruka.audit_detail"  # in the request's state: what note() attached
TICKET_KEY = "mieruka.audit_ticket"  # in the request's state: its automatic entry, see Ticket

log = logging.getLogger("mieruka.web")
_JOB_URL = re.compile(r"/jobs/(\d+)(?:$|[/?])")
# The outcomes an entry records besides a job's state, as the audit page words them.
OUTCOMES = {"accepted": N_("accepted"), "duplicate": N_("duplicate"), "cancel requested": N_("cancel requested")}
_DELETED = re.compile(r"deleted \((\w+)\)")
_BATCH = re.compile(r"accepted (\d+), duplicate (\d+)")


@dataclass
class Ticket:
    """A request's automatic entry, for a route that writes it itself in the thread that stores
    its job (web/submission.py), a thread hop and a transaction fewer than the writer's; `written`
    tells the security layer that it is done."""

    actor: str
    action: str
    address: str
    written: bool = False

    def entry(self, subject: str, detail: dict[str, Any] | None) -> NewEntry:
        return (self.actor, self.action, subject, self.address, utcnow(), detail)


def ticket_for(request: Request, who: Principal | None, rule: Rule, target: Target) -> Ticket | None:
    """The automatic entry this request will have if it succeeds, in its state for the route."""
    if request.method in SAFE_METHODS or who is None or rule.audit is None:
        return None
    action = f"{request.method} {target.template}" if rule.audit == AUTO else rule.audit
    found = Ticket(who.name, action, address(request))
    request.scope.setdefault("state", {})[TICKET_KEY] = found
    return found


def ticket_of(request: Request) -> Ticket | None:
    found: Ticket | None = request.scope.get("state", {}).get(TICKET_KEY)
    return found


def audit(request: Request, action: str, target: str = "", **detail: Any) -> None:
    """Record an audit entry for this request's user: `audit(request, "source.refresh", "source:x")`."""
    runtime_of(request).auth.audit.record(principal(request).name, action, target, address(request), detail or None)


def note(request: Request, **detail: Any) -> None:
    """Attach detail to this request's automatic entry (later keys replace earlier ones)."""
    state = request.scope.setdefault("state", {})
    state[DETAIL_KEY] = {**state.get(DETAIL_KEY, {}), **detail}


def note_job(request: Request, record: JobRecord, task: Task | None, outcome: str = "accepted") -> None:
    """This request started the job `record` of `task`. `outcome`: accepted, or duplicate (the same
    idempotency key found the job sent before)."""
    note(request, **job_entry(record, task, outcome))


def note_change(request: Request, runtime: Runtime, record: JobRecord, outcome: str | None = None) -> None:
    """This request changed the job `record` (cancel, retry, delete): what it is, and its state after
    (`outcome` when the record does not say it)."""
    note(request, **change_detail(runtime, record, outcome))


def change_detail(runtime: Runtime, record: JobRecord, outcome: str | None = None) -> dict[str, Any]:
    """The detail of a change to the job `record` (see note_change)."""
    if outcome is None:
        stopping = record.cancel_requested and not record.finished
        outcome = "cancel requested" if stopping else record.status.value
    return job_entry(record, runtime.tasks.get(record.task) if record.task in runtime.tasks else None, outcome)


def job_entry(record: JobRecord, task: Task | None, outcome: str) -> dict[str, Any]:
    """What an entry keeps of a job: its task, its parameters without secrets or file contents, its
    id, and `outcome`. `task` None: a task no longer declared (names alone tell the secrets)."""
    secret, files = (secret_params(task), task.signature.file_fields) if task is not None else ((), ())
    return job_detail(record.task, record.params, secret, files, job=record.id, outcome=outcome)


def note_result(request: Request, record: JobRecord) -> None:
    """This request waited for `record`: its state when the answer went (final, or still running)
    and its run time."""
    note(request, outcome=record.status.value, duration=record.duration)


_SECRETS: WeakKeyDictionary[Signature, frozenset[str]] = WeakKeyDictionary()


def secret_params(task: Task) -> frozenset[str]:
    """The parameters the task declares secret: `writeOnly` or `format: password` in their schema
    (`Annotated[str, Field(json_schema_extra={"writeOnly": True})]`)."""
    found = _SECRETS.get(task.signature)  # asked at each submission: the schema is made once
    if found is None:
        properties = task.signature.json_schema().get("properties", {})
        found = frozenset(
            name
            for name, prop in properties.items()
            if isinstance(prop, dict) and (prop.get("writeOnly") is True or prop.get("format") == "password")
        )
        _SECRETS[task.signature] = found
    return found


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
        self.pending: list[tuple[NewEntry, asyncio.Future[None]]] = []
        self.draining: asyncio.Task[None] | None = None

    async def add(
        self, actor: str, action: str, target: str, address: str, detail: dict[str, Any] | None = None
    ) -> None:
        written = asyncio.get_running_loop().create_future()
        self.pending.append(((actor, action, target, address, utcnow(), detail), written))
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

    def _write(self, entries: list[NewEntry]) -> None:
        self.runtime.auth.audit.record_many(entries)


async def record(
    writer: AuditWriter, request: Request, ticket: Ticket | None, target: Target, outcome: Outcome
) -> None:
    """The automatic entry of a state-changing request that succeeded (`ticket_for`'s)."""
    if ticket is None or ticket.written:
        return
    if outcome.status is None or outcome.status >= 400:
        return
    detail = request.scope.get("state", {}).get(DETAIL_KEY)
    subject = _subject(target.params, outcome.location, detail)
    try:
        await writer.add(ticket.actor, ticket.action, subject, ticket.address, detail)
    except Exception as exc:
        outage(request, exc)
        log.error("audit entry not recorded: %s %s by %s (%s)", ticket.action, subject, ticket.actor, ticket.address)


def _subject(params: dict[str, Any], location: str, detail: dict[str, Any] | None) -> str:
    """What the entry is about: the job a new job's Location names, or the job the route noted (a
    quick task's inline answer names none), else the route's parameters."""
    match = _JOB_URL.search(location)
    if match:
        return f"job:{match.group(1)}"
    if "job_id" in params:
        return f"job:{params['job_id']}"
    noted = detail.get("job") if detail else None
    if isinstance(noted, int) and not isinstance(noted, bool):
        return f"job:{noted}"
    return " ".join(f"{k}:{v}" for k, v in params.items())


def entry_job(target: str, detail: dict[str, Any] | None) -> int | None:
    """The job an entry is about: its detail's, else its target's (job:17)."""
    job = (detail or {}).get("job")
    if isinstance(job, int) and not isinstance(job, bool):
        return job
    return parse_id(target[4:]) if target.startswith("job:") else None


def jobs_now(runtime: Runtime, job_ids: set[int]) -> dict[int, JobRecord]:
    """The rows of those jobs that still exist: what the audit page shows beside an entry, as the
    job's state now (the entry itself never changes)."""
    found = {}
    for job_id in sorted(job_ids):
        record = runtime.store.get_job(job_id)
        if record is not None:
            found[job_id] = record
    return found


@dataclass(frozen=True)
class Shown:
    """An entry as the audit page shows it: its detail in parts, and the job it is about as that
    job is now (its row, when it still exists; not part of the entry)."""

    entry: AuditEntry
    detail: Described
    job: int | None
    job_now: JobRecord | None


def shown_entries(runtime: Runtime, entries: list[AuditEntry]) -> list[Shown]:
    """The audit page's rows: each entry with its detail in parts and its job as it is now (not
    when the row holds a job of another task: the database was replaced since)."""
    jobs = [entry_job(e.target, e.detail) for e in entries]
    now = jobs_now(runtime, {job for job in jobs if job is not None})
    shown = []
    for entry, job in zip(entries, jobs):
        detail = describe(entry.detail)
        record = now.get(job) if job is not None else None
        if record is not None and detail.task and record.task != detail.task:
            record = None
        shown.append(Shown(entry, detail, job, record))
    return shown


def outcome_label(outcome: str) -> str:
    """An entry's recorded outcome (job.py, batch.py and submission.py write them) as people read it."""
    if outcome in OUTCOMES:
        return _(OUTCOMES[outcome])
    if deleted := _DELETED.fullmatch(outcome):
        return _("deleted (%(state)s)", state=state_label(deleted.group(1)))
    if batch := _BATCH.fullmatch(outcome):
        return _("accepted %(accepted)s, duplicate %(duplicate)s", accepted=batch.group(1), duplicate=batch.group(2))
    return state_label(outcome)
