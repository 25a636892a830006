"""The engine's loop thread: it owns dispatching and every write caused by workers. API calls from
other threads talk to it through a command queue and a wake-up, so a submitted job starts without
waiting on a polling interval. What workers report is written in one transaction per round, with
the claim of the jobs to start next."""

from __future__ import annotations

import heapq
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import attempt
from ..bus.base import EventBus
from ..core.clock import utcnow
from ..core.events import Event
from ..core.status import JobStatus
from ..core.steps import StepStatus
from ..executors.base import Executor, Finished, Recorded, WorkerMessage
from ..nodes import dead_here
from ..settings import Settings
from ..store.base import Change, Claim, JobStore, StepsClosed, Transition
from ..store.outage import is_outage, reason
from .dispatch import Dispatch, Running
from .states import States
from .upkeep import Upkeep

log = logging.getLogger("mieruka.engine")
NEIGHBOUR_LOOK = 0.5  # seconds between looks at whether an engine on this host has died


@dataclass
class Batch:
    changes: list[Change] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    finals: list[tuple[int, Running, Transition]] = field(default_factory=list)  # (index, job, change)
    claim: Claim | None = None
    saved: list[Callable[[], None]] = field(default_factory=list)  # to call once the changes are stored

    def followed_by(self, later: Batch) -> Batch:
        offset = len(self.changes)
        return Batch(
            self.changes + later.changes,
            self.events + later.events,
            self.finals + [(i + offset, job, change) for i, job, change in later.finals],
            later.claim,
            self.saved + later.saved,
        )


class Loop:
    def __init__(
        self,
        executor: Executor,
        store: JobStore,
        bus: EventBus,
        states: States,
        dispatch: Dispatch,
        upkeep: Upkeep,
        settings: Settings,
        engine_id: str,
        host: str,
        beat: Callable[[], None],
    ) -> None:
        self.executor = executor
        self.store = store
        self.bus = bus
        self.states = states
        self.settings = settings
        self.upkeep = upkeep
        self.engine_id = engine_id
        self.host = host
        self._beat = beat
        self.dispatch = dispatch
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
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
        self._sleeping = False
        self._unsaved: Batch | None = None

    # -- the thread ----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mieruka-engine", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop the thread; False if it was not running."""
        if self._thread is None:
            return False
        self._stop.set()
        self.executor.wake()
        self._thread.join(timeout=30)
        self._thread = None
        return True

    def command(self, kind: str, payload: Any) -> None:
        """From any thread: "ready" (a job record to dispatch) or "cancel" (a job id)."""
        self._commands.put((kind, payload))
        # Only a sleeping loop needs waking: a busy one looks at the queue before it sleeps again.
        if self._sleeping:
            self.executor.wake()

    def requeued(self, job_id: int, run_after: datetime | None) -> None:
        """A job went back to the queue: look for it now, or when its retry is due."""
        if run_after is None:
            self._next_poll = 0.0
        else:
            at = time.monotonic() + max((run_after - utcnow()).total_seconds(), 0.0)
            heapq.heappush(self._delayed, (at, job_id))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception as exc:
                failed("engine loop error", exc)
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
        except Exception as exc:
            failed("engine housekeeping failed", exc)
        batch.claim = self.dispatch.pick()
        self._commit(batch)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        self.dispatch.overdue(now)
        if now >= self._next_beat:
            self._next_beat = now + min(self.settings.heartbeat_interval, self.settings.engine_stale_after / 3)
            self._beat()
            self.upkeep.recover(utcnow())
            self._neighbours = self._look_around()
        elif self._neighbours and now >= self._next_look:
            # A process on this machine that runs jobs (a Celery worker, another server) died: its
            # jobs are recovered now, not at the next beat. Looking costs no query.
            self._next_look = now + NEIGHBOUR_LOOK
            if any(dead_here(self.host, pid) for pid in self._neighbours):
                self.upkeep.recover(utcnow())
                self._neighbours = self._look_around()
        if now >= self._next_schedule:
            self._next_schedule = self.upkeep.fire_schedules()
        if now >= self._next_prune:
            self._next_prune = now + self.settings.prune_interval
            self.upkeep.prune()
        while self._delayed and self._delayed[0][0] <= now:
            heapq.heappop(self._delayed)
            self._next_poll = 0.0  # a retry became due: look in the store now
        if now >= self._next_poll:
            self._next_poll = min(now + self.settings.poll_interval, self.dispatch.poll())
        elif self.dispatch.backlogged():
            self.dispatch.refill()

    def _look_around(self) -> list[int]:
        return [n.pid for n in self.store.engines() if n.host == self.host and n.id != self.engine_id]

    def _timeout(self) -> float:
        self._sleeping = True
        if not self._commands.empty():
            self._sleeping = False
            return 0.0
        now = time.monotonic()
        deadlines = [self._next_poll, self._next_beat, self._next_schedule, self._next_prune]
        if self._neighbours:
            deadlines.append(self._next_look)
        deadlines += self.dispatch.deadlines()
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
                self.dispatch.push(payload)
            elif kind == "cancel":
                self.dispatch.cancel(payload)

    # -- worker messages -----------------------------------------------------------------------
    def _handle_messages(self, messages: Sequence[WorkerMessage]) -> Batch:
        """Everything the workers reported since the last look, to write in one transaction."""
        batch = Batch()
        changes = batch.changes
        for msg in messages:
            if isinstance(msg, Recorded):
                changes.extend(msg.changes)
                batch.events.extend(msg.events)
                continue
            if isinstance(msg, Finished) and msg.saved is not None:
                batch.saved.append(msg.saved)
            running = self.dispatch.running.pop(msg.job_id, None)
            if running is None:
                continue
            if isinstance(msg, Finished):
                changes.extend(msg.changes)
            else:  # Died: settle it on the dead worker's behalf
                status, fields = attempt.cut_short(running.record, running.task, msg.reason, running.kill_reason)
                # A pipeline's steps that were still running or waiting end with it.
                closed = StepStatus.CANCELLED if running.kill_reason == attempt.CANCEL else StepStatus.FAILED
                changes.append(StepsClosed(msg.job_id, closed))
                batch.events.append(Event("steps", msg.job_id, running.task.name, {"closed": closed.value}))
                changes.append(attempt.end(running.record, status, fields))
            last = changes[-1] if changes else None
            if isinstance(last, Transition) and last.job_id == msg.job_id:
                batch.finals.append((len(changes) - 1, running, last))
        return batch

    def _commit(self, batch: Batch) -> None:
        """One transaction for what workers reported and the jobs to start next; then tell.
        If the store fails (database down, disk full), the reports are kept and tried again on
        the next round; the claim is dropped, its jobs stay queued in the store."""
        try:
            applied = self.store.apply(batch.changes, batch.claim)
        except Exception as exc:
            failed(f"could not save {len(batch.changes)} changes; trying again", exc)
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
                self.states.tell(running.record, applied.after.get(index), status=change.to, **change.fields)
                if change.to is JobStatus.QUEUED:
                    self.requeued(running.record.id, change.fields.get("run_after"))
        for record in applied.claimed:
            self.dispatch.start(record)


def failed(what: str, exc: Exception) -> None:
    """A database that does not answer is a moment, said in one line (the loop tries again); any
    other error is a bug, logged with its traceback."""
    if is_outage(exc):
        log.warning("%s: the database does not answer (%s)", what, reason(exc))
    else:
        log.error("%s", what, exc_info=exc)
