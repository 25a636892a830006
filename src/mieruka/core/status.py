"""Job states and the one table of allowed transitions."""

from __future__ import annotations

from enum import Enum

from ..i18n import N_, _


class JobStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    def __str__(self) -> str:
        return self.value


# The words pages show for job and step states (a step may also be pending or skipped).
LABELS: dict[str, str] = {
    "queued": N_("queued"),
    "running": N_("running"),
    "succeeded": N_("succeeded"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
    "pending": N_("pending"),
    "skipped": N_("skipped"),
}


def state_label(value: str) -> str:
    """A job's or step's state as people read it; a value without a label is shown as it is."""
    return _(LABELS[value]) if value in LABELS else value


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})

# running -> queued is a retry after a failed attempt or the re-queue of an interrupted job;
# failed/cancelled -> queued is a retry asked for by a person.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED}),
}
