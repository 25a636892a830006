"""The one way the engine changes a job's state outside a worker's batch: written only from the
state the job was seen in (a concurrent change is never overwritten), then told on the bus."""

from __future__ import annotations

from typing import Any

from ..bus.base import EventBus
from ..core.events import Event, job_state
from ..core.job import JobRecord
from ..core.status import TRANSITIONS, JobStatus
from ..errors import ConflictError
from ..store.base import JobStore, Transition


class States:
    def __init__(self, store: JobStore, bus: EventBus) -> None:
        self.store = store
        self.bus = bus

    def move(self, record: JobRecord, to: JobStatus, fields: dict[str, Any], emit: bool = True) -> bool:
        """Move the job from the state `record` was seen in to `to`; False if it moved meanwhile."""
        if to not in TRANSITIONS[record.status]:
            raise ConflictError(f"job {record.id} cannot go from {record.status.value} to {to.value}")
        applied = self.store.apply(
            [Transition(record.id, to, frozenset({record.status}), fields, read_back=to.finished)]
        )
        ok = applied.done[0]
        if ok and emit:
            self.tell(record, applied.after.get(0), status=to, **fields)
        return ok

    def note(self, job_id: int, status: JobStatus, fields: dict[str, Any]) -> None:
        """Set fields of a job that stays in `status` (a note while it waits, a cancel asked of a
        running job), no event: nothing changed state."""
        self.store.apply([Transition(job_id, status, frozenset({status}), fields)])

    def tell(self, record: JobRecord, now: JobRecord | None = None, /, **overrides: Any) -> None:
        """Tell of the job's new state; `now`, the job as stored at its end, travels with it."""
        self.bus.publish(self.event(record, now, **overrides))

    @staticmethod
    def event(record: JobRecord, now: JobRecord | None = None, /, **overrides: Any) -> Event:
        status = overrides.pop("status", record.status)
        return job_state(record, status.value, overrides, now)
