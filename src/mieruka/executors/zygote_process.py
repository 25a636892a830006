"""The zygote process (zygote.py is the server's side): holds mieruka and the app, loaded once,
frozen for the collector, and forks a local worker (local_worker.py) for each request of the
server, reporting each child's pid and exit status. It exits at once when the server's socket
closes (the server died), or after its workers when the server asks it to stop.

It is forked from the process that loaded the app (`fork_early`: the server of `mieruka run`, or a
script at `app.start()`), or, where that cannot be, started as a fresh interpreter that imports the
app itself (`main`, from fresh.py)."""

from __future__ import annotations

import gc
import json
import os
import pickle
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from .. import worker_mode
from ..notes import note
from . import local_worker
from .zygote import PACKET, EarlyZygote, ForkedChild, available, keep_early

if TYPE_CHECKING:
    from ..core.task import TaskRegistry
    from ..settings import Settings


class Forkable(Protocol):
    """The app in this process, as the zygote forked from it needs it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def holds_connections(self) -> bool:
        """Whether its runtime has opened the database or started the engine (a fork would copy them)."""

    @property
    def tasks(self) -> TaskRegistry: ...

    def app_ref(self) -> str:
        """How worker processes import the app."""


def _forked(control: socket.socket, worker_fd: int, config: dict[str, Any], app: Any) -> NoReturn:
    """In the child: drop the zygote's part, then be a worker (never returns into the zygote)."""

    def be_worker() -> None:
        control.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setpgid(0, 0)  # cancelling a job kills this group
        _reseed()
        os.set_inheritable(worker_fd, False)
        worker_config = dict(config, parent=os.getppid())
        local_worker.worker_main(local_worker.Channel(socket.socket(fileno=worker_fd)), worker_config, lambda: app)

    _then_exit(be_worker)


def _then_exit(body: Callable[[], None]) -> NoReturn:
    """Run `body` in a forked child, then end the process: a child never returns into the code of
    the process it was forked from, nor runs that process's exit handlers."""
    code = 0
    try:
        body()
    except BaseException:
        code = 1
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def _reseed() -> None:
    """`random` reseeds itself after a fork; numpy's global generator (if the app imported it) does not."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _send(control: socket.socket, *message: Any) -> None:
    control.send(pickle.dumps(message))


def _serve(control: socket.socket, config: dict[str, Any], app: Any) -> None:
    if any(task.is_async for task in app.tasks):
        import asyncio  # noqa: F401  # once, shared by the workers that run the app's coroutines

        gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so that it wakes the selector
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    children: set[int] = set()
    stopping = False
    while not (stopping and not children):
        for key, _ in selector.select():
            if key.data == "child":
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(control, PACKET, 1)
            except OSError:
                data, fds = b"", []
            if not data:
                return  # the server is gone: our workers see it and end
            message = pickle.loads(data)
            if message[0] == "stop":
                stopping = True  # the server sends no fork request after this
            elif message[0] == "fork" and fds:
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    _forked(control, fds[0], config, app)
                os.close(fds[0])
                try:
                    os.setpgid(pid, pid)  # before the server can kill its group
                except OSError:
                    pass  # it did so itself already, or is gone
                children.add(pid)
                _send(control, "forked", pid)
        while children:  # reap every child that has exited, and say how
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            try:
                _send(control, "exited", pid, os.waitstatus_to_exitcode(status))
            except OSError:
                pass


def _refuse(control: socket.socket, *message: Any) -> None:
    """Say why no worker will be forked, then wait for the server to close its end: exiting with its
    requests unread would reset the socket before it reads why."""
    _send(control, *message)
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, PACKET, 1)
        except OSError:
            return
        for fd in fds:
            os.close(fd)
        if not data:
            return


def fork_early(app: Forkable, inherited: Iterable[int] = ()) -> None:
    """Fork the zygote now, from this process (the server, or a script at `app.start()`) holding the
    app it has loaded, so that the zygote and its workers share its memory copy-on-write and import
    nothing again; the local executor adopts it when it starts. Only while the process holds no
    thread, database connection, event loop or open file besides those it was started with
    (`inherited`), which a fork would share or copy half-made (an app that connects at import keeps
    its connection to itself); otherwise the executor starts the zygote as a fresh interpreter."""
    settings = app.settings
    if settings.executor != "local" or settings.worker_start != "fork" or not available():
        return
    if app.holds_connections or threading.active_count() > 1 or set(open_files()) - set(inherited):
        return
    try:
        app_ref = app.app_ref()
    except Exception:
        return  # the executor says why, when it starts
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the child would write the server's buffered lines again
    gc.freeze()  # the collectors of both leave what they share alone: it stays shared
    pid = os.fork()
    if pid == 0:
        ours.close()
        _early(theirs, app)
    theirs.close()
    keep_early(EarlyZygote(ForkedChild(pid), ours, app_ref))


def passed_on() -> list[int]:
    """The files this process holds that its parent passed on (a supervisor's, a test runner's, an
    editor's descriptors), as far as can be told once it runs: inheritable ones. Python opens every
    file, socket and pipe not inheritable (PEP 446), and so do SQLite and libpq for their databases;
    a descriptor that crossed the exec that started us was inheritable. A script that opened a file
    or a connection before `app.start()` still holds one that is not, and gets a fresh zygote."""
    found = []
    for fd in open_files():
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            continue
    return found


def open_files() -> list[int]:
    """The file descriptors this process holds besides its standard streams (files, sockets, pipes)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.fstat(fd)
            except OSError:
                continue  # the listing's own, closed by now
            found.append(fd)
    return found


def _early(control: socket.socket, app: Forkable) -> NoReturn:
    """In the early-forked zygote: wait for the executor's configuration, then serve (never returns)."""

    def be_zygote() -> None:
        gc.enable()  # paused in the server while it starts (cli._dispatch); what we share is frozen
        os.setpgid(0, 0)  # not in the terminal's group: Ctrl-C is for the server
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        worker_mode.IN_WORKER = True
        try:
            data = control.recv(PACKET)
        except OSError:
            data = b""
        if data:  # else the server ended before starting its executor
            config = pickle.loads(data)[1]
            _send(control, "loaded", os.getpid())
            _serve(control, config, app)

    _then_exit(be_zygote)


def main(load: Callable[[str], Any]) -> None:
    """The zygote as a fresh interpreter (fresh.py): import the app by its reference with `load`."""
    config = json.loads(sys.argv[-1])
    sys.path[:] = config.pop("sys_path")
    control = socket.socket(fileno=config.pop("fd"))
    os.set_inheritable(control.fileno(), False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        app = load(config["app"])
    except BaseException as exc:  # any failure to import the app is reported, not raised
        _refuse(
            control,
            "broken",
            note("workers.cannot_load", app=repr(config["app"]), error=f"{type(exc).__name__}: {exc}"),
        )
        return
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        # A thread is not copied by fork, but the locks it held are: the children could hang.
        _refuse(control, "unsafe", f"importing the app started threads ({', '.join(threads)})")
        return
    try:
        data = control.recv(PACKET)  # the executor's configuration, once it starts
    except OSError:
        data = b""
    if not data:
        return  # it never started
    config = pickle.loads(data)[1]
    gc.collect()
    gc.freeze()  # the collector no longer touches what we share with the children: it stays shared
    _send(control, "loaded", os.getpid())
    _serve(control, config, app)
