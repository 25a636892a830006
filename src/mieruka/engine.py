"""The engine: accepts jobs, hands them to the executor, records what happens, recovers from crashes.

One loop thread owns dispatching and every write caused by workers; API calls from other threads
talk to it through a command queue and a wake-up, so a submitted job starts without waiting on a
polling interval. Every state change goes through `_transition`, which writes and emits the event.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .artifacts import open_uploads
from .artifacts.base import ArtifactStorage
from .artifacts.uploads import check_upload_id, file_refs
from .bus.base import EventBus, Unsubscribe
from .core import outcome
from .core.clock import utcnow
from .core.events import Event, state_event
from .core.job import JobRecord
from .core.status import TRANSITIONS, JobStatus
from .core.steps import StepStatus
from .core.task import Task, TaskRegistry
from .errors import ConflictError, JobNotFound, JobTimeoutError, StorageUnavailable, ValidationError
from .executors.base import NEW_JOB_GRACE, Executor, Finished, Recorded, Recovering, RemoteExecutor, WorkerMessage
from .nodes import dead_here
from .settings import Settings
from .store.base import (
    Change,
    Claim,
    Deleted,
    ForeignUploads,
    JobQuery,
    JobStore,
    LogLine,
    NewJob,
    PendingJob,
    QueuedJob,
    StepsClosed,
    Transition,
)
from .store.outage import is_outage, reason
from .store.tables import MAX_INT
from .waiting import Ending, Watches

if TYPE_CHECKING:
    from .pools.manager import PoolManager

log = logging.getLogger("mieruka.engine")
RUNNING = frozenset({JobStatus.RUNNING})
NEIGHBOUR_LOOK = 0.5  # seconds between looks at whether an engine on this host has died


@dataclass
class _Batch:
    changes: list[Change] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finals: list[tuple[int, _Running, Transition]] = field(default_factory=list)  # (index, job, change)
    claim: Claim | None = None
    saved: list[Callable[[], None]] = field(default_factory=list)  # to call once the changes are stored

    def followed_by(self, later: _Batch) -> _Batch:
        offset = len(self.changes)
        return _Batch(self.changes + later.changes, self.events + later.events,
                      self.finals + [(i + offset, job, change) for i, job, change in later.finals], later.claim,
                      self.saved + later.saved)


@dataclass
class _Running:
    """A job this engine claimed and handed to a worker."""

    record: JobRecord
    task: Task
    worker: str
    deadline: float | None = None
    kill_reason: str | None = None  # "cancel" or "timeout" once we killed it


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
        # Celery: workers claim jobs themselves; this engine sends jobs to the broker instead.
        self._remote = executor if isinstance(executor, RemoteExecutor) else None
        self.artifacts = artifacts
        self.settings = settings
        # Uploads: written under this server's home, copied to the shared storage on submit.
        self.uploads = open_uploads(artifacts, settings.home_path / "uploads")
        self.upload_root = self.uploads.root
        self.id = uuid.uuid4().hex[:16]
        self.host = socket.gethostname()
        self.worker_name = f"{self.host}:{os.getpid()}"  # recorded on the jobs this engine runs
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._ready: list[tuple[int, int]] = []  # heap of (-priority, job id)
        self._ready_tasks: dict[int, str] = {}
        self._running: dict[int, _Running] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._next_poll = 0.0
        self._next_beat = 0.0
        self._neighbours: list[int] = []  # pids of the other engines on this host, as of the last beat
        self._next_look = 0.0
        self._next_prune = 0.0
        self._next_schedule = 0.0
        self._delayed: list[tuple[float, int]] = []
        self._reported_broken = False
        self._backlog = False
        self._sleeping = False
        self._unsaved: _Batch | None = None
        self._started_at = utcnow().isoformat()
        self.pools: PoolManager | None = None  # compute pools started on demand (wiring sets it)
        self._watches = Watches()
        self._watching: Unsubscribe | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.auto_migrate:
            self.store.migrate()
        self.upload_root.mkdir(parents=True, exist_ok=True)
        now = utcnow()
        self.store.heartbeat(self.id, self.host, os.getpid(), now, self._info())
        self._save_spooled()
        self._recover(now)
        self.executor.start()
        if self.pools is not None:
            self.pools.start()
        # Heard from before any job it queues is announced: waiting for one needs no first look.
        self._watching = self.bus.subscribe(self._watches.hear)
        self._thread = threading.Thread(target=self._loop, name="mieruka-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._watching is not None:
            self._watching()
            self._watching = None
        if self._thread is None:
            return
        self._stop.set()
        self.executor.wake()
        self._thread.join(timeout=30)
        self._thread = None
        if self.pools is not None:
            self.pools.stop()
        interrupted = self.executor.stop()
        # A clean stop gives the attempt back: the job will run again in full at the next start.
        changes: list[Change] = []
        for job_id in interrupted:
            running = self._running.pop(job_id, None)
            if running is None:
                continue
            attempts = running.record.attempts
            changes.append(StepsClosed(job_id, StepStatus.CANCELLED))  # its steps were stopped with it
            changes.append(Transition(job_id, JobStatus.QUEUED, RUNNING, {
                "attempts": max(attempts - 1, 0), "worker": None, "engine_id": None,
                "message": "re-queued: the server stopped while it ran", "started_at": None},
                attempt=attempts))
        if changes:
            self.store.apply(changes)
        self.store.remove_engine(self.id)
        self.bus.close()

    def _info(self) -> dict[str, Any]:
        """What this engine is, for the monitoring page (stored with its heartbeat)."""
        local = self._remote is None
        return {"kind": "server", "name": self.worker_name, "executor": self.settings.executor,
                "queues": ["*"] if local else [], "concurrency": self.settings.effective_workers if local else 0,
                "started_at": self._started_at, "url": self.settings.served_url}

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
    ) -> tuple[JobRecord, bool]:
        """Validate and queue a job. Returns (job, created); created is False for a repeated key."""
        task = self.tasks.get(task_name)
        checked = task.signature.validate(params)
        self._check_uploads(task, checked)
        run_after = utcnow() + timedelta(seconds=delay) if delay else None
        new = NewJob(task=task.name, params=checked, max_attempts=task.retries + 1,
                     priority=task.priority if priority is None else priority, queue=task.queue,
                     owner=owner, idempotency_key=idempotency_key, run_after=run_after,
                     uploads=tuple(_upload_ids(checked)))
        # On Celery the job goes to the broker while its row is on the way to the store (the
        # worker waits for the row, see celery_worker.py): the two round trips overlap.
        pending = self.store.start_create_job(new) if self._remote is not None else None
        if pending is not None:
            record, created = pending.record, True
        else:
            try:
                record, created = self.store.create_job(new)
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
            if self._watching is not None:
                self._watches.add(record.id)
            announced = self.bus.start_publish([self._state_event(record, **extra)])
            try:
                if self._remote is not None:
                    self._remote.send(record, delay or 0.0)  # thread-safe; a failed send is kept and retried
                elif run_after is None:
                    self._command("ready", record)
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
        self.store.apply([Transition(record.id, JobStatus.QUEUED, frozenset({JobStatus.QUEUED}),
                                     {"message": waiting})])
        return replace(record, message=waiting)

    def _stored(self, pending: PendingJob, sent_at: float, delay: float) -> None:
        """The job went to the broker before its row was stored: wait for the row. Should it come
        later than a worker waits for it, send the job again (a worker drops the duplicate); should
        it not come, say that the announced job is gone."""
        record = pending.record
        try:
            pending.finish()
        except Exception:
            self.bus.publish(Event("deleted", record.id, record.task, {"status": JobStatus.QUEUED.value}))
            raise
        if time.monotonic() - sent_at > NEW_JOB_GRACE / 2 and self._remote is not None:
            log.warning("job %d was stored %.1fs after it went to the broker; sending it again",
                        record.id, time.monotonic() - sent_at)
            self._remote.send(record, delay)

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
                    self.uploads.keep(str(ref["upload_id"]), str(ref["filename"]),
                                      drop_local=self._remote is not None)
                except FileNotFoundError:
                    raise ValidationError(f"{name}: no uploaded file {ref['filename']!r} with that id",
                                          [{"field": name, "message": "unknown upload"}]) from None
                except Exception as exc:  # noqa: BLE001 - the bucket does not answer: say so, keep nothing
                    raise StorageUnavailable(f"{name}: the uploaded file cannot be stored for the workers "
                                             f"({type(exc).__name__}: {exc}); try again later") from None

    def get(self, job_id: int) -> JobRecord:
        if not 0 < job_id <= MAX_INT:  # no such id, and a database integer could not even hold it
            raise JobNotFound(job_id)
        record = self.store.get_job(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def list_jobs(self, query: JobQuery) -> list[JobRecord]:
        return self.store.list_jobs(query)

    def cancel(self, job_id: int) -> JobRecord:
        record = self.get(job_id)
        if record.status is JobStatus.QUEUED:
            if self._transition(record, JobStatus.CANCELLED, {"finished_at": utcnow(),
                                                             "message": "cancelled before it started"}):
                return self.get(job_id)
            record = self.get(job_id)
        if record.status is JobStatus.RUNNING:
            self.store.apply([Transition(job_id, JobStatus.RUNNING, RUNNING, {"cancel_requested": True})])
            self._command("cancel", job_id)
            return self.get(job_id)
        if record.finished:
            raise ConflictError(f"job {job_id} already {record.status.value}; nothing to cancel")
        return record

    def retry(self, job_id: int) -> JobRecord:
        record = self.get(job_id)
        if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise ConflictError(f"job {job_id} is {record.status.value}; only failed or cancelled jobs "
                                "can be retried")
        task = self.tasks.get(record.task)
        fields = {"max_attempts": record.attempts + task.retries + 1, "error": None, "traceback": None,
                  "result": None, "finished_at": None, "run_after": None, "progress": None,
                  "message": "retry requested", "cancel_requested": False}
        if self._watching is not None:  # its old end is no answer to a wait from now on
            self._watches.add(job_id)
        if not self._transition(record, JobStatus.QUEUED, fields):
            raise ConflictError(f"job {job_id} changed state meanwhile; try again")
        fresh = self.get(job_id)
        self._command("ready", fresh)
        return fresh

    def delete(self, job_id: int) -> None:
        record = self.get(job_id)
        if not record.finished:
            raise ConflictError(f"job {job_id} is {record.status.value}; cancel it before deleting it")
        removed = self.store.delete_job(job_id)
        if removed.job_ids:
            self._delete_files(removed)
            deleted = Event("deleted", job_id, record.task, {"status": record.status.value})
            self._watches.hear(deleted)  # a wait from now on finds it gone, before the bus says so
            self.bus.publish(deleted)

    def logs(self, job_id: int, after: int = 0, limit: int = 1000) -> list[LogLine]:
        self.get(job_id)
        return self.store.read_logs(job_id, after, limit)

    def wait(self, job_id: int, timeout: float) -> JobRecord:
        """Block until the job has finished; JobTimeoutError after `timeout` seconds.
        Woken by the job's end event, which mostly carries the job as stored (then the store is not
        read again); it also looks in the store now and then, in case an event never arrives
        (another server on the in-memory bus, a bus that was briefly down)."""
        done = threading.Event()
        ending, unsubscribe = self._ending_of(job_id)
        untell = ending.tell(done.set)
        deadline = time.monotonic() + timeout
        try:
            record = ending.record()
            if record is None and _must_look(ending, unsubscribe):
                record = self.get(job_id)
            while record is None or not record.finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                done.wait(min(remaining, self.settings.poll_interval))
                record = ending.record() or self.get(job_id)
        finally:
            untell()
            if unsubscribe is not None:
                unsubscribe()
        return _waited(job_id, record if record is not None else self.get(job_id), timeout)

    async def wait_async(self, job_id: int, timeout: float) -> JobRecord:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        ending, unsubscribe = self._ending_of(job_id)
        untell = ending.tell(lambda: loop.call_soon_threadsafe(done.set))
        deadline = time.monotonic() + timeout
        try:
            record = ending.record()
            if record is None and _must_look(ending, unsubscribe):
                record = await asyncio.to_thread(self.get, job_id)
            while record is None or not record.finished:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(done.wait(), min(remaining, self.settings.poll_interval))
                except TimeoutError:
                    pass
                carried = ending.record()
                record = carried if carried is not None else await asyncio.to_thread(self.get, job_id)
        finally:
            untell()
            if unsubscribe is not None:
                unsubscribe()
        if record is None:
            record = await asyncio.to_thread(self.get, job_id)
        return _waited(job_id, record, timeout)

    def _ending_of(self, job_id: int) -> tuple[Ending, Unsubscribe | None]:
        """The job's end as this engine has heard it since queueing the job, or else as heard from
        now on (with the subscription to end)."""
        watched = self._watches.get(job_id)
        if watched is not None:
            return watched, None
        ending = Ending()
        return ending, self.bus.subscribe(ending.hear, [f"job:{job_id}"])

    def workers(self) -> list[dict[str, object]]:
        return self.executor.workers()

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:  # noqa: BLE001 - the loop must survive a bad moment (db busy, ...)
                _failed("engine loop error", exc)
                time.sleep(0.5)

    def _tick(self) -> None:
        messages = self.executor.wait(self._timeout())
        self._sleeping = False
        broken = getattr(self.executor, "broken", None)
        if broken and not self._reported_broken:
            self._reported_broken = True
            log.error("no job can run: %s", broken)
        batch = self._handle_messages(messages)
        if self._unsaved is not None:  # what the store refused last time goes first
            batch, self._unsaved = self._unsaved.followed_by(batch), None
        if self._stop.is_set():
            self._commit(batch)
            return
        self._handle_commands()
        try:
            self._housekeeping()
        except Exception as exc:  # noqa: BLE001 - what workers reported must still be saved below
            _failed("engine housekeeping failed", exc)
        self._dispatch(batch)
        self._commit(batch)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self._check_deadlines(now)
        if now >= self._next_beat:
            self._next_beat = now + min(self.settings.heartbeat_interval, self.settings.engine_stale_after / 3)
            self.store.heartbeat(self.id, self.host, os.getpid(), utcnow(), self._info())
            self._recover(utcnow())
            self._neighbours = [n.pid for n in self.store.engines() if n.host == self.host and n.id != self.id]
        elif self._neighbours and now >= self._next_look:
            # A process on this machine that runs jobs (a Celery worker, another server) died: its
            # jobs are recovered now, not at the next beat. Looking costs no query.
            self._next_look = now + NEIGHBOUR_LOOK
            if any(dead_here(self.host, pid) for pid in self._neighbours):
                self._recover(utcnow())
                self._neighbours = [n.pid for n in self.store.engines() if n.host == self.host and n.id != self.id]
        if now >= self._next_schedule:
            self._fire_schedules()
        if now >= self._next_prune:
            self._next_prune = now + self.settings.prune_interval
            self._prune()
        while self._delayed and self._delayed[0][0] <= now:
            heapq.heappop(self._delayed)
            self._next_poll = 0.0  # a retry became due: look in the store now
        if now >= self._next_poll:
            self._next_poll = now + self.settings.poll_interval
            self._poll_store()
        elif self._backlog and len(self._ready) < self.executor.free_slots() + 2:
            self._refill()

    def _command(self, kind: str, payload: Any) -> None:
        self._commands.put((kind, payload))
        # Only a sleeping loop needs waking: a busy one looks at the queue before it sleeps again.
        if self._sleeping:
            self.executor.wake()

    def _timeout(self) -> float:
        self._sleeping = True
        if not self._commands.empty():
            self._sleeping = False
            return 0.0
        now = time.monotonic()
        deadlines = [self._next_poll, self._next_beat, self._next_schedule, self._next_prune]
        if self._neighbours:
            deadlines.append(self._next_look)
        deadlines += [r.deadline for r in self._running.values() if r.deadline is not None]
        if self._delayed:
            deadlines.append(self._delayed[0][0])
        return max(0.0, min(deadlines) - now)

    def _handle_commands(self) -> None:
        while True:
            try:
                kind, payload = self._commands.get_nowait()
            except queue.Empty:
                return
            if kind == "ready":
                self._push_ready(payload)
            elif kind == "cancel" and self._remote is not None:
                self._remote.kill(payload)
            elif kind == "cancel":
                running = self._running.get(payload)
                if running is not None and running.kill_reason is None:
                    running.kill_reason = "cancel"
                    self.executor.kill(payload)

    def _push_ready(self, job: JobRecord | QueuedJob) -> None:
        if self._remote is not None:
            assert isinstance(job, JobRecord)  # remote engines never read QueuedJobs from the store
            self._remote.send(job)
            return
        if job.id not in self._ready_tasks and job.id not in self._running:
            self._ready_tasks[job.id] = job.task
            heapq.heappush(self._ready, (-job.priority, job.id))

    def _poll_store(self) -> None:
        """Backstop for jobs queued by other processes, retries that became due, remote cancels."""
        if self._remote is not None:
            return  # the broker holds the queue; workers re-send retries and watch for cancels
        self._refill()
        due = self.store.next_due_time()
        if due is not None:
            wait = (due - utcnow()).total_seconds()
            self._next_poll = min(self._next_poll, time.monotonic() + max(wait, 0.0))
        mine = [r for r in self._running.values() if r.kill_reason is None]
        if mine:
            for record in self.store.list_jobs(JobQuery(status=[JobStatus.RUNNING], limit=1000)):
                running = self._running.get(record.id)
                if running is not None and record.cancel_requested and running.kill_reason is None:
                    running.kill_reason = "cancel"
                    self.executor.kill(record.id)

    def _refill(self) -> None:
        # Only as many as can start soon: a backlog of a million jobs stays in the database.
        limit = max(self.executor.free_slots() * 16, 64) + len(self._running)
        found = self.store.due_jobs(utcnow(), limit=limit)
        for job in found:
            self._push_ready(job)
        self._backlog = len(found) == limit  # more wait in the store: look again soon

    def _dispatch(self, batch: _Batch) -> None:
        free = self.executor.free_slots()
        if free <= 0 or not self._ready:
            return
        per_task: dict[str, int] = {}
        for running in self._running.values():
            per_task[running.task.name] = per_task.get(running.task.name, 0) + 1
        held: list[tuple[int, int]] = []
        picked: list[int] = []
        while self._ready and len(picked) < free:
            item = heapq.heappop(self._ready)
            task_name = self._ready_tasks[item[1]]
            task = self.tasks.get(task_name) if task_name in self.tasks else None
            if task is not None and task.concurrency is not None and per_task.get(task.name, 0) >= task.concurrency:
                held.append(item)  # over its limit: waits until one of its jobs ends
                continue
            del self._ready_tasks[item[1]]
            if task is not None:
                per_task[task.name] = per_task.get(task.name, 0) + 1
            picked.append(item[1])
        for item in held:
            heapq.heappush(self._ready, item)
        if not picked:
            return
        # A job cancelled or taken by another server meanwhile is skipped by the claim.
        batch.claim = Claim(picked, self.worker_name, self.id, utcnow())

    def _start(self, record: JobRecord) -> None:
        if record.task not in self.tasks:
            self._transition(record, JobStatus.FAILED, {
                "finished_at": utcnow(), "error": f"no task named {record.task!r} in this app"})
            return
        task = self.tasks.get(record.task)
        worker = self.executor.run(record)
        deadline = time.monotonic() + task.timeout if task.timeout else None
        self._running[record.id] = _Running(record, task, worker, deadline)
        self._emit_state(record, worker=worker)


    def _check_deadlines(self, now: float) -> None:
        for job_id, running in list(self._running.items()):
            if running.deadline is not None and now >= running.deadline and running.kill_reason is None:
                running.kill_reason = "timeout"
                self.executor.kill(job_id)

    # -- worker messages -----------------------------------------------------------------------
    def _handle_messages(self, messages: Sequence[WorkerMessage]) -> _Batch:
        """Everything the workers reported since the last look, to write in one transaction."""
        batch = _Batch()
        changes = batch.changes
        for msg in messages:
            if isinstance(msg, Recorded):
                changes.extend(msg.changes)
                batch.events.extend(msg.events)
                continue
            if isinstance(msg, Finished) and msg.saved is not None:
                batch.saved.append(msg.saved)
            running = self._running.pop(msg.job_id, None)
            if running is None:
                continue
            if isinstance(msg, Finished):
                changes.extend(msg.changes)
            else:  # Died: settle it on the dead worker's behalf
                status, fields = self._died(running, msg.reason)
                # A pipeline's steps that were still running or waiting end with it.
                closed = StepStatus.CANCELLED if running.kill_reason == "cancel" else StepStatus.FAILED
                changes.append(StepsClosed(msg.job_id, closed))
                batch.events.append(Event("steps", msg.job_id, running.task.name, {"closed": closed.value}))
                changes.append(Transition(msg.job_id, status, RUNNING, fields, attempt=running.record.attempts,
                                          read_back=status.finished))
            last = changes[-1] if changes else None
            if isinstance(last, Transition) and last.job_id == msg.job_id:
                batch.finals.append((len(changes) - 1, running, last))
        return batch

    def _commit(self, batch: _Batch) -> None:
        """One transaction for what workers reported and the jobs to start next; then tell.
        If the store fails (database down, disk full), the reports are kept and tried again on
        the next round; the claim is dropped, its jobs stay queued in the store."""
        try:
            applied = self.store.apply(batch.changes, batch.claim)
        except Exception as exc:
            _failed(f"could not save {len(batch.changes)} changes; trying again", exc)
            batch.claim = None
            self._unsaved = batch
            self._next_poll = 0.0  # the jobs of the dropped claim are found again
            time.sleep(0.2)
            return
        for saved in batch.saved:
            saved()
        for event in batch.events:
            self.bus.publish(event)
        for index, running, change in batch.finals:
            if applied.done[index]:
                self._emit_state(running.record, applied.after.get(index), status=change.to, **change.fields)
                if change.to is JobStatus.QUEUED:
                    self._requeued(running.record.id, change.fields.get("run_after"))
        for record in applied.claimed:
            self._start(record)

    def _died(self, running: _Running, reason: str) -> tuple[JobStatus, dict[str, Any]]:
        now = utcnow()
        if running.kill_reason == "cancel":
            return outcome.cancelled(now)
        if running.kill_reason == "timeout":
            reason = f"timed out after {running.task.timeout:g}s"
        record = running.record
        return outcome.failed(record.attempts, record.max_attempts, running.task, reason, None, now)

    def _requeued(self, job_id: int, run_after: datetime | None) -> None:
        if run_after is None:
            self._next_poll = 0.0
        else:
            at = time.monotonic() + max((run_after - utcnow()).total_seconds(), 0.0)
            heapq.heappush(self._delayed, (at, job_id))

    # -- transitions ---------------------------------------------------------------------------
    def _transition(self, record: JobRecord, to: JobStatus, fields: dict[str, Any], emit: bool = True) -> bool:
        """The one way a job changes state (outside batched worker messages): write, then tell.
        Only from the state `record` was seen in, so a concurrent change is never overwritten."""
        if to not in TRANSITIONS[record.status]:
            raise ConflictError(f"job {record.id} cannot go from {record.status.value} to {to.value}")
        applied = self.store.apply([Transition(record.id, to, frozenset({record.status}), fields,
                                               read_back=to.finished)])
        ok = applied.done[0]
        if ok and emit:
            self._emit_state(record, applied.after.get(0), status=to, **fields)
        return ok

    def _emit_state(self, record: JobRecord, now: JobRecord | None = None, /, **overrides: Any) -> None:
        """Tell of the job's new state; `now`, the job as stored at its end, travels with it."""
        self.bus.publish(self._state_event(record, now, **overrides))

    @staticmethod
    def _state_event(record: JobRecord, now: JobRecord | None = None, /, **overrides: Any) -> Event:
        status = overrides.pop("status", record.status)
        fields = {"attempts": record.attempts, "max_attempts": record.max_attempts,
                  "created_at": record.created_at, "started_at": record.started_at, **overrides}
        return state_event(record.id, record.task, status.value, fields, now)

    def _emit(self, job_id: int, task: str, status: JobStatus, fields: dict[str, Any]) -> None:
        self.bus.publish(state_event(job_id, task, status.value, fields))

    # -- recovery, schedules, retention --------------------------------------------------------
    def _save_spooled(self) -> None:
        """Outcomes that local workers of this server's earlier run wrote, but that it did not save
        before it was killed: saved now, before recovery takes their jobs for interrupted."""
        if not isinstance(self.executor, Recovering):
            return
        for found in self.executor.recover():
            applied = self.store.apply(found.changes)
            final = found.changes[-1] if found.changes else None
            after = applied.after.get(len(found.changes) - 1)
            if isinstance(final, Transition) and after is not None:
                log.warning("job %d: saved its outcome (%s), left by a server that was killed", found.job_id,
                         final.to.value)
                self._emit_state(after, after, status=final.to, **final.fields)
                if final.to is JobStatus.QUEUED:
                    self._requeued(found.job_id, final.fields.get("run_after"))
            if found.saved is not None:
                found.saved()

    def _recover(self, now: datetime) -> None:
        """Running jobs whose server died: re-queue them while attempts remain, else fail them."""
        orphans = self.store.orphaned_jobs(now, self.settings.engine_stale_after, dead_here)
        for record in orphans:
            if record.engine_id == self.id:
                continue
            who = "worker" if self._remote is not None else "server"
            self.store.apply([StepsClosed(record.id, StepStatus.FAILED)])  # a pipeline's steps died with it
            if record.attempts < record.max_attempts:
                ok = self._transition(record, JobStatus.QUEUED, {
                    "worker": None, "engine_id": None, "run_after": None,
                    "message": f"re-queued: interrupted when its {who} stopped"})
                if ok:
                    self._push_ready(replace(record, status=JobStatus.QUEUED))
            else:
                self._transition(record, JobStatus.FAILED, {
                    "finished_at": now, "error": f"interrupted: its {who} stopped while it ran"})

    def _fire_schedules(self) -> None:
        now = utcnow()
        next_check = time.monotonic() + 60.0
        for task in self.tasks:
            if task.schedule is None:
                continue
            due = self.store.schedule_due(task.name, task.schedule.next_after(now))
            if due <= now:
                next_due = task.schedule.next_after(max(now, due))
                record = self.store.fire_schedule(task.name, due, next_due, NewJob(
                    task=task.name, params=task.signature.validate({}), max_attempts=task.retries + 1,
                    priority=task.priority, queue=task.queue, schedule=task.name))
                if record is not None:
                    self._emit_state(record)
                    self._push_ready(record)
                due = next_due
            wait = (due - now).total_seconds()
            next_check = min(next_check, time.monotonic() + max(wait, 0.0))
        self._next_schedule = next_check

    def _prune(self) -> None:
        now = utcnow()
        for task in self.tasks:
            policy = task.retention
            max_age = policy.max_age if policy and policy.max_age is not None else self.settings.retention_max_age
            keep = policy.max_count if policy and policy.max_count is not None else self.settings.retention_max_jobs
            older = now - timedelta(seconds=max_age) if max_age else None
            self._delete_files(self.store.prune(task.name, older, keep))

    def _delete_files(self, deleted: Deleted) -> None:
        """The artifacts of deleted jobs, and the uploads no job uses any more (another job may
        still read a file the deleted one named: a rerun with the same file)."""
        for job_id in deleted.job_ids:
            self.artifacts.delete_job(job_id)
        for upload_id in deleted.uploads:
            self.uploads.delete(upload_id)


def _must_look(ending: Ending, unsubscribe: Unsubscribe | None) -> bool:
    """Whether a wait without the job's end record starts with a look in the store: not for a job
    watched since it was queued whose end is not heard yet (it runs still, or its end event was
    lost, which the next look finds)."""
    return unsubscribe is not None or ending.ended


def _waited(job_id: int, record: JobRecord, timeout: float) -> JobRecord:
    if not record.finished:
        raise JobTimeoutError(f"job {job_id} is still {record.status.value} after {timeout:g}s")
    return record


def _upload_ids(params: dict[str, Any]) -> list[str]:
    """The uploads a job's (checked) parameters name, each once."""
    return sorted({check_upload_id(upload_id) for upload_id, _ in file_refs(params)})


def _foreign(task: Task, params: dict[str, Any], upload_ids: Sequence[str]) -> ValidationError:
    """The refusal of a job naming another owner's uploads, by parameter."""
    fields = [name for name in task.signature.file_fields
              if any(upload_id in upload_ids for upload_id, _ in file_refs({name: params.get(name)}))]
    message = "the uploaded file belongs to another user; upload it again"
    return ValidationError(f"{', '.join(fields)}: {message}",
                           [{"field": name, "message": message} for name in fields])


def _failed(what: str, exc: Exception) -> None:
    """A database that does not answer is a moment, said in one line (the loop tries again); any
    other error is a bug, logged with its traceback."""
    if is_outage(exc):
        log.warning("%s: the database does not answer (%s)", what, reason(exc))
    else:
        log.error("%s", what, exc_info=exc)
