"""The worker process of the local executor: loads the app once, then runs the jobs it is sent.
What a job records (progress, logs, artifacts, outcome) goes back to the engine over the pipe; the
outcome is first written to the server's outcome spool (spool.py), so a server killed before saving
it finds it at its next start. A worker takes no other job before that.

A worker whose server died (kill -9) kills its job if the job's function is still running (the next
server runs it again), and records its outcome if the function returned; then it exits."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from .. import attempt
from ..artifacts import open_storage
from ..capture import FdCapture
from ..core.events import Event
from ..core.job import JobRecord
from ..notes import note
from ..recorder import AttemptRecorder
from ..runner import CALL_CODE, Abandon, Gate
from ..store.base import Change
from . import spool
from .pipe import MessagePipe

if TYPE_CHECKING:
    from ..core.task import TaskRegistry


class Loaded(Protocol):
    """The app as a worker needs it: its tasks."""

    @property
    def tasks(self) -> TaskRegistry: ...


ORPHANED = signal.SIGUSR1  # the watcher tells the main thread that the server is gone
ORPHAN_GRACE = 5.0  # seconds for the main thread to hear it (it may be in a long C call of the job)


class Channel(MessagePipe):
    """The worker's end of its pipe to the engine; several threads send on it."""

    def recorded(self, changes: list[Change], events: list[Event]) -> None:
        try:
            self.send(("recorded", changes, events))
        except OSError:
            pass  # the server is gone: what the job reports now is lost with it, not the job's business


class _Life:
    """What the main thread is doing, as it and its signal handler see it."""

    def __init__(self) -> None:
        self.busy = False  # from taking a job until its outcome is written and reported
        self.gate = Gate()  # closed once the server is gone
        self.heard = threading.Event()


def _die() -> NoReturn:
    os.killpg(os.getpgrp(), signal.SIGKILL)  # the job's processes too
    os._exit(1)


def _in_function(frame: FrameType | None) -> bool:
    """Whether the task's function runs: the runner's call frame is there and has a callee."""
    innermost = frame
    while frame is not None:
        if frame.f_code is CALL_CODE:
            return frame is not innermost
        frame = frame.f_back
    return False


def _orphaned(life: _Life) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        # In the main thread, between two of its steps: what it does now is what it did.
        life.heard.set()
        if not life.busy or _in_function(frame):
            _die()
        life.gate.closed = True  # not started: never will be; returned: its outcome is recorded, then we exit

    return handle


def _watch(recorder: AttemptRecorder, parent: int, life: _Life) -> None:
    """Flush rate-limited progress; if the server died (kill -9), end the job with us, or record it."""
    while True:
        time.sleep(0.1 if recorder.busy else 0.5)  # an idle worker wakes rarely (small machines)
        if os.getppid() != parent:
            signal.pthread_kill(threading.main_thread().ident or 0, ORPHANED)
            if not life.heard.wait(ORPHAN_GRACE):
                _die()  # the main thread is stuck in the job's C code: the function has not returned
            return
        recorder.tick()


def worker_main(channel: Channel, config: dict[str, Any], app_of: Callable[[], Loaded]) -> None:
    """Serve jobs until told to stop. `app_of` gives the app: the one in memory, in a worker the
    zygote forked; imported by its reference, in a fresh interpreter (fresh.py)."""
    # The executor started us in our own process group: cancelling a job kills the group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        app = app_of()
        artifacts = open_storage(config["artifact_storage"], Path(config["artifacts"]), config["s3_endpoint_url"])
        recorder = AttemptRecorder(channel.recorded)
        capture = FdCapture(recorder.lines)
        capture.start()
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    except BaseException as exc:
        channel.send(
            ("broken", note("workers.cannot_load", app=repr(config["app"]), error=f"{type(exc).__name__}: {exc}"))
        )
        return
    outcomes = Path(config["spool"])
    spool.hold_workers_lock(outcomes)  # until we die: a restarted server waits for us
    slot = spool.Slot(outcomes)
    life = _Life()
    signal.signal(ORPHANED, _orphaned(life))
    threading.Thread(target=_watch, args=(recorder, config["parent"], life), daemon=True).start()
    uploads = Path(config["uploads"])
    channel.send(("ready", os.getpid(), slot.name))
    while True:
        life.busy = False
        if life.gate.closed:
            _die()  # the server is gone and the last job's outcome is recorded
        try:
            record: JobRecord | None = channel.recv()
        except EOFError:
            return
        if record is None:
            return
        life.busy = True
        task = app.tasks.get(record.task) if record.task in app.tasks else None
        try:
            changes = attempt.run(recorder, capture, task, record, artifacts, lambda: nullcontext(uploads), life.gate)
        except Abandon:
            _die()  # the server died before the function started: the next one runs the job
        slot.write(record.id, record.attempts, changes)  # durable before it is reported
        try:
            channel.send(("done", record.id, changes))
        except OSError:
            _die()  # the server is gone; the next one saves the outcome from the spool
