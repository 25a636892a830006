"""Process control: killing the processes that run a job, and saying how a process ended.

A job may start processes of its own (a shell step, a Snakemake rule, a subprocess in a task), so
stopping it means stopping a whole tree: the local executor's worker, a Celery pool process and a
pipeline step's program are all killed through `kill_tree`. How a process ended reads the same
wherever it is told (a failed job, a failed step, the worker supervisor's log).
"""

from __future__ import annotations

import gc
import os
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .notes import Note, note

if TYPE_CHECKING:
    import psutil

# psutil is imported where a process is looked at: a server starts without it (issue 23).


def descendants(pid: int) -> list[psutil.Process]:
    """The processes `pid` started, and theirs (empty if it is gone)."""
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def kill_tree(pid: int | None, found: Sequence[psutil.Process] | None = None) -> None:
    """SIGKILL `pid`, the process group it leads (if it leads one) and its descendants (`found`
    before, if its children may already have been orphaned). `pid` goes first, with its group at
    once: a job's function must not see its child die and return a result before it is killed.
    When `pid` is the caller, its descendants go first (nothing runs after it is killed)."""
    if pid is None:
        return
    tree = descendants(pid) if found is None else list(found)
    if pid == os.getpid():
        _kill_all(tree)
    for send in (os.killpg, os.kill):
        try:
            send(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _kill_all(tree)  # those in process groups or sessions of their own


def _kill_all(processes: Sequence[psutil.Process]) -> None:
    import psutil

    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def signal_name(signum: int) -> str:
    """ "SIGKILL", or "signal 77" for a number that names no signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(code: int) -> str:
    """How a process ended, from its return code as `subprocess` gives it (minus a signal):
    "killed by SIGTERM", "exited with code 3"."""
    if code < 0:
        return f"killed by {signal_name(-code)}"
    return f"exited with code {code}"


def exit_note(code: int) -> Note:
    """describe_exit as a note, said in the reader's language where it is shown (a step's error)."""
    return note("error.killed", signal=signal_name(-code)) if code < 0 else note("error.exited", code=code)


def worker_lost(code: int | None) -> Note:
    """Why a job ended with the process that ran it: the error recorded on the job."""
    if code is None:
        return note("error.worker_vanished")
    if code == -signal.SIGKILL:
        return note("error.worker_killed_oom", signal=signal_name(-code))
    if code < 0:
        return note("error.worker_killed", signal=signal_name(-code))
    return note("error.worker_exited", code=code)


def settle() -> None:
    """Once a process has started: what the start made lives as long as it does, so no collection
    walks it again (nor the one at exit), and processes forked later share its pages untouched. The
    collector was paused for the start (cli._dispatch)."""
    gc.freeze()
    gc.enable()
