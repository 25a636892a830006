"""How queued jobs reach workers: one small interface, one implementation per kind of executor.

`LocalDispatch` keeps the ready jobs in a heap, claims as many as the local executor has free
workers, hands them over and watches their deadlines. `BrokerDispatch` sends each queued job to
the broker (Celery), whose workers claim and settle jobs themselves (executors/celery_worker.py).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..attempt import CANCEL, TIMEOUT
from ..core.clock import utcnow
from ..core.job import JobRecord
from ..core.status import JobStatus
from ..core.task import Task, TaskRegistry
from ..executors.base import Executor, RemoteExecutor
from ..notes import note
from ..settings import Settings
from ..store.base import Claim, JobStore, NewJob, PendingJob, QueuedJob
from .states import States


@dataclass
class Running:
    """A job this engine claimed and handed to a worker."""

    record: JobRecord
    task: Task
    worker: str
    deadline: float | None = None
    kill_reason: str | None = None  # attempt.CANCEL or attempt.TIMEOUT once we killed it


class Dispatch(Protocol):
    kind: str  # what runs the jobs, in the words of a recovered job's message: "server" or "worker"
    drop_local_uploads: bool  # an upload is copied to the shared storage and not kept here
    running: dict[int, Running]  # the jobs handed to workers of this engine

    def info(self) -> dict[str, Any]:
        """The queues and concurrency this engine serves itself, for its heartbeat."""

    def create(self, new: NewJob) -> PendingJob | None:
        """Start storing the job while it goes to the workers, or None to store it first."""

    def queued(self, record: JobRecord, delay: float) -> None:
        """A job was queued (from any thread): on its way to the workers, in `delay` seconds."""

    def push(self, job: JobRecord | QueuedJob) -> None:
        """A queued job the loop found (recovered, scheduled, re-queued): on its way."""

    def cancel(self, job_id: int) -> None:
        """Stop the running job whose cancel was recorded (loop thread)."""

    def poll(self) -> float:
        """Look in the store for work the loop was not told of; returns when a retry becomes due
        (monotonic; infinity if none is known)."""

    def refill(self) -> None:
        """Read more queued jobs, a backlog waits in the store."""

    def backlogged(self) -> bool:
        """Whether more queued jobs wait in the store than were read, and few are ready here."""

    def pick(self) -> Claim | None:
        """The jobs to claim now, as many as workers are free."""

    def start(self, record: JobRecord) -> None:
        """Hand a claimed job to a free worker."""

    def overdue(self, now: float) -> None:
        """Kill the jobs past their task's timeout."""

    def deadlines(self) -> list[float]:
        """When running jobs time out (monotonic)."""


class LocalDispatch:
    kind = "server"
    drop_local_uploads = False

    def __init__(
        self,
        executor: Executor,
        store: JobStore,
        tasks: TaskRegistry,
        states: States,
        settings: Settings,
        worker_name: str,
        engine_id: str,
        command: Callable[[str, Any], None],
    ) -> None:
        self.executor = executor
        self.store = store
        self.tasks = tasks
        self.states = states
        self.settings = settings
        self.worker_name = worker_name
        self.engine_id = engine_id
        self.running: dict[int, Running] = {}
        self._ready: list[tuple[int, int]] = []  # heap of (-priority, job id)
        self._ready_tasks: dict[int, str] = {}
        self._backlog = False
        self._command = command  # to the loop thread, which owns the heap

    def info(self) -> dict[str, Any]:
        return {"queues": ["*"], "concurrency": self.settings.effective_workers}

    def create(self, new: NewJob) -> PendingJob | None:
        return None

    def queued(self, record: JobRecord, delay: float) -> None:
        if not delay:
            self._command("ready", record)

    def push(self, job: JobRecord | QueuedJob) -> None:
        if job.id not in self._ready_tasks and job.id not in self.running:
            self._ready_tasks[job.id] = job.task
            heapq.heappush(self._ready, (-job.priority, job.id))

    def cancel(self, job_id: int) -> None:
        running = self.running.get(job_id)
        if running is not None and running.kill_reason is None:
            running.kill_reason = CANCEL
            self.executor.kill(job_id)

    def poll(self) -> float:
        """Backstop for jobs queued by other processes, retries that became due, remote cancels."""
        self.refill()
        sooner = math.inf
        due = self.store.next_due_time()
        if due is not None:
            wait = (due - utcnow()).total_seconds()
            sooner = time.monotonic() + max(wait, 0.0)
        mine = [r for r in self.running.values() if r.kill_reason is None]
        if mine:
            for job_id in self.store.cancels_requested():
                running = self.running.get(job_id)
                if running is not None and running.kill_reason is None:
                    running.kill_reason = CANCEL
                    self.executor.kill(job_id)
        return sooner

    def refill(self) -> None:
        # Only as many as can start soon: a backlog of a million jobs stays in the database.
        limit = max(self.executor.free_slots() * 16, 64) + len(self.running)
        found = self.store.due_jobs(utcnow(), limit=limit)
        for job in found:
            self.push(job)
        self._backlog = len(found) == limit  # more wait in the store: look again soon

    def backlogged(self) -> bool:
        return self._backlog and len(self._ready) < self.executor.free_slots() + 2

    def pick(self) -> Claim | None:
        free = self.executor.free_slots()
        if free <= 0 or not self._ready:
            return None
        per_task: dict[str, int] = {}
        for running in self.running.values():
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
            return None
        # A job cancelled or taken by another server meanwhile is skipped by the claim.
        return Claim(picked, self.worker_name, self.engine_id, utcnow())

    def start(self, record: JobRecord) -> None:
        if record.task not in self.tasks:
            self.states.move(
                record,
                JobStatus.FAILED,
                {"finished_at": utcnow(), "error": note("error.no_task", task=repr(record.task))},
            )
            return
        task = self.tasks.get(record.task)
        worker = self.executor.run(record)
        deadline = time.monotonic() + task.timeout if task.timeout else None
        self.running[record.id] = Running(record, task, worker, deadline)
        self.states.tell(record, worker=worker)

    def overdue(self, now: float) -> None:
        for job_id, running in list(self.running.items()):
            if running.deadline is not None and now >= running.deadline and running.kill_reason is None:
                running.kill_reason = TIMEOUT
                self.executor.kill(job_id)

    def deadlines(self) -> list[float]:
        return [r.deadline for r in self.running.values() if r.deadline is not None]


class BrokerDispatch:
    """The broker holds the queue: workers claim, re-send retries and watch for cancels."""

    kind = "worker"
    drop_local_uploads = True

    def __init__(self, remote: RemoteExecutor, store: JobStore) -> None:
        self.remote = remote
        self.store = store
        self.running: dict[int, Running] = {}  # never any: the workers run them

    def info(self) -> dict[str, Any]:
        return {"queues": [], "concurrency": 0}

    def create(self, new: NewJob) -> PendingJob | None:
        # The job goes to the broker while its row is on the way to the store (the worker waits
        # for the row, see celery_worker.py): the two round trips overlap.
        return self.store.start_create_job(new)

    def queued(self, record: JobRecord, delay: float) -> None:
        self.remote.send(record, delay)  # thread-safe; a failed send is kept and retried

    def push(self, job: JobRecord | QueuedJob) -> None:
        assert isinstance(job, JobRecord)  # remote engines never read QueuedJobs from the store
        self.remote.send(job)

    def cancel(self, job_id: int) -> None:
        self.remote.kill(job_id)

    def poll(self) -> float:
        return math.inf

    def refill(self) -> None:
        pass

    def backlogged(self) -> bool:
        return False

    def pick(self) -> Claim | None:
        return None

    def start(self, record: JobRecord) -> None:
        raise RuntimeError("jobs sent to a broker are claimed by its workers")

    def overdue(self, now: float) -> None:
        pass

    def deadlines(self) -> list[float]:
        return []


def dispatch_for(
    executor: Executor,
    store: JobStore,
    tasks: TaskRegistry,
    states: States,
    settings: Settings,
    worker_name: str,
    engine_id: str,
    command: Callable[[str, Any], None],
) -> Dispatch:
    if isinstance(executor, RemoteExecutor):
        return BrokerDispatch(executor, store)
    return LocalDispatch(executor, store, tasks, states, settings, worker_name, engine_id, command)
