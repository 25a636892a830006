"""Process control: killing the processes that run a job, and saying how a process ended.

A job may start processes of its own (a shell step, a Snakemake rule, a subprocess in a task), so
stopping it means stopping a whole tree: the local executor's worker, a Celery pool process and a
pipeline step's program are all killed through `kill_tree`. How a process ended reads the same
wherever it is told (a failed job, a failed step, the worker supervisor's log).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

import psutil


def descendants(pid: int) -> list[psutil.Process]:
    """The processes `pid` started, and theirs (empty if it is gone)."""
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def kill_tree(pid: int | None, found: Sequence[psutil.Process] | None = None) -> None:
    """SIGKILL `pid`'s descendants (`found` before, if its children may already have been
    orphaned), the process group it leads (if it leads one) and `pid` itself. The descendants go
    first: `pid` may be the caller."""
    if pid is None:
        return
    for child in descendants(pid) if found is None else found:
        try:
            child.kill()
        except psutil.Error:
            pass
    for send in (os.killpg, os.kill):
        try:
            send(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def signal_name(signum: int) -> str:
    """"SIGKILL", or "signal 77" for a number that names no signal."""
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


def worker_lost(code: int | None) -> str:
    """Why a job ended with the process that ran it: the error recorded on the job."""
    if code is None:
        return "the worker process vanished"
    hint = " (out of memory?)" if code == -signal.SIGKILL else ""
    how = describe_exit(code)
    return f"the worker process {'was ' if code < 0 else ''}{how}{hint}"
