"""Outcomes on disk: a local worker writes its job's end here before it reports it, so a server
killed (kill -9) before saving it finds it at its next start instead of taking the job for
interrupted (and running it again).

One folder per run of a LocalExecutor, under the server's home (`outcomes/<run>/`):

- `<job>-<attempt>.outcome` the changes that end an attempt (pickled, as the pipe carries them),
  written whole under a temporary name and renamed; removed once the server saved them;
- `server.lock` locked (flock, exclusive) by the server while it runs: a folder whose lock is free
  belongs to a server that is gone;
- `workers.lock` locked (flock, shared) by each of its workers while it lives: a server that starts
  waits until the workers of a dead server are gone (they kill their job, or write its end) before
  it reads their outcomes.

Written without fsync: like the SQLite store (synchronous=NORMAL), the spool outlives a killed
process, not a power cut. The worker side needs only the standard library.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SUFFIX = ".outcome"


def _lock(path: Path, mode: int) -> int | None:
    """An open descriptor of `path` holding a lock of `mode`, or None if another holds one."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def write(folder: Path, job_id: int, attempt: int, changes: Sequence[Any]) -> None:
    """The worker's side: the attempt's end, whole or not at all."""
    final = folder / f"{job_id}-{attempt}{SUFFIX}"
    temporary = folder / f".{job_id}-{attempt}.tmp"
    with open(temporary, "wb") as file:
        pickle.dump(list(changes), file, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(temporary, final)


def hold_workers_lock(folder: Path) -> int:
    """The worker's side: a shared lock held for the process's life (the kernel drops it at death)."""
    fd = os.open(folder / "workers.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


@dataclass(frozen=True)
class Spooled:
    """An attempt's end found in the spool; `path` is removed once it is saved."""

    job_id: int
    attempt: int
    changes: list[Any]
    path: Path


class OutcomeSpool:
    """The server's side: this run's folder, and the leftovers of runs whose server died."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folder = root / uuid.uuid4().hex[:12]
        self._server_lock: int | None = None

    def open(self) -> None:
        """Make this run's folder and hold its server lock."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._server_lock = _lock(self.folder / "server.lock", fcntl.LOCK_EX)

    def close(self) -> None:
        """A clean stop: this run's folder goes, unless it holds outcomes still to save (the next
        start saves them)."""
        if self._server_lock is not None:
            if not any(self.folder.glob(f"*{SUFFIX}")):
                _remove_folder(self.folder)
            os.close(self._server_lock)
            self._server_lock = None

    def saved(self, job_id: int, attempt: int) -> Callable[[], None]:
        """What removes the attempt's outcome once the store has it. A string path, not pathlib's:
        this runs for every job on the engine's thread."""
        path = f"{self.folder}{os.sep}{job_id}-{attempt}{SUFFIX}"

        def remove() -> None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

        return remove

    def find(self, job_id: int, attempt: int) -> Spooled | None:
        """The end of this attempt, if its worker wrote it (it may have died before reporting it)."""
        return _read(self.folder / f"{job_id}-{attempt}{SUFFIX}")

    def leftovers(self, patience: float = 15.0) -> list[Spooled]:
        """The outcomes of earlier runs whose server is gone, once their workers are gone too
        (waiting up to `patience` seconds for them). Empty folders are removed."""
        found: list[Spooled] = []
        if not self.root.is_dir():
            return found
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and p != self.folder):
            server = _lock(folder / "server.lock", fcntl.LOCK_EX)
            if server is None:
                continue  # its server runs
            try:
                if not _wait_for_workers(folder, patience):
                    log.warning(
                        "workers of a stopped server still hold %s after %gs; reading its outcomes anyway",
                        folder,
                        patience,
                    )
                outcomes = [s for s in map(_read, sorted(folder.glob(f"*{SUFFIX}"))) if s is not None]
                if outcomes:
                    found += outcomes
                else:
                    _remove_folder(folder)
            finally:
                os.close(server)
        return found


def _wait_for_workers(folder: Path, patience: float) -> bool:
    deadline = time.monotonic() + patience
    while True:
        fd = _lock(folder / "workers.lock", fcntl.LOCK_EX)
        if fd is not None:
            os.close(fd)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _read(path: Path) -> Spooled | None:
    try:
        with open(path, "rb") as file:
            changes = pickle.load(file)
    except FileNotFoundError:
        return None
    except Exception:
        log.warning("dropped an unreadable outcome %s", path, exc_info=True)
        path.unlink(missing_ok=True)
        return None
    job, _, attempt = path.name.removesuffix(SUFFIX).partition("-")
    return Spooled(int(job), int(attempt), list(changes), path)


def _remove_folder(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
