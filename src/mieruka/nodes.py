"""Nodes: the processes that run jobs (servers' engines, Celery workers), each beating in the store.

A node is up while its heartbeat is fresh and, when it runs on this machine, its process lives: a
node killed here is seen down at once, one on another machine after `engine_stale_after`. The
engine's recovery, the Celery worker list behind /healthz, the Workers page and /metrics all ask
this one module, so they agree.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime

from .store.base import EngineInfo

HOST = socket.gethostname()


def dead_here(host: str, pid: int) -> bool:
    """The process `pid` on this machine no longer runs a node (ended, a zombie, or the pid reused
    by another program). False for nodes on other machines: only their heartbeat can tell."""
    if host != HOST or pid == os.getpid():
        return False  # elsewhere; or ourselves (an earlier engine in this process was stopped)
    import psutil  # here: a server starts without it

    try:
        process = psutil.Process(pid)
        name = process.name().lower()  # ours run as python, or as our console scripts
        return process.status() == psutil.STATUS_ZOMBIE or not any(n in name for n in ("python", "mieruka", "celery"))
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False  # alive but not ours to inspect


def is_up(node: EngineInfo, now: datetime, stale_after: float) -> bool:
    """Its heartbeat is at most `stale_after` seconds old and its process is not known dead."""
    return (now - node.heartbeat_at).total_seconds() <= stale_after and not dead_here(node.host, node.pid)
