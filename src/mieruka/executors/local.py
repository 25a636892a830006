"""The embedded executor: a pool of pre-started worker processes on this machine.

Jobs are handed to idle workers over socket pairs the moment they are claimed: no polling
interval. Workers are forked from a zygote that loaded the app once (zygote.py; `worker_start`
"fork", on Linux), or started as fresh interpreters ("spawn", and wherever fork is unsafe).
Cancelling or timing out a job kills its worker's whole process tree; a fresh worker
replaces it. A worker writes each outcome to the outcome spool (spool.py) before it reports it:
`recover` hands the engine those that a killed server never saved.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.job import JobRecord
from ..notes import note
from ..process import kill_tree, worker_lost
from .base import Died, Finished, Recorded, WorkerMessage
from .pipe import MessagePipe
from .spool import OutcomeSpool, Spooled, slot_name
from .zygote import ForkedProcess, Zygote, available

log = logging.getLogger(__name__)


@dataclass
class _Worker:
    name: str
    process: subprocess.Popen[bytes] | ForkedProcess
    pipe: MessagePipe
    sentinel: int  # readable once the process has exited (see _exit_sentinel)
    ready: bool = False
    job_id: int | None = None
    attempt: int = 0
    pid: int | None = None
    slot: str | None = None  # its file in the outcome spool (spool.Slot), named when it is ready
    jobs_done: int = 0
    killed_for: int | None = None

    @property
    def leader(self) -> int | None:
        """The worker's pid, which leads its process group (a forked one says it when ready)."""
        return self.pid or self.process.pid


class LocalExecutor:
    def __init__(
        self,
        app_ref: str,
        size: int,
        artifact_root: Path,
        upload_root: Path,
        artifact_storage: str = "",
        s3_endpoint_url: str = "",
        outcomes: Path | None = None,
        worker_start: str = "fork",
    ) -> None:
        self.app_ref = app_ref
        # Beside the uploads, in the server's home: the next run of this server finds them.
        self.spool = OutcomeSpool(outcomes or upload_root.parent / "outcomes")
        self.artifact_storage = artifact_storage
        self.s3_endpoint_url = s3_endpoint_url
        self.size = max(1, size)
        self.artifact_root = artifact_root
        self.upload_root = upload_root
        self._workers: dict[str, _Worker] = {}
        self._counter = 0
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopping = False
        self._early_deaths = 0
        self.broken: str | None = None
        self._zygote: Zygote | None = None
        if worker_start == "fork" and available():
            self._zygote = Zygote(self._worker_config(), self._refused)

    # -- pool management ---------------------------------------------------------------------
    def recover(self) -> list[Finished]:
        """The outcomes that workers of this server's earlier runs wrote and it never saved (it was
        killed); waits for those workers to end first. Call before `start`."""
        return [self._finished(found) for found in self.spool.leftovers()]

    @staticmethod
    def _finished(found: Spooled) -> Finished:
        return Finished(found.job_id, found.changes, lambda: found.path.unlink(missing_ok=True))

    def start(self) -> None:
        self.spool.open()
        if self._zygote is not None:
            self._zygote.start()
        with self._lock:
            for _ in range(self.size):
                self._spawn()

    def _worker_config(self) -> dict[str, Any]:
        return {
            "app": self.app_ref,
            "artifacts": str(self.artifact_root),
            "artifact_storage": self.artifact_storage,
            "s3_endpoint_url": self.s3_endpoint_url,
            "uploads": str(self.upload_root),
            "spool": str(self.spool.folder),
        }

    def _refused(self, why: str, unsafe: bool) -> None:
        """The zygote cannot fork workers: the app cannot load, or forking it is unsafe."""
        if unsafe:
            log.warning("mieruka: workers start as fresh interpreters: %s", why)
            with self._lock:
                self._zygote = None  # the workers it was asked for are buried, and spawned again
        else:
            self.broken = why
        self.wake()

    def _spawn(self) -> None:
        self._counter += 1
        name = f"w{self._counter}"
        ours, theirs = socket.socketpair()
        process: subprocess.Popen[bytes] | ForkedProcess
        if self._zygote is not None:
            process = self._zygote.fork(theirs)
            sentinel = process.sentinel
        else:
            # A fresh interpreter (not multiprocessing's spawn): no threads or locks copied from
            # the server, and the user's __main__ is never re-run.
            config = dict(self._worker_config(), fd=theirs.fileno(), sys_path=sys.path, parent=os.getpid())
            process = subprocess.Popen(
                [sys.executable, "-c", "from mieruka.executors.fresh import worker; worker()", json.dumps(config)],
                pass_fds=(theirs.fileno(),),
                process_group=0,
                stdin=subprocess.DEVNULL,
            )
            sentinel = _exit_sentinel(process)
        theirs.close()
        worker = _Worker(name=name, process=process, pipe=MessagePipe(ours), sentinel=sentinel)
        self._workers[name] = worker
        self._selector.register(worker.pipe.fileno(), selectors.EVENT_READ, ("pipe", worker))
        self._selector.register(worker.sentinel, selectors.EVENT_READ, ("exit", worker))

    def free_slots(self) -> int:
        with self._lock:
            return sum(1 for w in self._workers.values() if w.ready and w.job_id is None)

    def run(self, record: JobRecord) -> str:
        with self._lock:
            for worker in self._workers.values():
                if worker.ready and worker.job_id is None:
                    worker.job_id, worker.attempt = record.id, record.attempts
                    worker.pipe.send(record)
                    return worker.name
        raise RuntimeError("no free worker")  # the engine checks free_slots() first

    def kill(self, job_id: int) -> bool:
        with self._lock:
            for worker in self._workers.values():
                if worker.job_id == job_id and worker.killed_for is None:
                    worker.killed_for = job_id
                    kill_tree(worker.leader)
                    return True
        return False

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except (BlockingIOError, OSError):
            pass  # already awake, or stopped

    def workers(self) -> list[dict[str, object]]:
        with self._lock:
            return [
                {"name": w.name, "pid": w.pid, "ready": w.ready, "job_id": w.job_id, "jobs_done": w.jobs_done}
                for w in self._workers.values()
            ]

    # -- the engine's loop calls this ----------------------------------------------------------
    def wait(self, timeout: float | None) -> list[WorkerMessage]:
        messages: list[WorkerMessage] = []
        dead: dict[str, _Worker] = {}
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            kind, worker = key.data
            if kind == "exit":
                dead[worker.name] = worker
                continue
            received, closed = worker.pipe.read_available()
            for msg in received:
                self._read(worker, msg, messages)
            if closed:
                dead[worker.name] = worker
        for worker in dead.values():
            self._bury(worker, messages)
        return messages

    def _read(self, worker: _Worker, msg: tuple[Any, ...], out: list[WorkerMessage]) -> None:
        kind = msg[0]
        if kind == "recorded":
            out.append(Recorded(msg[1], msg[2]))
        elif kind == "done":
            with self._lock:
                attempt, worker.job_id = worker.attempt, None
                worker.jobs_done += 1
            saved = self.spool.saved(worker.slot, msg[1], attempt) if worker.slot is not None else None
            out.append(Finished(msg[1], msg[2], saved))
        elif kind == "ready":
            with self._lock:
                worker.ready, worker.pid, worker.slot = True, msg[1], slot_name(msg[2])
        elif kind == "broken":
            self.broken = msg[1]

    def _bury(self, worker: _Worker, out: list[WorkerMessage]) -> None:
        # Read what the worker said before dying: its last log lines or even its result.
        received, _ = worker.pipe.read_available()
        for msg in received:
            self._read(worker, msg, out)
        kill_tree(worker.leader)  # children it left behind
        try:
            exitcode: int | None = worker.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            exitcode = None
        with self._lock:
            self._forget(worker)
            found = None
            if worker.job_id is not None:
                # Killed (cancel, timeout, out of memory) right after it wrote the outcome: it stands.
                found = self.spool.find(worker.slot, worker.job_id, worker.attempt) if worker.slot is not None else None
                out.append(self._finished(found) if found is not None else Died(worker.job_id, worker_lost(exitcode)))
            if found is None and worker.slot is not None:
                self.spool.retire(worker.slot)
            # A worker that dies before it is ready will do so again: stop respawning after a few
            # (but not one that a zygote refusing to fork never started).
            refused = isinstance(worker.process, ForkedProcess) and self._zygote is None
            if not refused:
                self._early_deaths = 0 if worker.ready else self._early_deaths + 1
            if self._early_deaths >= 3 and self.broken is None:
                self.broken = note("workers.die_at_start", why=worker_lost(exitcode))
            if not self._stopping and self.broken is None:
                self._spawn()

    def _forget(self, worker: _Worker) -> None:
        self._workers.pop(worker.name, None)
        for fd in (worker.pipe.fileno(), worker.sentinel):
            try:
                self._selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        worker.pipe.close()
        os.close(worker.sentinel)

    def stop(self) -> list[int]:
        with self._lock:
            self._stopping = True
            workers = list(self._workers.values())
            interrupted = [w.job_id for w in workers if w.job_id is not None]
        for worker in workers:
            if worker.job_id is None:
                try:
                    worker.pipe.send(None)
                except OSError:
                    pass
            else:
                kill_tree(worker.leader)
        if self._zygote is not None:
            self._zygote.stop()
        for worker in workers:
            try:
                worker.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                kill_tree(worker.leader)
                worker.process.wait(timeout=3)
        with self._lock:
            for worker in workers:
                self._forget(worker)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.spool.close()
        return interrupted


def _exit_sentinel(process: subprocess.Popen[bytes]) -> int:
    """A file descriptor that becomes readable when `process` exits: a pidfd on Linux; elsewhere
    (macOS, the BSDs) a pipe written by a thread that waits for the process."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            return int(pidfd_open(process.pid))
        except OSError:
            pass  # a kernel older than 5.3, or a sandbox that forbids it
    readable, writable = os.pipe()

    def wait() -> None:
        process.wait()
        os.close(writable)  # end of file: readable

    threading.Thread(target=wait, name=f"mieruka-wait-{process.pid}", daemon=True).start()
    return readable
