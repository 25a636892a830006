"""The Celery worker: `mieruka worker APP` loads the app once, then its pool processes run jobs
through the same runner and recorder as the local executor, writing to the store and the event bus
themselves.

Who does what:
- a pool process claims the job in the store (queued -> running), runs it, records progress, logs,
  artifacts and the outcome, and re-sends the message with a countdown when a retry is due;
- its watcher thread enforces the task's timeout and notices a cancel recorded in the store, by
  settling the job and killing the pool process's group (the job and its children);
- the main process beats in the store (so servers recover jobs of a worker that vanished), runs
  the cancel command (revoke with terminate, by job id), and settles a job whose pool process
  died with the exit code or signal.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import attempt
from ..artifacts import open_uploads
from ..artifacts.uploads import job_upload_root
from ..bus.outbox import Outbox
from ..capture import FdCapture
from ..core.clock import utcnow
from ..core.events import Event, job_state
from ..core.job import JobRecord
from ..core.status import JobStatus
from ..core.steps import StepStatus
from ..core.task import Task
from ..nodes import dead_here
from ..notes import note
from ..process import alive, descendants, kill_tree, worker_lost
from ..recorder import AttemptRecorder
from ..store.base import Applied, Change, Claim, StepsClosed, Transition
from .base import NEW_JOB_GRACE
from .celery import CANCEL_COMMAND, TASK_NAME, make_celery, send_run

if TYPE_CHECKING:
    from celery import Celery

    from ..runtime import Runtime

log = logging.getLogger("mieruka.worker")
LIMIT_RETRY = 0.2  # seconds before a job held back by its task's concurrency limit is tried again
CANCEL_CHECK_EVERY = 0.5  # seconds between looks at the store for a cancel the broadcast missed
SETTLING_WAIT = 5.0  # how long a cancel waits for a pool process to finish telling how its job ended


def settling_lock(main_pid: int, pool_pid: int) -> Path:
    """The file a pool process holds locked while it writes and tells how its job ended: the main
    process takes it before it kills the pool process for a cancel, or a kill between the write and
    the event would leave the job ended with nobody told. Per pool process, so that their ends never
    wait on each other; in the temporary folder, as flock needs a local file system."""
    return Path(tempfile.gettempdir()) / f"mieruka-celery-{main_pid}" / f"{pool_pid}.lock"


@contextlib.contextmanager
def _settling(path: Path, wait: float | None) -> Iterator[bool]:
    """Hold `path` locked (waiting up to `wait` seconds; None: as long as it takes); yields whether
    it is held. The kernel lets go when the process dies."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # its folder went (a cleaner of the temporary folder, on a worker up for weeks)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if deadline is None else fcntl.LOCK_NB))
                held = True
                break
            except BlockingIOError:
                assert deadline is not None
                if time.monotonic() >= deadline:
                    held = False
                    break
                time.sleep(0.01)
        yield held
    finally:
        os.close(fd)


class WorkerNode:
    """What every process of one `mieruka worker` shares: set up in the main process before the
    pool forks; the main process and each pool process (`PoolProcess`) open their own connections
    after the fork."""

    def __init__(self, runtime: Runtime, celery: Celery, queues: Sequence[str], concurrency: int) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.celery = celery
        self.queues = list(queues)
        self.concurrency = concurrency
        self.engine_id = uuid.uuid4().hex[:16]  # this worker's liveness row in the store
        self.host = socket.gethostname()
        self.name = f"celery@{self.host}"
        self.main_pid = os.getpid()
        self._main: _Connections | None = None
        self._beat_stop = threading.Event()
        self.info = {
            "kind": "celery",
            "name": self.name,
            "queues": self.queues,
            "concurrency": concurrency,
            "started_at": utcnow().isoformat(),
        }

    # -- main process ----------------------------------------------------------------------------
    @property
    def main(self) -> _Connections:
        if self._main is None:
            self._main = _Connections(self)
        return self._main

    def start_heartbeat(self) -> None:
        self.main.store.heartbeat(self.engine_id, self.host, self.main_pid, utcnow(), self.info)
        threading.Thread(target=self._beat, name="mieruka-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        period = min(self.settings.heartbeat_interval, self.settings.engine_stale_after / 3)
        while not self._beat_stop.wait(period):
            try:
                self.main.store.heartbeat(self.engine_id, self.host, self.main_pid, utcnow(), self.info)
            except Exception:
                log.exception("heartbeat failed")

    def shutdown(self) -> None:
        self._beat_stop.set()
        shutil.rmtree(settling_lock(self.main_pid, 0).parent, ignore_errors=True)
        if self._main is not None:
            try:
                self._main.store.remove_engine(self.engine_id)
            finally:
                self._main.close()

    def settle_lost(self, job_id: int, reason: str) -> None:
        """A pool process died while it ran the job: fail it, or queue the retry, with the reason."""
        conn = self.main
        record = conn.store.get_job(job_id)
        if record is None or record.status is not JobStatus.RUNNING or record.engine_id != self.engine_id:
            return
        pid = _pid_of(record.worker)
        if pid is not None and alive(pid):
            return  # another attempt runs in a live process now (the dead one had settled its own)
        if pid is not None:
            kill_tree(pid, [])  # what the job started lives on in the dead process's group
        task = self.runtime.tasks.get(record.task) if record.task in self.runtime.tasks else None
        conn.settle(record, *attempt.cut_short(record, task, reason))

    def cancel(self, job_id: int, pool: Any) -> bool:
        """Revoke with terminate the request running the job (SIGKILL its pool process) and kill its
        children; record the job cancelled. Not while the pool process is writing how the job ended
        (it finished, or its watcher found the cancel first): it is let finish, and not killed."""
        from celery.worker import state as worker_state

        for request in list(worker_state.active_requests):
            if request.name != TASK_NAME or not request.args or request.args[0] != job_id:
                continue
            pid = request.worker_pid
            if pid is None:
                continue
            with _settling(settling_lock(self.main_pid, pid), SETTLING_WAIT) as held:
                record = self.main.store.get_job(job_id)
                if held and (record is None or record.status is not JobStatus.RUNNING):
                    return True  # it ended meanwhile, and its pool process told so
                found = descendants(pid)
                worker_state.revoked.add(request.id)
                request.terminate(pool, signal=signal.SIGKILL)
                kill_tree(pid, found)
                if record is not None and record.status is JobStatus.RUNNING:
                    self.main.settle(record, *attempt.cut_short(record, None, "", attempt.CANCEL))
            return True
        return False


@dataclass
class _Current:
    record: JobRecord
    task: Task | None
    deadline: float | None
    ended: bool = False


class _Connections:
    """Store, bus and artifact storage of one process (connections never cross a fork)."""

    def __init__(self, node: WorkerNode) -> None:
        from ..store.sql import SqlJobStore
        from ..wiring import build_artifacts, build_bus

        self.node = node
        self.store = SqlJobStore(node.settings.effective_database_url)
        self.bus = build_bus(node.settings.effective_event_bus)
        self.artifacts = build_artifacts(node.settings)
        self.uploads = open_uploads(self.artifacts, node.settings.home_path / "uploads")
        self.outbox = Outbox(self.bus)

    def publish(self, events: Sequence[Event]) -> None:
        """Publish now, after any events held (in one round trip)."""
        self.outbox.send(events)

    def hold(self, events: Sequence[Event]) -> None:
        """Publish with the next events, or at the watcher's next look (within half a second): a
        quick job's start and end go out in one round trip."""
        self.outbox.hold(events)

    def apply(self, changes: Sequence[Change], claim: Claim | None = None) -> Applied:
        """Write, trying again until the database answers: what a job reported (above all how it
        ended) is never dropped, or its job would stay `running` under a live worker."""
        delay = 0.1
        while True:
            try:
                return self.store.apply(changes, claim)
            except Exception:
                log.warning("cannot write to the store; trying again in %gs", delay, exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def settle(self, record: JobRecord, status: JobStatus, fields: dict[str, Any]) -> bool:
        """End the running attempt (guarded: a job that moved on meanwhile is left alone)."""
        applied = self.apply([attempt.end(record, status, fields)])
        if applied.done[0]:
            # The attempt was cut short (killed, lost, cancelled): a pipeline's open steps end with
            # it. Only once the job is ours to settle: a later attempt may have steps running.
            self.apply(
                [StepsClosed(record.id, StepStatus.CANCELLED if status is JobStatus.CANCELLED else StepStatus.FAILED)]
            )
            self.published_state(record, status, fields, applied.after.get(0))
            return True
        return False

    def finish(self, record: JobRecord, changes: list[Change]) -> bool:
        """End the attempt with what the job recorded (its last change ends it); False if the job
        had moved on meanwhile."""
        applied = self.apply(changes)
        final = changes[-1]
        if applied.done and applied.done[-1] and isinstance(final, Transition):
            self.published_state(record, final.to, final.fields, applied.after.get(len(changes) - 1))
            return True
        return False

    def published_state(
        self, record: JobRecord, status: JobStatus, fields: dict[str, Any], now: JobRecord | None = None
    ) -> None:
        """Tell of the job's new state; `now`, the job as stored at its end, travels with it."""
        self.publish([job_state(record, status.value, fields, now)])
        if status is JobStatus.QUEUED:
            run_after = fields.get("run_after")
            delay = (run_after - utcnow()).total_seconds() if run_after is not None else 0.0
            self.resend(record, delay)

    def resend(self, record: JobRecord, delay: float) -> None:
        send_run(
            self.node.celery,
            self.node.settings.broker_url,
            record.id,
            record.task,
            record.queue,
            record.priority,
            delay,
        )

    def close(self) -> None:
        self.outbox.flush()
        self.bus.close()
        self.store.close()


class PoolProcess:
    """One Celery pool process: runs one job at a time."""

    def __init__(self, node: WorkerNode) -> None:
        os.setpgid(0, 0)  # lead a process group: killing it takes the job's children along
        # Celery has the kernel SIGKILL pool processes when the worker dies, which would leave the
        # job's children running; the watcher kills the whole group instead.
        from billiard.util import set_pdeathsig

        set_pdeathsig(0)
        self.node = node
        self.conn = _Connections(node)
        self.worker_name = f"{node.name}:{os.getpid()}"
        self.recorder = AttemptRecorder(self._sink)
        self.capture = FdCapture(self.recorder.lines)
        self.capture.start()
        # As in the local executor's workers: a job's logging lands in its log in one format.
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
        self._lock = threading.Lock()
        self._current: _Current | None = None
        self._parent = os.getppid()
        self._settling = settling_lock(node.main_pid, os.getpid())
        with _settling(self._settling, None):
            pass  # made now: a cancel may look for it before this process ends a job
        threading.Thread(target=self._watch, name="mieruka-watch", daemon=True).start()

    def _sink(self, changes: list[Change], events: list[Event]) -> None:
        self.conn.apply(changes)
        self.conn.publish(events)

    # -- a message ---------------------------------------------------------------------------------
    def handle(self, job_id: int, task_name: str | None = None) -> None:
        """One message: claim the job and run it; or find out why it is not claimable."""
        conn = self.conn
        tasks = self.node.runtime.tasks
        task = tasks.get(task_name) if task_name is not None and task_name in tasks else None
        limit = (task.name, task.concurrency) if task is not None and task.concurrency is not None else None
        claimed, record = self._claim(Claim([job_id], self.worker_name, self.node.engine_id, utcnow(), limit))
        if claimed:
            self._run(claimed[0])
            return
        if record is None or record.finished:
            return  # deleted, cancelled or done: a stale or duplicate message
        now = utcnow()
        if record.status is JobStatus.RUNNING:
            reason = self._lost_reason(record)
            if reason is not None:  # delivered again because whoever ran it is gone
                task = tasks.get(record.task) if record.task in tasks else None
                conn.settle(record, *attempt.cut_short(record, task, reason))
            return
        if record.run_after is not None and record.run_after > now:
            conn.resend(record, (record.run_after - now).total_seconds())  # early: a retry not yet due
        else:
            conn.resend(record, LIMIT_RETRY)  # its task is at its concurrency limit: look again soon

    def _claim(self, claim: Claim) -> tuple[list[JobRecord], JobRecord | None]:
        """The job claimed, or else as it stands. Claim first: the common case costs one statement;
        the job is read only when that fails. Its row may still be on the way to the store (the
        engine sends the job meanwhile): it is waited for, up to NEW_JOB_GRACE."""
        conn = self.conn
        job_id = claim.job_ids[0]
        claimed = conn.apply([], claim).claimed
        if claimed:
            return claimed, None
        record = conn.store.get_job(job_id)
        until, pause = time.monotonic() + NEW_JOB_GRACE, 0.0005
        while record is None and time.monotonic() < until:
            time.sleep(pause)
            pause = min(pause * 1.5, 0.25)
            record = conn.store.get_job(job_id)
        now = utcnow()
        if (
            record is not None
            and record.status is JobStatus.QUEUED
            and (record.run_after is None or record.run_after <= now)
        ):  # it came after the claim looked
            claimed = conn.apply([], replace(claim, now=now)).claimed
            record = None if claimed else conn.store.get_job(job_id)
        return claimed, record

    def _run(self, record: JobRecord) -> None:
        conn = self.conn
        tasks = self.node.runtime.tasks
        task = tasks.get(record.task) if record.task in tasks else None
        conn.hold([job_state(record, JobStatus.RUNNING.value, {"worker": self.worker_name})])
        deadline = time.monotonic() + task.timeout if task is not None and task.timeout else None
        with self._lock:
            self._current = _Current(record, task, deadline)
        # Uploads received by a server on another machine are downloaded for the job's duration.
        changes = attempt.run(
            self.recorder,
            self.capture,
            task,
            record,
            conn.artifacts,
            lambda: job_upload_root(conn.uploads, record.params),
        )
        with self._lock:
            current, self._current = self._current, None
        if current is None or current.ended:
            return  # the watcher settled it (timeout or cancel) and is taking this process down
        with _settling(self._settling, None):
            finished = conn.finish(record, changes)
        if finished:
            return
        fresh = conn.store.get_job(record.id)
        if fresh is not None and fresh.status is JobStatus.QUEUED and not fresh.finished:
            # Our claim is gone (PostgreSQL restarted before it reached the disk): the job is
            # queued again without a message; send one, it runs again.
            conn.resend(fresh, 0.0)

    def _lost_reason(self, record: JobRecord) -> str | None:
        """Why a running job's attempt is over although nobody settled it, or None if it still runs."""
        if record.engine_id == self.node.engine_id:
            pid = _pid_of(record.worker)
            if pid is not None and pid != os.getpid() and alive(pid):
                return None
            return note("error.worker_died")
        now = utcnow()
        orphans = self.conn.store.orphaned_jobs(now, self.node.settings.engine_stale_after, dead_here)
        if any(o.id == record.id for o in orphans):
            return note("error.interrupted_worker")
        return None

    # -- the watcher thread ----------------------------------------------------------------------
    def _watch(self) -> None:
        next_cancel_check = 0.0
        while True:
            time.sleep(0.1 if self.recorder.busy else 0.5)
            if os.getppid() != self._parent:
                os.killpg(os.getpgrp(), signal.SIGKILL)  # the worker died: take the job down with it
            with self._lock:
                current = self._current
            try:
                self.recorder.tick()
                self.conn.outbox.flush()  # a running job's held "running" event, if no log line took it
                if current is None:
                    continue
                now = time.monotonic()
                if current.deadline is not None and now >= current.deadline:
                    self._end(current, *attempt.cut_short(current.record, current.task, "", attempt.TIMEOUT))
                elif now >= next_cancel_check:
                    next_cancel_check = now + CANCEL_CHECK_EVERY
                    fresh = self.conn.store.get_job(current.record.id)
                    if fresh is not None and fresh.cancel_requested:
                        self._end(current, *attempt.cut_short(current.record, current.task, "", attempt.CANCEL))
            except Exception:
                log.exception("watcher failed")

    def _end(self, current: _Current, status: JobStatus, fields: dict[str, Any]) -> None:
        with self._lock:
            if self._current is not current:
                return  # the job finished meanwhile
            current.ended = True
        self.capture.drain()
        with _settling(self._settling, None):
            if self.conn.settle(current.record, status, fields):
                kill_tree(os.getpid())  # holding the lock: a cancel waiting on it finds the job ended


# -- wiring into Celery ----------------------------------------------------------------------------
_node: WorkerNode | None = None
_pool_process: PoolProcess | None = None


def create_worker(runtime: Runtime, queues: Sequence[str], concurrency: int, loglevel: str = "INFO") -> Any:
    """A Celery worker (not started) that runs the app's jobs; `.start()` blocks until it stops."""
    from celery import signals
    from celery.worker.control import control_command

    global _node
    celery = make_celery(runtime.settings)
    # A broker outage of any length is waited out (Celery's default gives up after 100 tries, some
    # 50 minutes); jobs running meanwhile go on, and write their outcomes to the store.
    celery.conf.broker_connection_max_retries = None
    # Jobs running when the connection is lost run on (Celery 6 is to cancel them by default); a
    # message delivered again meanwhile is dropped, as its job is no longer queued.
    celery.conf.worker_cancel_long_running_tasks_on_connection_loss = False
    node = _node = WorkerNode(runtime, celery, queues, concurrency)

    @celery.task(name=TASK_NAME, acks_late=True, ignore_result=True)  # type: ignore[untyped-decorator]
    def run(job_id: int, task: str | None = None) -> None:
        from celery.exceptions import Reject

        assert _pool_process is not None
        try:
            _pool_process.handle(job_id, task)
        except Exception as exc:
            log.warning("job %d: cannot look at the store (%s); its message goes back to the queue", job_id, exc)
            time.sleep(1.0)
            raise Reject(str(exc), requeue=True) from exc

    @control_command(args=[("job_id", int)], signature="<job_id>")  # type: ignore[untyped-decorator]
    def mieruka_cancel(state: Any, job_id: int) -> dict[str, str]:
        assert _node is not None
        return {"ok": "cancelled" if _node.cancel(job_id, state.consumer.pool) else "not running here"}

    assert mieruka_cancel.__name__ == CANCEL_COMMAND

    def on_process_init(**_: Any) -> None:
        global _pool_process
        _pool_process = PoolProcess(node)

    def on_ready(**_: Any) -> None:
        # After Celery's logging set-up, which shows all its deprecation warnings: this one, at
        # every lost connection, is about the setting chosen above.
        warnings.filterwarnings("ignore", message=r"\s*In Celery 5.1 we introduced an optional breaking change")
        node.start_heartbeat()

    def on_shutdown(**_: Any) -> None:
        if os.getpid() == node.main_pid:
            node.shutdown()

    def on_failure(
        sender: Any = None,
        task_id: str = "",
        exception: BaseException | None = None,
        args: Sequence[Any] = (),
        **_: Any,
    ) -> None:
        from billiard.exceptions import WorkerLostError

        if isinstance(exception, WorkerLostError) and args and os.getpid() == node.main_pid:
            node.settle_lost(int(args[0]), _lost_reason(str(exception)))

    signals.worker_process_init.connect(on_process_init, weak=False)
    signals.worker_ready.connect(on_ready, weak=False)
    signals.worker_shutdown.connect(on_shutdown, weak=False)
    signals.task_failure.connect(on_failure, weak=False)
    return celery.Worker(
        queues=node.queues,
        concurrency=concurrency,
        pool="prefork",
        loglevel=loglevel,
        hostname=f"{node.name}-{os.getpid()}",
        without_gossip=True,
        without_mingle=True,
        task_events=False,
    )


def _lost_reason(message: str) -> str:
    """billiard's 'Worker exited prematurely: signal 9 (SIGKILL) Job: 3.' in our words."""
    if match := re.search(r"signal (\d+) \((\w+)\)", message):
        return worker_lost(-int(match.group(1)))
    if match := re.search(r"exitcode (\d+)", message):
        return worker_lost(int(match.group(1)))
    return note("error.worker_died_saying", said=message)


def _pid_of(worker: str | None) -> int | None:
    try:
        return int(worker.rsplit(":", 1)[1]) if worker else None
    except (IndexError, ValueError):
        return None
