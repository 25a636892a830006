"""The Celery executor, server side: queued jobs go to the broker; Celery workers started with
`mieruka worker APP` claim them from the store and run them (see celery_worker.py).

The store stays the record of every job: a message only says "run job N". A worker that gets a
message for a job that is no longer queued drops it, so duplicate deliveries (visibility timeout,
redelivery after a crash, a re-send after recovery) never run a job twice.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..core.clock import utcnow
from ..core.job import JobRecord
from ..core.status import JobStatus
from ..errors import ConfigError, MissingExtraError
from ..i18n import N_, _
from ..nodes import is_up
from ..settings import Settings
from .base import WorkerMessage
from .broker_epoch import BrokerEpoch

if TYPE_CHECKING:
    from celery import Celery

    from ..store.base import JobStore

TASK_NAME = "mieruka.run"
CANCEL_COMMAND = "mieruka_cancel"
log = logging.getLogger("mieruka.celery")


def make_celery(settings: Settings) -> Celery:
    """The Celery app both sides use: same broker, same queue options."""
    if not settings.broker_url:
        raise ConfigError(_("executor 'celery' needs a broker: set MIERUKA_BROKER_URL (e.g. redis://host:6379/0)"))
    try:
        from celery import Celery
    except ImportError:
        raise MissingExtraError(N_("The Celery executor"), "celery") from None
    from .redis_transport import transport_for

    app = Celery("mieruka", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        broker_transport=transport_for(settings.broker_url),
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,  # results live in the job store
        task_default_queue="default",
        task_create_missing_queues=True,
        # A message is acknowledged once its job has ended, so a worker that vanishes leaves it to
        # be delivered again. A lost pool process is settled by the worker itself with the exact
        # reason (exit code, signal) and the task's retry policy, so its message is not requeued.
        task_acks_late=True,
        task_reject_on_worker_lost=False,
        worker_prefetch_multiplier=1,  # a busy worker does not sit on jobs an idle one could run
        broker_transport_options={"visibility_timeout": settings.broker_visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_redirect_stdouts=False,  # the job's output is captured at the file descriptors
        worker_hijack_root_logger=False,
        enable_utc=True,
    )
    return app


def send_run(
    celery: Celery, broker_url: str, job_id: int, task: str, queue: str, priority: int, delay: float = 0.0
) -> None:
    """Send the message that runs job `job_id` (after `delay` seconds)."""
    args = [job_id, task]
    countdown = delay if delay > 0 else None
    reprs = {"argsrepr": f"[{job_id}, {task!r}]", "kwargsrepr": "{}"}  # spares Celery's saferepr
    broker_prio = broker_priority(priority, broker_url)
    if not broker_url.startswith(("redis:", "rediss:")):
        celery.send_task(TASK_NAME, args=args, queue=queue, priority=broker_prio, countdown=countdown, **reprs)
        return
    # On Redis, straight through Celery's message layer (app.amqp), as send_task itself does in the
    # end: its routing, result object and option lookups were a fifth of a send's CPU. Declaring the
    # queue there only records an exchange binding, which messages sent straight to a queue (as Celery
    # sends to direct queues) never look up.
    from kombu.utils.uuid import uuid

    amqp = celery.amqp
    message = amqp.create_task_message(uuid(), TASK_NAME, args, {}, countdown=countdown, ignore_result=True, **reprs)
    with celery.producer_or_acquire() as producer:
        amqp.send_task_message(producer, TASK_NAME, message, queue=queue, priority=broker_prio, declare=[])


def broker_priority(priority: int, broker_url: str) -> int:
    """Our priorities: higher first. Redis lists are read from 0 (first) to 9; AMQP from 9 to 0."""
    if broker_url.startswith(("redis", "rediss", "unix")):
        return max(0, min(9, 6 - priority))
    return max(0, min(9, 3 + priority))


class CeleryExecutor:
    """The engine's side of Celery: sends jobs, asks workers to cancel, lists workers."""

    def __init__(self, settings: Settings, store: JobStore) -> None:
        self.settings = settings
        self.store = store
        self.celery = make_celery(settings)
        self._wake = threading.Event()
        self._unsent: list[tuple[JobRecord, float]] = []
        self._lock = threading.Lock()
        self.broken: str | None = None
        self._epoch = BrokerEpoch(settings.broker_url, settings.broker_check_interval)

    def start(self) -> None:
        pass  # the broker connection opens with the first message

    def free_slots(self) -> int:
        return 0  # never claim here: workers claim what the broker hands them

    def run(self, record: JobRecord) -> str:
        raise RuntimeError("the Celery executor never runs jobs in the server")

    def send(self, record: JobRecord, delay: float = 0.0) -> None:
        """Send now (from any thread); while the broker is away, keep it for the engine's loop to
        send, after the jobs that wait already, so a submission does not wait on the broker."""
        with self._lock:
            if self._unsent:
                self._unsent.append((record, time.monotonic() + delay))
                return
        try:
            self._publish(record, delay)
        except Exception as exc:
            log.warning("cannot send job %d to the broker (%s); trying again", record.id, exc)
            with self._lock:
                self._unsent.append((record, time.monotonic() + delay))
            self._wake.set()  # the loop tries again within a second

    def _publish(self, record: JobRecord, delay: float) -> None:
        send_run(self.celery, self.settings.broker_url, record.id, record.task, record.queue, record.priority, delay)

    def _send_unsent(self) -> None:
        with self._lock:
            pending, self._unsent = self._unsent, []
        for index, (record, due) in enumerate(pending):
            try:
                self._publish(record, max(0.0, due - time.monotonic()))
            except Exception:
                with self._lock:
                    self._unsent[:0] = pending[index:]  # before any that came meanwhile
                return

    def kill(self, job_id: int) -> bool:
        """Revoke with terminate, by job: the worker running it kills its process and children.
        With the broker away, the worker finds the cancel in the store instead (within a second)."""
        try:
            self.celery.control.broadcast(CANCEL_COMMAND, arguments={"job_id": job_id})
        except Exception as exc:
            log.warning("cannot broadcast the cancel of job %d (%s); its worker will find it in the store", job_id, exc)
            return False
        return True

    def _resend_queued(self, why: str) -> None:
        """The broker came back without its messages, or some of them (see broker_epoch): send
        every queued job again, oldest first."""
        from ..store.base import JobQuery

        page_size = 1000
        jobs: list[JobRecord] = []
        before: int | None = None
        try:
            while True:
                page = self.store.list_jobs(JobQuery(status=[JobStatus.QUEUED], before_id=before, limit=page_size))
                jobs.extend(page)
                if len(page) < page_size:
                    break
                before = page[-1].id
        except Exception:
            self._epoch.forget()  # the next check, by any server, tries again
            raise
        if jobs and why == "new":
            log.warning(
                "the broker has lost its messages (restarted without persistence?): sending %d queued jobs again",
                len(jobs),
            )
        elif jobs:
            log.warning(
                "the broker is back: sending %d queued jobs again (a message on its way may have been lost)",
                len(jobs),
            )
        now = utcnow()
        for record in reversed(jobs):
            delay = (record.run_after - now).total_seconds() if record.run_after is not None else 0.0
            self.send(record, max(0.0, delay))

    def wait(self, timeout: float | None) -> list[WorkerMessage]:
        why = self._epoch.lost()
        if why is not None:
            self._resend_queued(why)
        if self._epoch.active:  # wake up for the next check
            until = max(0.0, self._epoch.next_check - time.monotonic())
            timeout = until if timeout is None else min(timeout, until)
        if self._unsent:
            self._send_unsent()
            timeout = 1.0 if timeout is None else min(timeout, 1.0)
        self._wake.wait(timeout)
        self._wake.clear()
        return []

    def wake(self) -> None:
        self._wake.set()

    def workers(self) -> list[dict[str, object]]:
        """One entry per slot of each Celery worker that is up, in the local pool's shape: busy
        slots carry the job they run. Up: its heartbeat in the store is fresh and, on this machine,
        its process is alive (a worker killed here is gone at once, one elsewhere after
        `engine_stale_after`)."""
        now = utcnow()
        slots: list[dict[str, object]] = []
        for node in self.store.engines():
            if node.info.get("kind") != "celery" or not is_up(node, now, self.settings.engine_stale_after):
                continue
            running = list(node.running)
            for i in range(max(int(node.info.get("concurrency") or 0), len(running))):
                slots.append(
                    {
                        "name": f"{node.info.get('name', node.host)}#{i + 1}",
                        "pid": node.pid,
                        "ready": True,
                        "job_id": running[i] if i < len(running) else None,
                        "jobs_done": None,
                        "host": node.host,
                    }
                )
        return slots

    def broker_problem(self) -> str | None:
        """None if the broker answers within a second, else what is wrong."""
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=0, timeout=1)
        except Exception as exc:
            return f"the broker does not answer: {type(exc).__name__}: {exc}"
        return None

    def stop(self) -> list[int]:
        self._send_unsent()
        self._epoch.close()
        self.celery.close()
        return []  # jobs keep running on their workers
