"""The engine's API (any thread): submit, cancel, retry, delete, look at and wait for jobs; start
and stop. The work itself is done by the loop thread (loop.py) through the dispatch that fits the
executor (dispatch.py); every state change goes through `States` (states.py)."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import attempt
from ..artifacts import open_uploads
from ..artifacts.base import ArtifactStorage
from ..artifacts.uploads import check_upload_id, file_refs
from ..bus.base import EventBus
from ..core.clock import utcnow
from ..core.events import Event
from ..core.job import JobRecord
from ..core.status import JobStatus
from ..core.steps import StepStatus
from ..core.task import Task, TaskRegistry
from ..errors import ConflictError, JobNotFound, StorageUnavailable, ValidationError
from ..executors.base import NEW_JOB_GRACE, Executor
from ..notes import note
from ..settings import Settings
from ..store.base import (
    Along,
    Change,
    ForeignUploads,
    JobQuery,
    JobStore,
    LogLine,
    NewJob,
    PendingJob,
    StepsClosed,
    WouldWait,
)
from ..store.codec import MAX_INT
from .dispatch import dispatch_for
from .loop import Loop
from .states import States
from .upkeep import Upkeep
from .waiting import Waiter, Watches

if TYPE_CHECKING:
    from ..pools.manager import PoolManager

log = logging.getLogger("mieruka.engine")


class Engine:
    def __init__(
        self,
        tasks: TaskRegistry,
        store: JobStore,
        bus: EventBus,
        executor: Executor,
        artifacts: ArtifactStorage,
        settings: Settings,
    ) -> None:
        self.tasks = tasks
        self.store = store
        self.bus = bus
        self.executor = executor
        self.artifacts = artifacts
        self._settings = settings
        # Uploads: written under this server's home, copied to the shared storage on submit.
        self.uploads = open_uploads(artifacts, settings.home_path / "uploads")
        self.upload_root = self.uploads.root
        self.id = uuid.uuid4().hex[:16]
        self.host = socket.gethostname()
        self.worker_name = f"{self.host}:{os.getpid()}"  # recorded on the jobs this engine runs
        self._started_at = utcnow().isoformat()
        self.pools: PoolManager | None = None  # compute pools started on demand (wiring sets it)
        self.states = States(store, bus)
        self._watches = Watches()
        self._waiter = Waiter(bus, self._watches, self.get, self.get_async, settings.poll_interval)
        self.dispatch = dispatch_for(
            executor,
            store,
            tasks,
            self.states,
            settings,
            self.worker_name,
            self.id,
            lambda kind, payload: self._loop.command(kind, payload),
        )
        self._upkeep = Upkeep(tasks, store, self.states, self.dispatch, artifacts, self.uploads, settings, self.id)
        self._loop = Loop(
            executor, store, bus, self.states, self.dispatch, self._upkeep, settings, self.id, self.host, self._beat
        )

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings (retention, intervals) for the running engine's parts too."""
        self._settings = self._upkeep.settings = self._loop.settings = settings
        self._waiter.poll_interval = settings.poll_interval

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.auto_migrate:
            self.store.migrate()
        self.upload_root.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        self.store.heartbeat(self.id, self.host, os.getpid(), now, self._info())
        for job_id, run_after in self._upkeep.save_spooled(self.executor):
            self._loop.requeued(job_id, run_after)
        self._upkeep.recover(now)
        self.executor.start()
        if self.pools is not None:
            self.pools.start()
        # Heard from before any job it queues is announced: waiting for one needs no first look.
        self._waiter.watching = self.bus.subscribe(self._watches.hear)
        self._loop.start()

    def stop(self) -> None:
        if self._waiter.watching is not None:
            self._waiter.watching()
            self._waiter.watching = None
        if not self._loop.stop():
            return
        if self.pools is not None:
            self.pools.stop()
        interrupted = self.executor.stop()
        # A clean stop gives the attempt back: the job will run again in full at the next start.
        changes: list[Change] = []
        for job_id in interrupted:
            running = self.dispatch.running.pop(job_id, None)
            if running is None:
                continue
            record = running.record
            changes.append(StepsClosed(job_id, StepStatus.CANCELLED))  # its steps were stopped with it
            changes.append(
                attempt.end(
                    record,
                    JobStatus.QUEUED,
                    {
                        "attempts": max(record.attempts - 1, 0),
                        "worker": None,
                        "engine_id": None,
                        "message": note("job.requeued_server_stopped"),
                        "started_at": None,
                    },
                )
            )
        if changes:
            self.store.apply(changes)
        self.store.remove_engine(self.id)
        self.bus.close()

    def _info(self) -> dict[str, Any]:
        """What this engine is, for the monitoring page (stored with its heartbeat)."""
        return {
            "kind": "server",
            "name": self.worker_name,
            "executor": self.settings.executor,
            **self.dispatch.info(),
            "started_at": self._started_at,
            "url": self.settings.served_url,
        }

    def _beat(self) -> None:
        self.store.heartbeat(self.id, self.host, os.getpid(), utcnow(), self._info())

    # -- API (any thread) ----------------------------------------------------------------------
    def submit(
        self,
        task_name: str,
        params: dict[str, Any],
        *,
        owner: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        delay: float | None = None,
        along: Along | None = None,
    ) -> tuple[JobRecord, bool]:
        """Validate and queue a job. Returns (job, created); created is False for a repeated key.
        `along` writes more rows in the job's transaction (store/base.py) where this engine stores
        the job in one (not while it goes to a broker, nor for a repeated key): it is told the job."""
        task = self.tasks.get(task_name)
        checked = task.signature.validate(params)
        self._check_uploads(task, checked)
        run_after = utcnow() + timedelta(seconds=delay) if delay else None
        new = NewJob(
            task=task.name,
            params=checked,
            max_attempts=task.retries + 1,
            priority=task.priority if priority is None else priority,
            queue=task.queue,
            owner=owner,
            idempotency_key=idempotency_key,
            run_after=run_after,
            uploads=tuple(_upload_ids(checked)),
        )
        pending = self.dispatch.create(new)
        if pending is not None:
            record, created = pending.record, True
        else:
            try:
                record, created = self.store.create_job(new, along)
            except ForeignUploads as exc:
                raise _foreign(task, checked, exc.upload_ids) from None
        if not created:
            return record, False
        sent_at = time.monotonic()
        try:
            waiting = self.pools.job_submitted(record.queue, record.id) if self.pools is not None else None
            if waiting and pending is None:
                record = self._say_waiting(record, waiting)
            # Announced while it goes to the workers: the two round trips overlap, and the
            # announcement is out before any worker can hear of the job.
            extra = {"message": waiting} if waiting else {}
            if self._waiter.watching is not None:
                self._watches.add(record.id)
            announced = self.bus.start_publish([self.states.event(record, **extra)])
            try:
                self.dispatch.queued(record, delay or 0.0)
            finally:
                announced()
        finally:
            if pending is not None:
                self._stored(pending, sent_at, delay or 0.0)
        if waiting and pending is not None:
            record = self._say_waiting(record, waiting)
        return record, True

    def _say_waiting(self, record: JobRecord, waiting: str) -> JobRecord:
        """Its compute pool is not running yet: say so on the job while it waits."""
        self.states.note(record.id, JobStatus.QUEUED, {"message": waiting})
        return replace(record, message=waiting)

    def _stored(self, pending: PendingJob, sent_at: float, delay: float) -> None:
        """The job went to the workers before its row was stored: wait for the row. Should it come
        later than a worker waits for it, send the job again (a worker drops the duplicate); should
        it not come, say that the announced job is gone."""
        record = pending.record
        try:
            pending.finish()
        except Exception:
            self.bus.publish(Event("deleted", record.id, record.task, {"status": JobStatus.QUEUED.value}))
            raise
        if time.monotonic() - sent_at > NEW_JOB_GRACE / 2:
            log.warning(
                "job %d was stored %.1fs after it went to the broker; sending it again",
                record.id,
                time.monotonic() - sent_at,
            )
            self.dispatch.queued(record, delay)

    def _check_uploads(self, task: Task, params: dict[str, Any]) -> None:
        """Each uploaded file the job names exists; make it readable by whichever worker runs it.
        (Whose it is, the store checks with the job: an upload is only ever its uploader's.)"""
        for name in task.signature.file_fields:
            value = params.get(name)
            refs = value if isinstance(value, list) else [value]
            for ref in refs:
                if ref is None:
                    continue
                try:
                    self.uploads.keep(
                        str(ref["upload_id"]), str(ref["filename"]), drop_local=self.dispatch.drop_local_uploads
                    )
                except FileNotFoundError:
                    raise ValidationError(
                        f"{name}: no uploaded file {ref['filename']!r} with that id",
                        [{"field": name, "message": "unknown upload"}],
                    ) from None
                except Exception as exc:
                    raise StorageUnavailable(
                        f"{name}: the uploaded file cannot be stored for the workers "
                        f"({type(exc).__name__}: {exc}); try again later"
                    ) from None

    def get(self, job_id: int) -> JobRecord:
        if not 0 < job_id <= MAX_INT:  # no such id, and a database integer could not even hold it
            raise JobNotFound(job_id)
        record = self.store.get_job(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def get_async(self, job_id: int) -> JobRecord:
        """`get` on the event loop: answered there when the store can at once, else on a thread."""
        try:
            record = self.store.get_job_now(job_id)
        except WouldWait:
            import asyncio  # loaded by now: this runs on an event loop

            record = await asyncio.get_running_loop().run_in_executor(None, self.store.get_job, job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        return self.store.list_jobs(query)

    def cancel(self, job_id: int) -> JobRecord:
        record = self.get(job_id)
        if record.status is JobStatus.QUEUED:
            if self.states.move(
                record, JobStatus.CANCELLED, {"finished_at": utcnow(), "message": note("job.cancelled_before_start")}
            ):
                return self.get(job_id)
            record = self.get(job_id)
        if record.status is JobStatus.RUNNING:
            self.states.note(job_id, JobStatus.RUNNING, {"cancel_requested": True})
            self._loop.command("cancel", job_id)
            return self.get(job_id)
        if record.finished:
            raise ConflictError(f"job {job_id} already {record.status.value}; nothing to cancel")
        return record

    def retry(self, job_id: int) -> JobRecord:
        record = self.get(job_id)
        if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise ConflictError(f"job {job_id} is {record.status.value}; only failed or cancelled jobs can be retried")
        task = self.tasks.get(record.task)
        fields = {
            "max_attempts": record.attempts + task.retries + 1,
            "error": None,
            "traceback": None,
            "result": None,
            "finished_at": None,
            "run_after": None,
            "progress": None,
            "message": note("job.retry_requested"),
            "cancel_requested": False,
        }
        if self._waiter.watching is not None:  # its old end is no answer to a wait from now on
            self._watches.add(job_id)
        if not self.states.move(record, JobStatus.QUEUED, fields):
            raise ConflictError(f"job {job_id} changed state meanwhile; try again")
        fresh = self.get(job_id)
        self._loop.command("ready", fresh)
        return fresh

    def delete(self, job_id: int) -> None:
        record = self.get(job_id)
        if not record.finished:
            raise ConflictError(f"job {job_id} is {record.status.value}; cancel it before deleting it")
        removed = self.store.delete_job(job_id)
        if removed.job_ids:
            self._upkeep.delete_files(removed)
            deleted = Event("deleted", job_id, record.task, {"status": record.status.value})
            self._watches.hear(deleted)  # a wait from now on finds it gone, before the bus says so
            self.bus.publish(deleted)

    def logs(self, job_id: int, after: int = 0, limit: int = 1000) -> list[LogLine]:
        self.get(job_id)
        return self.store.read_logs(job_id, after, limit)

    def wait(self, job_id: int, timeout: float) -> JobRecord:
        """Block until the job has finished; JobTimeoutError after `timeout` seconds.

        >>> record, _ = engine.submit("add", {"a": 1, "b": 2})  # doctest: +SKIP
        >>> engine.wait(record.id, timeout=30).result  # doctest: +SKIP
        3
        """
        return self._waiter.wait(job_id, timeout)

    async def wait_async(self, job_id: int, timeout: float) -> JobRecord:
        return await self._waiter.wait_async(job_id, timeout)

    def workers(self) -> list[dict[str, object]]:
        return self.executor.workers()

    def _prune(self) -> None:
        """Apply the retention policies now (the loop does so every `prune_interval`)."""
        self._upkeep.prune()


def _upload_ids(params: dict[str, Any]) -> list[str]:
    """The uploads a job's (checked) parameters name, each once."""
    return sorted({check_upload_id(upload_id) for upload_id, _ in file_refs(params)})


def _foreign(task: Task, params: dict[str, Any], upload_ids: Sequence[str]) -> ValidationError:
    """The refusal of a job naming another owner's uploads, by parameter."""
    fields = [
        name
        for name in task.signature.file_fields
        if any(upload_id in upload_ids for upload_id, _ in file_refs({name: params.get(name)}))
    ]
    message = "the uploaded file belongs to another user; upload it again"
    return ValidationError(f"{', '.join(fields)}: {message}", [{"field": name, "message": message} for name in fields])
