"""A pool of Celery workers on this machine: `mieruka worker` processes started by the server."""

from __future__ import annotations

import subprocess
import sys
import threading

from ..settings import child_environment
from .base import PoolSpec


class LocalWorkers:
    """Starts `processes` × `mieruka worker APP --queues <the pool's> --concurrency N` as child
    processes of the server that started the pool; stopping them is a warm shutdown (running jobs
    finish first, up to `stop_timeout` seconds, then they are killed). Each one starts its Celery
    worker again if it dies (executors/celery_supervisor.py), and rides out a broker outage."""

    stops_with_server = True  # its workers are child processes of the server that started them

    def __init__(self, concurrency: int = 1, processes: int = 1, stop_timeout: float = 60.0) -> None:
        self.concurrency = concurrency
        self.processes = processes
        self.stop_timeout = stop_timeout
        self._running: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._lock = threading.Lock()

    def start(self, pool: PoolSpec) -> None:
        argv = [
            sys.executable,
            "-m",
            "mieruka.cli",
            "worker",
            pool.app_ref,
            "--queues",
            ",".join(pool.queues),
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "warning",
        ]
        env = child_environment(pool.env)
        started = [subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL) for _ in range(self.processes)]
        with self._lock:
            self._running.setdefault(pool.name, []).extend(started)

    def stop(self, pool: PoolSpec) -> None:
        with self._lock:
            processes = self._running.pop(pool.name, [])
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def pids(self, pool: str) -> list[int]:
        with self._lock:
            return [p.pid for p in self._running.get(pool, []) if p.poll() is None]

    def __repr__(self) -> str:
        return f"LocalWorkers(concurrency={self.concurrency}, processes={self.processes})"
