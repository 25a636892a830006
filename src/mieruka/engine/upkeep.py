"""What the engine keeps in order besides running jobs: recovery of jobs whose server or worker
died (and of outcomes a killed server never saved), schedules, retention."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta

from ..artifacts.base import ArtifactStorage
from ..artifacts.uploads import UploadStorage
from ..core.clock import utcnow
from ..core.job import JobRecord
from ..core.status import JobStatus
from ..core.steps import StepStatus
from ..core.task import TaskRegistry
from ..executors.base import Executor, Recovering
from ..nodes import dead_here
from ..notes import note
from ..settings import Settings
from ..store.base import Deleted, JobStore, NewJob, StepsClosed, Transition
from .dispatch import Dispatch
from .states import States

log = logging.getLogger("mieruka.engine")


class Upkeep:
    def __init__(
        self,
        tasks: TaskRegistry,
        store: JobStore,
        states: States,
        dispatch: Dispatch,
        artifacts: ArtifactStorage,
        uploads: UploadStorage,
        settings: Settings,
        engine_id: str,
    ) -> None:
        self.tasks = tasks
        self.store = store
        self.states = states
        self.dispatch = dispatch
        self.artifacts = artifacts
        self.uploads = uploads
        self.settings = settings
        self.engine_id = engine_id

    # -- recovery ------------------------------------------------------------------------------
    def save_spooled(self, executor: Executor) -> list[tuple[int, datetime | None]]:
        """Outcomes that local workers of this server's earlier run wrote, but that it did not save
        before it was killed: saved now, before recovery takes their jobs for interrupted. Returns
        the jobs that went back to the queue (id, when due)."""
        requeued: list[tuple[int, datetime | None]] = []
        if not isinstance(executor, Recovering):
            return requeued
        for found in executor.recover():
            applied = self.store.apply(found.changes)
            final = found.changes[-1] if found.changes else None
            after = applied.after.get(len(found.changes) - 1)
            if isinstance(final, Transition) and after is not None:
                log.warning(
                    "job %d: saved its outcome (%s), left by a server that was killed", found.job_id, final.to.value
                )
                self.states.tell(after, after, status=final.to, **final.fields)
                if final.to is JobStatus.QUEUED:
                    requeued.append((found.job_id, final.fields.get("run_after")))
            if found.saved is not None:
                found.saved()
        return requeued

    def recover(self, now: datetime) -> None:
        """Running jobs whose server died: re-queue them while attempts remain, else fail them."""
        orphans = self.store.orphaned_jobs(now, self.settings.engine_stale_after, dead_here)
        who = self.dispatch.kind
        for record in orphans:
            if record.engine_id == self.engine_id:
                continue
            self.store.apply([StepsClosed(record.id, StepStatus.FAILED)])  # a pipeline's steps died with it
            if record.attempts < record.max_attempts:
                ok = self.states.move(
                    record,
                    JobStatus.QUEUED,
                    {
                        "worker": None,
                        "engine_id": None,
                        "run_after": None,
                        "message": note(f"job.requeued_{who}_lost"),
                    },
                )
                if ok:
                    self.dispatch.push(replace(record, status=JobStatus.QUEUED))
            else:
                self.states.move(
                    record,
                    JobStatus.FAILED,
                    {"finished_at": now, "error": note(f"error.interrupted_{who}")},
                )

    # -- schedules -----------------------------------------------------------------------------
    def fire_schedules(self) -> float:
        """Queue the scheduled jobs that are due; returns when to look next (monotonic)."""
        now = utcnow()
        next_check = time.monotonic() + 60.0
        for task in self.tasks:
            if task.schedule is None:
                continue
            due = self.store.schedule_due(task.name, task.schedule.next_after(now))
            if due <= now:
                next_due = task.schedule.next_after(max(now, due))
                late = (now - due).total_seconds()
                missed = None
                if late > max(60.0, 2 * self.settings.poll_interval):  # the server was down when it was due
                    missed = f"due at {due:%Y-%m-%d %H:%M:%S} UTC, started {late:.0f}s late"
                record: JobRecord | None = self.store.fire_schedule(
                    task.name,
                    due,
                    next_due,
                    NewJob(
                        task=task.name,
                        params=task.signature.validate({}),
                        max_attempts=task.retries + 1,
                        priority=task.priority,
                        queue=task.queue,
                        schedule=task.name,
                    ),
                    missed,
                )
                if record is not None:
                    self.states.tell(record)
                    self.dispatch.push(record)
                due = next_due
            wait = (due - now).total_seconds()
            next_check = min(next_check, time.monotonic() + max(wait, 0.0))
        return next_check

    # -- retention -----------------------------------------------------------------------------
    def prune(self) -> None:
        now = utcnow()
        policies: list[tuple[str, datetime | None, int | None]] = []
        for task in self.tasks:
            policy = task.retention
            max_age = policy.max_age if policy and policy.max_age is not None else self.settings.retention_max_age
            keep = policy.max_count if policy and policy.max_count is not None else self.settings.retention_max_jobs
            policies.append((task.name, now - timedelta(seconds=max_age) if max_age else None, keep))
        if not policies or self._none_to_prune(policies):
            return
        for name, cutoff, most in policies:
            self.delete_files(self.store.prune(name, cutoff, most))

    def _none_to_prune(self, policies: list[tuple[str, datetime | None, int | None]]) -> bool:
        """Two queries in all instead of two per task (an app may have a hundred) when fewer jobs
        are finished than any task keeps and none finished before any task's limit of age."""
        keeps = [keep for _, _, keep in policies if keep is not None]
        cutoffs = [older for _, older, _ in policies if older is not None]
        fewest = min(keeps, default=None)
        count, oldest = self.store.finished_span(fewest if fewest is not None else 0)
        if fewest is not None and count > fewest:
            return False
        return oldest is None or not cutoffs or oldest >= max(cutoffs)

    def delete_files(self, deleted: Deleted) -> None:
        """The artifacts of deleted jobs, and the uploads no job uses any more (another job may
        still read a file the deleted one named: a rerun with the same file)."""
        for job_id in deleted.job_ids:
            self.artifacts.delete_job(job_id)
        for upload_id in deleted.uploads:
            self.uploads.delete(upload_id)
