"""What a notification says: one event, or a digest of many, as a title, plain lines, a link and
the events as data (for the generic webhook). No parameter values travel, and the values of secret
parameters and passwords in URLs are cut out of the error lines a job left. A message links to the
page that shows what happened: a job's, a task's, the dashboard of a data source."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import quote

from ..core.access import Principal, allowed
from ..core.dashboards import Dashboard
from ..core.task import Task
from ..redaction import HIDDEN, secret_name, without_passwords

ERROR_LINES = 5  # of a job's error, in a message
ERROR_CHARS = 600
DIGEST_LINES = 20  # events listed in a digest; the rest are counted
ParamsOf = Callable[[int], Mapping[str, Any] | None]  # a job's parameters; None once it is deleted

_SAID = {
    "job.failed": "failed",
    "job.succeeded": "succeeded",
    "job.long": "is running long",
    "job.last_retry": "failed; its last attempt is queued",
    "schedule.missed": "missed a scheduled run",
    "source.failing": "is failing",
    "source.recovered": "works again",
    "pool.started": "started",
    "pool.stopped": "stopped",
    "node.down": "stopped answering",
}
_WHAT = {"job": "Job", "schedule": "Schedule", "source": "Source", "pool": "Pool", "node": "Node"}


@dataclass(frozen=True)
class Event:
    """One event as a message tells it (a row of notify_events)."""

    id: int
    kind: str
    at: datetime
    subject: str
    job_id: int | None = None
    task: str | None = None
    message: str | None = None

    def headline(self) -> str:
        family = self.kind.split(".")[0]
        if self.job_id is not None:
            return f"Job {self.job_id} ({self.task}) {_SAID.get(self.kind, self.kind)}"
        return f"{_WHAT.get(family, family.title())} {self.subject} {_SAID.get(self.kind, self.kind)}"

    def path(self, boards: Iterable[Dashboard] = (), reader: Principal | None = None) -> str:
        """The page that shows what happened; a data source's is the first of the dashboards
        showing it that `reader` may see (see `source_place`)."""
        family = self.kind.split(".")[0]
        if self.job_id is not None:
            return f"/jobs/{self.job_id}"
        if family == "schedule":
            return f"/tasks/{quote(self.subject, safe='')}"
        if family == "source":
            return source_place(self.subject, boards, reader)
        return "/workers"


def source_place(source: str, boards: Iterable[Dashboard], reader: Principal | None) -> str:
    """Where a data source is seen: the first dashboard that shows it and `reader` may see. A rule
    that names no reader (an admin's or the code's, sent to addresses) links the first one open to
    every viewer, else the first one. No dashboard shows it: its row in the list of sources."""
    showing = [board for board in boards if source in board.sources]
    if reader is not None:
        seen = [board for board in showing if allowed(reader, board.allow)]
    else:
        seen = [board for board in showing if board.allow is None] or showing
    if seen:
        return f"/dashboards/{quote(seen[0].name, safe='')}"
    return f"/dashboards#source-{quote(source, safe='')}"


@dataclass(frozen=True)
class Message:
    title: str
    lines: list[str]
    link: str
    key: str
    events: list[dict[str, Any]] = field(default_factory=list)
    digest: bool = False

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, "", self.link])


def compose(
    events: Sequence[Event],
    base_url: str,
    key: str,
    rule_name: str,
    tasks: Mapping[str, Task],
    params: ParamsOf,
    zone: tzinfo = UTC,
    boards: Iterable[Dashboard] = (),
    reader: Principal | None = None,
) -> Message:
    """The message of one delivery: its one event, or a digest of several (a flood: one message).
    Times are told in `zone` (the server's configured time zone); the events' data keeps UTC.
    `boards` are the app's dashboards and `reader` the one person the rule tells, if it is one
    (a subscription): a data source's event links the dashboard showing it that they may see."""
    if not events:
        return Message(
            title="[mieruka] Test message",
            lines=[f"A test message of the notification rule {rule_name!r}: it reaches you."],
            link=f"{base_url}/notifications",
            key=key,
        )
    boards = list(boards)
    shown = [_event_json(e, base_url, tasks, params, e.path(boards, reader)) for e in events]
    if len(events) == 1:
        event, data = events[0], shown[0]
        lines = [f"{event.headline()} at {_shown(event.at, zone, '%Y-%m-%d %H:%M:%S %Z')}."]
        if data.get("error"):
            lines += ["", *str(data["error"]).splitlines()]
        return Message(f"[mieruka] {event.headline()}", lines, data["url"], key, shown)
    counts: dict[str, int] = {}
    for event in events:
        counts[event.kind] = counts.get(event.kind, 0) + 1
    summary = ", ".join(f"{n} × {_SAID.get(kind, kind)}" for kind, n in sorted(counts.items()))
    first, last = _shown(events[0].at, zone, "%H:%M:%S"), _shown(events[-1].at, zone, "%H:%M:%S %Z")
    lines = [f"{len(events)} events ({summary}), {first} to {last}:", ""]
    for event, data in zip(events[:DIGEST_LINES], shown, strict=False):
        first = str(data.get("error") or "").split("\n", 1)[0]
        lines.append(f"- {event.headline()}" + (f": {first}" if first else ""))
    if len(events) > DIGEST_LINES:
        lines.append(f"... and {len(events) - DIGEST_LINES} more")
    if len({data["url"] for data in shown}) == 1:  # one source failing and recovering, one node...
        link = shown[0]["url"]
    elif all(e.job_id is not None for e in events):
        link = f"{base_url}/jobs"
    else:
        link = f"{base_url}/notifications"
    return Message(f"[mieruka] {len(events)} events of rule {rule_name}", lines, link, key, shown, digest=True)


def _event_json(event: Event, base_url: str, tasks: Mapping[str, Task], params: ParamsOf, path: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": event.kind,
        "at": event.at.isoformat(),
        "subject": event.subject,
        "title": event.headline(),
        "url": base_url + path,
    }
    if event.job_id is not None:
        data["job_id"], data["task"] = event.job_id, event.task
    if event.message:
        task = tasks.get(event.task or "")
        job_params = params(event.job_id) if event.job_id is not None else None
        text = scrub(event.message, job_params or {}, secret_fields(task) if task is not None else frozenset())
        data["error" if event.kind.startswith("job.") else "message"] = first_lines(text)
    return data


def _shown(at: datetime, zone: tzinfo, form: str) -> str:
    return at.astimezone(zone).strftime(form)


def first_lines(text: str) -> str:
    lines = text.strip().splitlines()[:ERROR_LINES]
    shown = "\n".join(lines)
    return shown if len(shown) <= ERROR_CHARS else shown[: ERROR_CHARS - 1] + "\u2026"


def secret_fields(task: Task) -> frozenset[str]:
    properties = task.signature.json_schema().get("properties", {})
    return frozenset(
        name
        for name, prop in properties.items()
        if isinstance(prop, dict) and (prop.get("writeOnly") is True or prop.get("format") == "password")
    )


def scrub(text: str, params: Mapping[str, Any], secret: frozenset[str]) -> str:
    """`text` without the values of secret parameters (declared, or named like one: password,
    api_key...) and without the passwords of URLs and connection strings."""
    for name, value in params.items():
        if (name in secret or secret_name(str(name))) and value is not None:
            for part in _strings(value):
                if len(part) >= 3:
                    text = text.replace(part, HIDDEN)
    return without_passwords(text)


def _strings(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)]
