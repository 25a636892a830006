"""The zygote, as the server sees it (the process itself is zygote_process.py): one process that
imports mieruka and the app once, then forks the local executor's workers on request, so that they
share its memory copy-on-write and start in milliseconds.

`mieruka run` forks it from the server itself right after loading the app, before the server opens
a database, starts a thread or an event loop (zygote_process.fork_early): it then holds the app
without importing it again, and shares the server's memory copy-on-write. Otherwise (the app
started threads, is embedded with `app.start()`, or serves itself with `app.serve()`) the server
starts it as a fresh interpreter,
which holds no thread, lock, database connection or event loop of the server's. Either way the
server talks to it over a SOCK_SEQPACKET socket pair: a fork request carries the
worker's end of its pipe to the engine (SCM_RIGHTS); the zygote answers with the child's pid and
reports each child's exit status, since only it can wait for them. It refuses to fork (and the
executor falls back to a fresh interpreter per worker) if importing the app started threads.

If the server dies, the zygote sees its socket close and exits at once: its workers then find
themselves orphaned and end as local_worker.py says. Where fork is unsafe or missing (anything but
Linux), `available()` is false and workers are started as fresh interpreters.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PACKET = 1 << 16  # the largest control message


def available() -> bool:
    """Whether workers can be forked here: Linux (macOS's system libraries are not fork-safe)."""
    return sys.platform == "linux" and hasattr(os, "fork") and hasattr(socket, "SOCK_SEQPACKET")


class ForkedProcess:
    """A worker forked by the zygote, as the executor sees it: the part of `subprocess.Popen` it uses,
    and a file descriptor that becomes readable when the worker has exited."""

    def __init__(self) -> None:
        self.pid: int | None = None  # once the zygote has forked it
        self.returncode: int | None = None
        self._exited = threading.Event()
        self.sentinel, self._sentinel_w = os.pipe()

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
        return self.returncode

    def exited(self, code: int | None) -> None:
        if not self._exited.is_set():
            self.returncode = code
            self._exited.set()
            os.close(self._sentinel_w)  # end of file: readable


class ForkedChild:
    """A child this process forked itself (the early zygote): the part of `subprocess.Popen` the
    Zygote uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:  # reaped already
                self.returncode = -1
                break
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            elif deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"zygote {self.pid}", timeout or 0.0)
            else:
                time.sleep(0.01)
        return self.returncode

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class EarlyZygote:
    """A zygote started before the executor that will use it, loading the app (or holding it: forked
    from the server), then waiting for the executor's configuration on `control`."""

    process: subprocess.Popen[bytes] | ForkedChild
    control: socket.socket
    app_ref: str

    def discard(self) -> None:
        self.control.close()  # it sees the end of its socket, and exits
        self.process.kill()
        self.process.wait()


_early: EarlyZygote | None = None


def keep_early(zygote: EarlyZygote) -> None:
    """Hold `zygote` for the local executor that starts next in this process."""
    global _early
    if _early is not None:
        _early.discard()
    _early = zygote


def launch_early(app_ref: str) -> None:
    """Start a zygote now, as a fresh interpreter importing `app_ref`, for the local executor this
    process starts next: its import then overlaps the rest of the start-up (an embedded
    `app.start()`). Nothing is done if one is waiting already (forked from the server)."""
    if _early is None:
        keep_early(_launch(app_ref))


def discard_early() -> None:
    """The executor will not start: end the zygote started for it, if any."""
    global _early
    early, _early = _early, None
    if early is not None:
        early.discard()


def _launch(app_ref: str) -> EarlyZygote:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    config = {"app": app_ref, "fd": theirs.fileno(), "sys_path": sys.path}
    process = subprocess.Popen(
        # -c, not -m: the executors package imports this module before -m would run it
        [sys.executable, "-c", "from mieruka.executors.fresh import zygote; zygote()", json.dumps(config)],
        pass_fds=(theirs.fileno(),),
        process_group=0,  # not in the terminal's group: Ctrl-C is for the server
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    return EarlyZygote(process, ours, app_ref)


def _take_early(app_ref: str) -> EarlyZygote:
    """The zygote started early for this app, else one started now."""
    global _early
    early, _early = _early, None
    if early is not None and early.app_ref != app_ref:
        early.discard()
        early = None
    return early if early is not None else _launch(app_ref)


class Zygote:
    """The server's side: starts the zygote, asks it for workers, hears how they end."""

    def __init__(self, config: dict[str, Any], refused: Callable[[str, bool], None]) -> None:
        self.config = config
        self._refused = refused  # (why, whether a fresh interpreter per worker would do better)
        self._lock = threading.Lock()
        self._pending: deque[ForkedProcess] = deque()
        self._running: dict[int, ForkedProcess] = {}
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | ForkedChild | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        early = _take_early(self.config["app"])
        ours = early.control
        self._process = early.process
        ours.send(pickle.dumps(("config", self.config)))
        self._control = ours
        self._reader = threading.Thread(target=self._read, args=(ours,), name="mieruka-zygote", daemon=True)
        self._reader.start()

    def fork(self, worker_end: socket.socket) -> ForkedProcess:
        """A new worker serving the engine on `worker_end`; it is forked once the app is loaded."""
        process = ForkedProcess()
        with self._lock:
            control = self._control
            if control is None or self._stopping:
                process.exited(None)
                return process
            self._pending.append(process)
            try:
                socket.send_fds(control, [pickle.dumps(("fork",))], [worker_end.fileno()])
            except OSError:
                self._pending.remove(process)
                process.exited(None)
        return process

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the zygote to fork no more and to exit once its workers have; then wait for that."""
        with self._lock:
            self._stopping = True
            control = self._control
        if control is not None:
            try:
                control.send(pickle.dumps(("stop",)))
            except OSError:
                pass
        if self._reader is not None:
            self._reader.join(timeout)
        if self._process is not None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout)  # it closes the socket

    def _read(self, control: socket.socket) -> None:
        while True:
            try:
                data = control.recv(PACKET)
            except OSError:  # ECONNRESET: it died with requests unread
                data = b""
            if not data:
                break
            message = pickle.loads(data)
            kind = message[0]
            with self._lock:
                if kind == "forked":
                    process = self._pending.popleft()
                    process.pid = message[1]
                    self._running[message[1]] = process
                elif kind == "exited":
                    found = self._running.pop(message[1], None)
                    if found is not None:
                        found.exited(message[2])
            if kind in ("broken", "unsafe"):
                self._refused(message[1], kind == "unsafe")
                break  # closing our end tells it to exit
        with self._lock:  # the zygote is gone: so are the workers it would have forked
            self._control = None
            control.close()
            lost = list(self._pending) + list(self._running.values())
            self._pending.clear()
            self._running.clear()
        for process in lost:
            process.exited(None)
        if self._process is not None:
            try:
                self._process.wait(5)  # it closed its end: it is exiting
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
