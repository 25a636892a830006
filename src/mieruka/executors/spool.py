"""Outcomes on disk: a local worker writes its job's end here before it reports it, so a server
killed (kill -9) before saving it finds it at its next start instead of taking the job for
interrupted (and running it again).

One folder per run of a LocalExecutor, under the server's home (`outcomes/<run>/`):

- `<pid>.outcome` (`<pid>.<n>.outcome` when a dead worker's file still holds the name) the end of
  the last attempt that the worker ran: the changes that end it (pickled, as the pipe carries
  them) behind a header naming the job, the attempt, the length and a CRC-32, written over the one
  before in a single pwrite on a file the worker keeps open. A worker is given its next job only
  once the server has saved the last one's end, so the end it writes over is saved already; an end
  cut short (the worker killed while writing) fails its CRC and counts as never written, as it was
  never reported either. (A new file, a rename and a removal for every job doubled a worker's CPU
  time per no-op job.) A dead worker's file is read once (its end may not have been reported) and
  removed once that end is saved;
- `server.lock` locked (flock, exclusive) by the server while it runs: a folder whose lock is free
  belongs to a server that is gone;
- `workers.lock` locked (flock, shared) by each of its workers while it lives: a server that starts
  waits until the workers of a dead server are gone (they kill their job, or write its end) before
  it reads their outcomes.

Ends already saved are read again after a kill: saving one twice changes nothing (a job's end is
a transition from running, in the attempt named). Written without fsync: like the SQLite store
(synchronous=NORMAL), the spool outlives a killed process, not a power cut. The worker side needs
only the standard library.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import pickle
import re
import struct
import time
import uuid
import zlib
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


SHRINK_OVER = 1 << 20  # bytes a worker's file may hold past its last end before it is cut to it
_HEADER = struct.Struct("!4sqIII")  # magic, job id, attempt, payload length, CRC-32 of the payload
_MAGIC = b"MKO1"


class Slot:
    """The worker's side: its outcome file, new and open for the worker's life. `name` tells the
    server which it is (a dead worker's file may still be there under a pid used again)."""

    def __init__(self, folder: Path) -> None:
        for n in itertools.count():
            self.name = f"{os.getpid()}{f'.{n}' if n else ''}{SUFFIX}"
            try:
                self._fd = os.open(folder / self.name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                break
            except FileExistsError:
                continue
        self._extent = 0

    def write(self, job_id: int, attempt: int, changes: Sequence[Any]) -> None:
        """The attempt's end, over the last one (saved by now)."""
        payload = pickle.dumps(list(changes), protocol=pickle.HIGHEST_PROTOCOL)
        header = _HEADER.pack(_MAGIC, job_id, attempt, len(payload), zlib.crc32(payload))
        data = header + payload
        written = os.pwrite(self._fd, data, 0)
        while written < len(data):  # a write cut short by a signal: the rest, where it stopped
            written += os.pwrite(self._fd, data[written:], written)
        if self._extent > len(data) + SHRINK_OVER:
            os.ftruncate(self._fd, len(data))  # a large result's end is not kept on disk for the worker's life
            self._extent = len(data)
        else:
            self._extent = max(self._extent, len(data))


_SLOT_NAME = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,6})?" + re.escape(SUFFIX))


def slot_name(said: object) -> str | None:
    """The name of a worker's file as the worker said it, if it is one a Slot makes: the server
    reads and removes the file it names, so nothing else (no path) is taken."""
    return said if isinstance(said, str) and _SLOT_NAME.fullmatch(said) else None


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
        self._saved: dict[str, tuple[int, int]] = {}  # a worker's file -> its last end the store has
        self._retired: set[str] = set()  # files of dead workers, to go once their end is saved

    def open(self) -> None:
        """Make this run's folder and hold its server lock."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._server_lock = _lock(self.folder / "server.lock", fcntl.LOCK_EX)

    def close(self) -> None:
        """A clean stop: this run's folder goes, unless it holds ends still to save (the next start
        saves them)."""
        if self._server_lock is not None:
            if not any(self._unsaved(path) for path in self.folder.glob(f"*{SUFFIX}")):
                _remove_folder(self.folder)
            os.close(self._server_lock)
            self._server_lock = None

    def _unsaved(self, path: Path) -> bool:
        found = read_end(path, quiet=True)
        return found is not None and self._saved.get(path.name) != (found.job_id, found.attempt)

    def saved(self, slot: str, job_id: int, attempt: int) -> Callable[[], None]:
        """What notes that the store has the end a worker reported from its file `slot` (no disk
        work: the next end the worker writes goes over it)."""

        def note() -> None:
            self._saved[slot] = (job_id, attempt)
            if slot in self._retired:
                self._remove(slot)

        return note

    def find(self, slot: str, job_id: int, attempt: int) -> Spooled | None:
        """The end of this attempt, if the worker of `slot` wrote it (it died before reporting it)."""
        found = read_end(self.folder / slot, quiet=True)
        if found is None or (found.job_id, found.attempt) != (job_id, attempt):
            return None
        return found

    def retire(self, slot: str) -> None:
        """A worker died: its file goes, now if the end it holds is saved (or none), else once it is."""
        found = read_end(self.folder / slot, quiet=True)
        if found is None or self._saved.get(slot) == (found.job_id, found.attempt):
            self._remove(slot)
        else:
            self._retired.add(slot)

    def _remove(self, slot: str) -> None:
        self._saved.pop(slot, None)
        self._retired.discard(slot)
        (self.folder / slot).unlink(missing_ok=True)

    def leftovers(self, patience: float = 15.0) -> list[Spooled]:
        """The ends written by workers of earlier runs whose server is gone, once those workers are
        gone too (waiting up to `patience` seconds for them); saved ones among them too, which
        change nothing when saved again. Empty folders are removed."""
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
                outcomes = []
                for path in sorted(folder.glob(f"*{SUFFIX}")):
                    spooled = read_end(path)
                    if spooled is None:
                        path.unlink(missing_ok=True)  # empty, or cut short: nothing was reported
                    else:
                        outcomes.append(spooled)
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


def read_end(path: Path, quiet: bool = False) -> Spooled | None:
    """The end in a worker's file; None when there is none, or it was cut short. A file named
    `<job>-<attempt>.outcome` is one an earlier version wrote: the changes alone, pickled."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    name = path.name.removesuffix(SUFFIX)
    try:
        if "-" in name:
            job, _, attempt = name.partition("-")
            return Spooled(int(job), int(attempt), list(pickle.loads(data)), path)
        if len(data) < _HEADER.size:
            return None  # a worker that has not ended a job yet
        magic, job_id, attempt, size, crc = _HEADER.unpack_from(data)
        payload = data[_HEADER.size : _HEADER.size + size]
        if magic != _MAGIC or len(payload) != size or zlib.crc32(payload) != crc:
            if not quiet:
                log.warning("an outcome in %s was cut short (its worker was killed while writing it): dropped", path)
            return None
        return Spooled(job_id, attempt, list(pickle.loads(payload)), path)
    except Exception:
        log.warning("dropped an unreadable outcome %s", path, exc_info=True)
        return None


def _remove_folder(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
