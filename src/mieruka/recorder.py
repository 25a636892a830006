"""Records one attempt of a job from the process that runs it: progress, log lines, artifacts and
the outcome become store changes and bus events, handed to a sink.

The local worker's sink sends them to the engine, which applies many at once in one transaction;
a remote (Celery) worker's sink writes them to the store and bus itself. Either way the same code
decides what is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from . import attempt
from .core import outcome as settle
from .core.clock import utcnow
from .core.events import Event
from .core.job import ArtifactInfo, JobRecord
from .core.status import JobStatus
from .core.steps import StepRecord
from .core.task import Task
from .notes import stored
from .runner import Outcome
from .store.base import ArtifactAdded, Change, LogAppend, ProgressUpdate, StepSaved, StepsPlanned

PROGRESS_EVERY = 0.1  # seconds between progress writes and events per job
Sink = Callable[[list[Change], list[Event]], None]


class AttemptRecorder:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._lock = threading.Lock()
        self._job: JobRecord | None = None
        self._next_seq = 1
        self._pending: tuple[float | None, str | None] | None = None
        self._last_progress = 0.0

    @property
    def busy(self) -> bool:
        """Whether a job is being recorded."""
        return self._job is not None

    def begin(self, record: JobRecord) -> None:
        """Start recording a job that was claimed (it is running, on attempt `record.attempts`)."""
        with self._lock:
            self._job = record
            self._next_seq = record.log_lines + 1
            self._pending = None
        if record.attempts > 1:
            self.lines(record.id, [(utcnow(), "system", f"--- attempt {record.attempts} of {record.max_attempts} ---")])

    # -- runner.Reporter ---------------------------------------------------------------------
    def progress(self, job_id: int, fraction: float | None, message: str | None) -> None:
        with self._lock:
            prev = self._pending or (None, None)
            self._pending = (fraction if fraction is not None else prev[0], message if message is not None else prev[1])
            due = time.monotonic() - self._last_progress >= PROGRESS_EVERY
        if due:
            self.tick()

    def artifact(self, job_id: int, info: ArtifactInfo) -> None:
        job = self._job
        if job is None or job.id != job_id:
            return
        self.sink(
            [ArtifactAdded(job_id, info)],
            [
                Event(
                    "artifact",
                    job_id,
                    job.task,
                    {"name": info.name, "size": info.size, "content_type": info.content_type},
                )
            ],
        )

    def lines(self, job_id: int, lines: Sequence[tuple[datetime, str, str]], step: str | None = None) -> None:
        with self._lock:
            job = self._job
            if job is None or job.id != job_id or not lines:
                return
            first = self._next_seq
            self._next_seq += len(lines)
        data = {"first_seq": first, "lines": [[at.isoformat(), stream, text] for at, stream, text in lines]}
        if step is not None:
            data["step"] = step
        self.sink([LogAppend(job_id, first, list(lines), step)], [Event("log", job_id, job.task, data)])

    # -- pipelines (mieruka.pipeline.run) ------------------------------------------------------
    def steps_planned(self, job_id: int, steps: Sequence[StepRecord]) -> None:
        job = self._job
        if job is None or job.id != job_id:
            return
        self.sink(
            [StepsPlanned(job_id, list(steps))],
            [Event("steps", job_id, job.task, {"steps": [step_event(s) for s in steps]})],
        )

    def step_saved(self, step: StepRecord) -> None:
        job = self._job
        if job is None or job.id != step.job_id:
            return
        self.sink([StepSaved(step)], [Event("step", step.job_id, job.task, step_event(step))])

    def tick(self) -> None:
        """Send progress held back by the rate limit (a watcher thread calls this)."""
        with self._lock:
            job, pending = self._job, self._pending
            if job is None or pending is None or time.monotonic() - self._last_progress < PROGRESS_EVERY:
                return
            self._pending = None
            self._last_progress = time.monotonic()
        self.sink(
            [ProgressUpdate(job.id, pending[0], pending[1])],
            [Event("progress", job.id, job.task, {"progress": pending[0], "message": stored(pending[1])})],
        )

    # -- the end -------------------------------------------------------------------------------
    def finish(self, task: Task | None, result: Outcome) -> list[Change]:
        """The changes that end this attempt: last progress, then the state transition."""
        with self._lock:
            job, pending = self._job, self._pending
            self._job, self._pending = None, None
        if job is None:
            return []
        now = utcnow()
        if result.ok:
            status, fields = settle.succeeded(result.result, now)
        else:
            status, fields = settle.failed(
                job.attempts, job.max_attempts, task, result.error or "failed", result.traceback, now
            )
        changes: list[Change] = []
        if pending is not None and status is JobStatus.SUCCEEDED:
            if pending[1] is not None:  # the last message held back: with the end, no statement more
                fields["message"] = pending[1]
        elif pending is not None:
            changes.append(ProgressUpdate(job.id, pending[0], pending[1]))
        changes.append(attempt.end(job, status, fields))
        return changes


def step_event(step: StepRecord) -> dict[str, object]:
    """A step as its events carry it: everything but its output (which may be large)."""
    data = step.to_dict()
    del data["output"], data["job_id"]
    data["step_kind"] = data.pop("kind")  # "kind" names the event itself
    data["message"], data["error"] = stored(step.message), stored(step.error)  # the bus may be JSON
    return data
