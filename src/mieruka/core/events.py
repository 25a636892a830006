"""Events about jobs, as published on the event bus and sent to browsers over SSE."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..notes import public, stored

if TYPE_CHECKING:
    from .job import JobRecord


@dataclass(frozen=True, slots=True)
class Event:
    """`kind` is one of: state, progress, log, artifact. `topic` is "job:<id>".
    `id` is assigned by the bus: increasing, so a reconnecting client can resume after it.
    `record`, on the state event of a job's end, is the whole job as stored then (JobRecord.to_json),
    so that whoever waits for the job need not read it from the store. It goes to the bus's live
    subscribers only: never to browsers, never into the replay ring, and a bus may leave out a large one."""

    kind: str
    job_id: int
    task: str
    data: dict[str, Any]
    id: int = 0
    extra_topics: tuple[str, ...] = field(default=())
    record: Mapping[str, Any] | None = None

    @property
    def topic(self) -> str:
        return f"job:{self.job_id}"

    def numbered(self, id: int, keep_record: bool = True) -> Event:
        """This event as the bus numbered it: `dataclasses.replace` at half its cost (the bus
        copies every event once or twice)."""
        return Event(
            self.kind, self.job_id, self.task, self.data, id, self.extra_topics, self.record if keep_record else None
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as browsers get it: mieruka's own texts in English, each with its note."""
        return {"id": self.id, "kind": self.kind, "job_id": self.job_id, "task": self.task, **public(self.data)}


_STATE_FIELDS = (
    "attempts",
    "max_attempts",
    "worker",
    "error",
    "message",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "run_after",
)


def state_event(job_id: int, task: str, status: str, fields: dict[str, Any], record: JobRecord | None = None) -> Event:
    """The `state` event of a job entering `status`: what the engine and remote workers publish;
    `record` is the job as it stands now that it ended."""
    data: dict[str, Any] = {"status": status}
    for key in _STATE_FIELDS:
        if key in fields:
            value = fields[key]
            data[key] = value.isoformat() if isinstance(value, datetime) else stored(value)
    if "result" in fields:
        data["has_result"] = fields["result"] is not None
    return Event(
        "state", job_id, task, data, extra_topics=(f"task:{task}",), record=None if record is None else record.to_json()
    )


def job_state(record: JobRecord, status: str, fields: dict[str, Any], now: JobRecord | None = None) -> Event:
    """The `state` event of `record` entering `status`, with its attempt count and times, and
    `fields` (what the transition sets) on top: what the engine and the Celery workers publish."""
    return state_event(
        record.id,
        record.task,
        status,
        {
            "attempts": record.attempts,
            "max_attempts": record.max_attempts,
            "created_at": record.created_at,
            "started_at": record.started_at,
            **fields,
        },
        now,
    )
