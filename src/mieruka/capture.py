"""Capture a worker process's output at the file-descriptor level, so print(), logging and the
output of child processes (subprocess, os.system) all land in the job log, line by line."""

from __future__ import annotations

import fcntl
import os
import select
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime

from .core.clock import utcnow

Line = tuple[datetime, str, str]
MAX_LINE = 16_384
FLUSH_SECONDS = 0.05
FLUSH_LINES = 1000


class FdCapture:
    """Redirects fds 1 and 2 into pipes; `on_lines(job_id, lines)` receives what was written.

    A reader thread streams lines while a job runs; `drain()` at the end of a job collects
    everything written so far, so no line of one job is ever attributed to the next."""

    def __init__(self, on_lines: Callable[[int, list[Line]], None]) -> None:
        self._on_lines = on_lines
        self._lock = threading.Lock()
        self._pending: list[Line] = []
        self._partial: dict[int, bytes] = {}
        self._streams: dict[int, str] = {}
        self._last_flush = time.monotonic()
        self.job_id: int | None = None
        self.original_stderr = os.dup(2)

    def start(self) -> None:
        for fd, stream in ((1, "stdout"), (2, "stderr")):
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            flags = fcntl.fcntl(read_end, fcntl.F_GETFL)
            fcntl.fcntl(read_end, fcntl.F_SETFL, flags | os.O_NONBLOCK)
            self._streams[read_end] = stream
            self._partial[read_end] = b""
        # Fresh text streams: the old ones may believe fd 1 is a seekable file.
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        threading.Thread(target=self._run, name="mieruka-capture", daemon=True).start()

    def _run(self) -> None:
        fds = list(self._streams)
        while True:
            timeout = FLUSH_SECONDS if self._pending else 1.0
            ready, _, _ = select.select(fds, [], [], timeout)
            with self._lock:
                for fd in ready:
                    self._read_available(fd)
                if self._pending and (
                    len(self._pending) >= FLUSH_LINES or time.monotonic() - self._last_flush >= FLUSH_SECONDS
                ):
                    self._flush()

    def _read_available(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            data = self._partial[fd] + chunk
            *lines, rest = data.split(b"\n")
            now = utcnow()
            stream = self._streams[fd]
            for raw in lines:
                self._add(now, stream, raw)
            while len(rest) > MAX_LINE:
                self._add(now, stream, rest[:MAX_LINE])
                rest = rest[MAX_LINE:]
            self._partial[fd] = rest
            if len(chunk) < 65536:
                return

    def _add(self, now: datetime, stream: str, raw: bytes) -> None:
        self._pending.append((now, stream, raw.rstrip(b"\r").decode("utf-8", "replace")))

    def _flush(self) -> None:
        self._last_flush = time.monotonic()
        if self.job_id is None:
            # Output between jobs (imports, daemons left behind) goes to the worker's own stderr.
            text = "".join(f"{line[2]}\n" for line in self._pending)
            os.write(self.original_stderr, text.encode("utf-8", "replace"))
        else:
            self._on_lines(self.job_id, self._pending)
        self._pending = []

    def drain(self) -> None:
        """Hand over every line written so far, including an unfinished last line."""
        sys.stdout.flush()
        sys.stderr.flush()
        with self._lock:
            now = utcnow()
            for fd in self._streams:
                self._read_available(fd)
                if self._partial[fd]:
                    self._add(now, self._streams[fd], self._partial[fd])
                    self._partial[fd] = b""
            if self._pending:
                self._flush()
