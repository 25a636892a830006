"""One attempt of a job, lived the same way by every executor: claim → run → settle.

- claim: a `Claim` in the store moves a queued job to running on this attempt (the engine's loop
  claims for the local workers, engine/dispatch.py; a Celery pool process claims the job its
  message names, executors/celery_worker.py);
- run: `run`, in the process that runs the job: the recorder turns what the job reports into store
  changes and events, and its outcome into the change that ends the attempt;
- settle: `end` is the one change that ends a running attempt, whoever settles it (the worker with
  its outcome, the engine or the Celery worker for an attempt cut short: `cut_short`); its event is
  `core.events.job_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from .artifacts.base import ArtifactStorage
from .core import outcome
from .core.clock import utcnow
from .core.job import JobRecord
from .core.outcome import Settled
from .core.status import JobStatus
from .core.task import Task
from .notes import note
from .runner import Abandon, Gate, JobSpec, Outcome, Reporter, run_job
from .store.base import Change, Transition

RUNNING = frozenset({JobStatus.RUNNING})
CANCEL, TIMEOUT = "cancel", "timeout"  # why an engine or a worker killed a running job


class Recorder(Reporter, Protocol):
    """What records an attempt (recorder.AttemptRecorder)."""

    def begin(self, record: JobRecord) -> None: ...

    def finish(self, task: Task | None, result: Outcome) -> list[Change]: ...


class Capture(Protocol):
    """What captures the job's output at the file descriptors (capture.FdCapture)."""

    job_id: int | None

    def drain(self) -> None: ...


def run(
    recorder: Recorder,
    capture: Capture,
    task: Task | None,
    record: JobRecord,
    artifacts: ArtifactStorage,
    upload_root: Callable[[], AbstractContextManager[Path]],
    gate: Gate | None = None,
) -> list[Change]:
    """Run a claimed job's attempt in this process; returns the changes that end it. Raises
    Abandon, without calling the task's function, if `gate` closed first."""
    recorder.begin(record)
    spec = JobSpec(record.id, record.task, record.params, record.attempts, record.max_attempts)
    capture.job_id = record.id
    try:
        if task is None:
            result = Outcome(ok=False, error=note("error.worker_no_task", task=repr(record.task)))
        else:
            with upload_root() as uploads:
                result = run_job(task, spec, recorder, artifacts, uploads, gate)
    except Abandon:
        raise
    except BaseException as exc:
        result = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        capture.drain()
        capture.job_id = None
    return recorder.finish(task, result)


def end(record: JobRecord, status: JobStatus, fields: dict[str, Any]) -> Transition:
    """The change that ends the running attempt of `record` (a job that moved on meanwhile, or is
    on another attempt, is left alone); a job that ends is read back for its end event."""
    return Transition(record.id, status, RUNNING, fields, attempt=record.attempts, read_back=status.finished)


def cut_short(record: JobRecord, task: Task | None, reason: str, killed_for: str | None = None) -> Settled:
    """How an attempt ends that did not finish: cancelled, timed out (`killed_for`), or its process
    lost for `reason`; a failure queues the retry while attempts remain."""
    now = utcnow()
    if killed_for == CANCEL:
        return outcome.cancelled(now)
    if killed_for == TIMEOUT and task is not None and task.timeout is not None:
        reason = note("error.timed_out", seconds=task.timeout)
    return outcome.failed(record.attempts, record.max_attempts, task, reason, None, now)
