"""The thread executor (setting `executor = "threads"`): jobs run on threads of the server process.

No worker interpreters are started: the server is ready at once and weighs nothing more (a small
board, a laptop, tests). A job lives the same attempt as on the local executor (attempt.py):
progress, logs, artifacts, results, retries, timeouts and cancel.

The price is isolation. A Python function on a thread cannot be killed, so cancelling or timing out
a job is honest about what it can do:
- the attempt ends at once (cancelled, or failed as timed out), and its slot is free;
- every process the job started (a subprocess, a pipeline's steps) is killed with its descendants;
- the job's thread gets `Cancelled` raised at its next progress or artifact call or output line;
- a thread that makes none of those runs its Python code to the end in the background, and what it
  reports then is dropped.
A job that exits the process or crashes the interpreter takes the server with it. Output: what the
job's thread prints and logs goes to its log; what its child processes write to inherited file
descriptors goes to the server's output (the local executor captures both). See thread_output.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import attempt
from ..artifacts.base import ArtifactStorage
from ..core.events import Event
from ..core.job import ArtifactInfo, JobRecord
from ..core.task import TaskRegistry
from ..notes import note
from ..process import kill_tree
from ..recorder import AttemptRecorder
from ..runner import Outcome
from ..store.base import Change
from . import thread_output
from .base import Died, Finished, Recorded, WorkerMessage
from .thread_output import Cancelled, JobOutput

log = logging.getLogger("mieruka.engine")
TICK = 0.1  # seconds between flushes of held-back progress and output while jobs run
JOB_VARIABLE = "MIERUKA_JOB_ID"  # set for a pipeline step's process (pipeline/run.py)


@dataclass(eq=False)
class _Job:
    record: JobRecord
    slot: _Slot
    recorder: _JobRecorder
    output: JobOutput
    thread: threading.Thread | None = None
    stopped: bool = False  # cancelled, timed out or the executor stopped: its outcome is dropped
    ended: bool = False  # its outcome was handed to the engine
    processes: weakref.WeakSet[subprocess.Popen[Any]] = field(default_factory=weakref.WeakSet)

    def on_its_thread(self) -> bool:
        return self.thread is threading.current_thread()


@dataclass(eq=False)
class _Slot:
    name: str
    job: _Job | None = None
    jobs_done: int = 0


class _JobRecorder(AttemptRecorder):
    """The attempt's recorder, whose calls from a stopped job's own thread raise `Cancelled`."""

    job: _Job

    def progress(self, job_id: int, fraction: float | None, message: str | None) -> None:
        self._check()
        super().progress(job_id, fraction, message)

    def artifact(self, job_id: int, info: ArtifactInfo) -> None:
        self._check()
        super().artifact(job_id, info)

    def _check(self) -> None:
        if self.job.stopped and self.job.on_its_thread():
            raise Cancelled(f"job {self.job.record.id} was stopped")


class ThreadExecutor:
    def __init__(self, tasks: TaskRegistry, size: int, artifacts: ArtifactStorage, upload_root: Path) -> None:
        self.tasks = tasks
        self.size = max(1, size)
        self.artifacts = artifacts
        self.upload_root = upload_root
        self.broken: str | None = None  # the engine asks; threads cannot fail to start as processes do
        self._slots = [_Slot(f"t{i + 1}") for i in range(self.size)]
        self._jobs: dict[int, _Job] = {}  # running, by id
        self._alive: set[_Job] = set()  # whose threads run, stopped ones too
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[WorkerMessage] = []
        self._woken = False
        self._started = False

    def start(self) -> None:
        thread_output.install()
        _EXECUTORS.add(self)
        self._started = True

    def free_slots(self) -> int:
        with self._lock:
            return sum(1 for slot in self._slots if slot.job is None)

    def run(self, record: JobRecord) -> str:
        with self._lock:
            slot = next((s for s in self._slots if s.job is None), None)
            if slot is None:
                raise RuntimeError("no free thread")  # the engine checks free_slots() first
            recorder = _JobRecorder(lambda changes, events: self._recorded(job, changes, events))
            job = _Job(record, slot, recorder, JobOutput(record.id, recorder, lambda: job.stopped))
            recorder.job = job
            slot.job = self._jobs[record.id] = job
            self._alive.add(job)
            job.thread = threading.Thread(target=self._run, args=(job,), name=f"mieruka-{slot.name}-job{record.id}")
            job.thread.daemon = True
        job.thread.start()
        return slot.name

    def _run(self, job: _Job) -> None:
        task = self.tasks.get(job.record.task) if job.record.task in self.tasks else None
        uploads = self.upload_root
        _current.job = job
        with thread_output.routed_to(job.output):
            try:
                changes = attempt.run(
                    job.recorder, job.output, task, job.record, self.artifacts, lambda: nullcontext(uploads)
                )
            except BaseException as exc:  # attempt.run settles the function's errors; this is ours
                log.error("job %d: the thread running it failed", job.record.id, exc_info=exc)
                changes = job.recorder.finish(task, Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"))
        _current.job = None
        with self._changed:
            self._alive.discard(job)
            if job.stopped:
                leftovers = list(job.processes)
            else:
                leftovers = []
                job.ended = True
                self._free(job)
                job.slot.jobs_done += 1
                self._messages.append(Finished(job.record.id, changes))
                self._changed.notify()
        if leftovers:
            log.info("job %d: its thread ended after the job was stopped; its outcome is dropped", job.record.id)
            _kill(leftovers)  # started just as it was stopped

    def _recorded(self, job: _Job, changes: list[Change], events: list[Event]) -> None:
        with self._changed:
            if job.stopped or job.ended:
                return  # the attempt has ended: what its thread says now belongs to no attempt
            self._messages.append(Recorded(changes, events))
            self._changed.notify()

    def _free(self, job: _Job) -> None:
        self._jobs.pop(job.record.id, None)
        if job.slot.job is job:
            job.slot.job = None

    def kill(self, job_id: int) -> bool:
        with self._changed:
            job = self._jobs.get(job_id)
            if job is None or job.stopped:
                return False
            job.stopped = True
            self._free(job)
            processes = list(job.processes)
            self._messages.append(Died(job_id, note("error.thread_stopped")))
            self._changed.notify()
        _kill(processes)
        return True

    def wake(self) -> None:
        with self._changed:
            self._woken = True
            self._changed.notify()

    def workers(self) -> list[dict[str, object]]:
        pid = os.getpid()
        with self._lock:
            return [
                {
                    "name": slot.name,
                    "pid": pid,
                    "ready": self._started,
                    "job_id": None if slot.job is None else slot.job.record.id,
                    "jobs_done": slot.jobs_done,
                }
                for slot in self._slots
            ]

    def lingering(self) -> list[int]:
        """The jobs that were stopped while their threads still run their Python code."""
        with self._lock:
            return sorted(job.record.id for job in self._alive if job.stopped)

    def wait(self, timeout: float | None) -> list[WorkerMessage]:
        with self._changed:
            if not self._messages and not self._woken:
                if self._jobs:  # held-back progress and output lines are due now and then
                    timeout = TICK if timeout is None else min(timeout, TICK)
                self._changed.wait(timeout)
            self._woken = False
            running = list(self._jobs.values())
        for job in running:
            job.output.flush()
            job.recorder.tick()
        with self._changed:
            messages, self._messages = self._messages, []
        return messages

    def stop(self) -> list[int]:
        with self._changed:
            jobs = list(self._jobs.values())
            for job in jobs:
                job.stopped = True
                self._free(job)
            self._messages.clear()
        for job in jobs:
            _kill(list(job.processes))
        _EXECUTORS.discard(self)
        if self._started:
            self._started = False
            thread_output.uninstall()
        if jobs:
            log.info("%d job threads were stopped; any still in Python code finish in the background", len(jobs))
        return [job.record.id for job in jobs]

    # -- the processes a job starts ------------------------------------------------------------
    def started(self, popen: subprocess.Popen[Any], argv: Sequence[Any], env: Mapping[Any, Any] | None) -> None:
        """A process is being started (from the audit hook): keep it with its job, if a job of ours
        starts it (on its thread, or a pipeline step of it); a stopped job starts none."""
        job: _Job | None = getattr(_current, "job", None)
        with self._lock:
            if job is None:
                job_id = _marked_job(argv, env)
                if job_id is None:
                    return
                job = self._jobs.get(job_id) or next((j for j in self._alive if j.record.id == job_id), None)
            if job is None or job not in self._alive:
                return
            if not job.stopped:
                job.processes.add(popen)
                return
        if job.on_its_thread():
            raise Cancelled(f"job {job.record.id} was stopped")
        raise ChildProcessError(f"job {job.record.id} was stopped: it starts no more processes")


def _marked_job(argv: Sequence[Any], env: Mapping[Any, Any] | None) -> int | None:
    """The job a pipeline step's process is started for: its MIERUKA_JOB_ID, given through env(1)
    or the environment."""
    words: Iterable[Any] = argv[1:] if argv and os.path.basename(str(argv[0])) == "env" else ()
    for word in words:
        text = os.fsdecode(word) if isinstance(word, bytes) else str(word)
        if "=" not in text:
            break
        name, _, value = text.partition("=")
        if name == JOB_VARIABLE and value.isdigit():
            return int(value)
    given = (env or {}).get(JOB_VARIABLE)
    return int(given) if isinstance(given, str) and given.isdigit() else None


def _kill(processes: Iterable[subprocess.Popen[Any]]) -> None:
    for popen in processes:
        if popen.returncode is None and popen.pid:
            kill_tree(popen.pid)


_current = threading.local()  # .job: the job whose thread this is
_EXECUTORS: weakref.WeakSet[ThreadExecutor] = weakref.WeakSet()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Every audited event of the process comes here: only a starting subprocess matters.
    if event != "subprocess.Popen" or not _EXECUTORS:
        return
    popen = sys._getframe(1).f_locals.get("self")  # Popen._execute_child raises the event
    if isinstance(popen, subprocess.Popen):
        for executor in list(_EXECUTORS):
            executor.started(popen, args[1], args[3])


sys.addaudithook(_audit)  # once per process, when the thread executor is first imported
