"""The executor interface and the messages an executor hands back to the engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..core.events import Event
from ..core.job import JobRecord
from ..store.base import Change


@dataclass(frozen=True)
class Recorded:
    """Changes for the store and events for the bus that a worker recorded (progress, logs, ...)."""

    changes: Sequence[Change]
    events: Sequence[Event]


@dataclass(frozen=True)
class Finished:
    """The worker is done with the job; `changes` end the attempt (its final transition).
    `saved` is called once they are in the store (the local executor notes its spooled copy saved)."""

    job_id: int
    changes: Sequence[Change]
    saved: Callable[[], None] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Died:
    """The process running the job ended without finishing it (killed, crashed, exited)."""

    job_id: int
    reason: str


WorkerMessage = Recorded | Finished | Died


class Executor(Protocol):
    def start(self) -> None:
        """Start workers; returns without waiting for them to be ready."""

    def free_slots(self) -> int:
        """How many more jobs can start now."""

    def run(self, record: JobRecord) -> str:
        """Hand a claimed (running) job to a free worker; returns the worker's name."""

    def kill(self, job_id: int) -> bool:
        """Stop a running job and every process it started; its Died message follows."""

    def wait(self, timeout: float | None) -> list[WorkerMessage]:
        """Block until workers report (or `wake()` or the timeout); returns their messages."""

    def wake(self) -> None:
        """Make a blocked `wait` return now (thread-safe)."""

    def workers(self) -> list[dict[str, object]]:
        """Name, pid, state and current job of each worker."""

    def stop(self) -> list[int]:
        """Stop all workers; returns the ids of jobs that were still running."""


# A job may reach the broker before its row is stored (the engine overlaps the two): a remote
# worker that finds no row waits this long for it, and the engine sends the job again if its row
# came later than half of it after the first send.
NEW_JOB_GRACE = 5.0


@runtime_checkable
class RemoteExecutor(Executor, Protocol):
    """An executor whose workers claim jobs from the store themselves (Celery): the engine sends
    each queued job to the broker instead of claiming it; `free_slots` is always 0, and a worker
    records progress, logs and the outcome in the store and on the bus directly."""

    def send(self, record: JobRecord, delay: float = 0.0) -> None:
        """Put a queued job on the broker, to be run by a worker in `delay` seconds."""


@runtime_checkable
class Recovering(Protocol):
    """An executor whose workers may have recorded outcomes that a killed server never saved."""

    def recover(self) -> list[Finished]:
        """Those outcomes, for the engine to save at start-up (before `start`)."""
