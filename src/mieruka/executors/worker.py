"""The worker process of the local executor: loads the app once, then runs the jobs it is sent.
What a job records (progress, logs, artifacts, outcome) goes back to the engine over the pipe."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..artifacts import open_storage
from ..capture import FdCapture
from ..core.events import Event
from ..core.job import JobRecord
from ..recorder import AttemptRecorder
from ..runner import JobSpec, Outcome, run_job
from ..store.base import Change
from .pipe import MessagePipe


class Channel(MessagePipe):
    """The worker's end of its pipe to the engine; several threads send on it."""

    def recorded(self, changes: list[Change], events: list[Event]) -> None:
        self.send(("recorded", changes, events))


def _watch(recorder: AttemptRecorder, parent: int) -> None:
    """Flush rate-limited progress; if the server died (kill -9), take our job down with us."""
    while True:
        time.sleep(0.1 if recorder.busy else 0.5)  # an idle worker wakes rarely (small machines)
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        recorder.tick()


def worker_main(channel: Channel, config: dict[str, Any]) -> None:
    # The executor started us in our own process group: cancelling a job kills the group.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        from .. import app as app_module
        from ..loader import load_app

        app_module.IN_WORKER = True
        app = load_app(config["app"])
        artifacts = open_storage(config["artifact_storage"], Path(config["artifacts"]), config["s3_endpoint_url"])
        recorder = AttemptRecorder(channel.recorded)
        capture = FdCapture(recorder.lines)
        capture.start()
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", force=True)
    except BaseException as exc:  # noqa: BLE001
        channel.send(("broken", f"cannot load app {config['app']!r}: {type(exc).__name__}: {exc}"))
        return
    threading.Thread(target=_watch, args=(recorder, config["parent"]), daemon=True).start()
    uploads = Path(config["uploads"])
    channel.send(("ready", os.getpid()))
    while True:
        try:
            record: JobRecord | None = channel.recv()
        except EOFError:
            return
        if record is None:
            return
        recorder.begin(record)
        spec = JobSpec(record.id, record.task, record.params, record.attempts, record.max_attempts)
        task = app.tasks.get(spec.task) if spec.task in app.tasks else None
        capture.job_id = spec.id
        try:
            if task is not None:
                outcome = run_job(task, spec, recorder, artifacts, uploads)
            else:
                outcome = Outcome(ok=False, error=f"the worker's app has no task named {spec.task!r}")
        finally:
            capture.drain()
            capture.job_id = None
        channel.send(("done", spec.id, recorder.finish(task, outcome)))


def main() -> None:
    config = json.loads(sys.argv[1])
    sys.path[:] = config["sys_path"]
    os.set_inheritable(config["fd"], False)  # jobs' child processes must not hold our pipe
    worker_main(Channel(socket.socket(fileno=config["fd"])), config)


if __name__ == "__main__":
    main()
