"""A job's output when it runs on a thread of the server (executors/threads.py): what its thread
prints (sys.stdout, sys.stderr) and logs goes to its log, line by line; other threads' output
goes where it went before.

File descriptors 1 and 2 belong to the whole process, so they cannot be taken per thread as a
local worker takes them (capture.py): sys.stdout and sys.stderr are replaced by streams that
route each write by the thread that makes it, and the root logger gets a handler that does the
same for log records. What a job's child process writes to an inherited descriptor goes to the
server's output. The routing streams are put back at each job's start if something replaced
them meanwhile (a test runner's capture does, between test phases).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TextIO, cast

from ..core.clock import utcnow

MAX_LINE = 16_384
FLUSH_LINES = 1000  # a job that prints fast hands over its lines in batches of this many
Line = tuple[datetime, str, str]


class Cancelled(BaseException):
    """Raised in the thread of a job that was cancelled or timed out, at its next progress or
    artifact call or output line (a BaseException: `except Exception` in the job lets it through)."""


class LineSink(Protocol):
    def lines(self, job_id: int, lines: list[Line], step: str | None = None) -> None: ...


class JobOutput:
    """One job's lines, handed to its recorder in batches (`flush`); `attempt.Capture` too."""

    def __init__(self, job_id: int, sink: LineSink, stopped: Callable[[], bool]) -> None:
        self.owner = job_id
        self.job_id: int | None = None  # set by attempt.run while the function runs
        self.stopped = stopped
        self._sink = sink
        self._lock = threading.Lock()
        self._partial = {"stdout": "", "stderr": ""}
        self._pending: list[Line] = []

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            *lines, rest = (self._partial[stream] + text).split("\n")
            now = utcnow()
            self._pending.extend((now, stream, line.rstrip("\r")[:MAX_LINE]) for line in lines)
            while len(rest) > MAX_LINE:
                self._pending.append((now, stream, rest[:MAX_LINE]))
                rest = rest[MAX_LINE:]
            self._partial[stream] = rest
            if len(self._pending) >= FLUSH_LINES:
                self._flush()

    def flush(self) -> None:
        """Hand over the whole lines written so far."""
        with self._lock:
            self._flush()

    def drain(self) -> None:
        """Hand over everything written, an unfinished last line too (the job has returned)."""
        with self._lock:
            now = utcnow()
            for stream, rest in self._partial.items():
                if rest:
                    self._pending.append((now, stream, rest))
                    self._partial[stream] = ""
            self._flush()

    def _flush(self) -> None:
        # Under the lock: one job's batches reach the recorder in the order of their lines.
        if self._pending:
            pending, self._pending = self._pending, []
            self._sink.lines(self.owner, pending)


_local = threading.local()  # .output: the JobOutput of the job this thread runs


def current() -> JobOutput | None:
    output: JobOutput | None = getattr(_local, "output", None)
    return output


class _Routed:
    """sys.stdout or sys.stderr: a job thread's writes go to its log, others' to `original`."""

    def __init__(self, name: str, original: TextIO | None) -> None:
        self.name = name
        self.original = original

    def write(self, text: str) -> int:
        output = current()
        if output is None:
            return self.original.write(text) if self.original is not None else len(text)
        if output.stopped():
            raise Cancelled(f"job {output.owner} was stopped")
        output.write(self.name, text)
        return len(text)

    def flush(self) -> None:
        if current() is None and self.original is not None:
            self.original.flush()

    def isatty(self) -> bool:
        return current() is None and self.original is not None and self.original.isatty()

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)  # fileno, encoding, buffer: the server's stream


class _JobLogs(logging.Handler):
    """Log records of a job's thread go to its log, as a local worker writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        output = current()
        if output is not None:
            output.write("stderr", self.format(record) + "\n")
        elif record.levelno >= logging.WARNING and logging.lastResort is not None and _handled_only_here(record):
            logging.lastResort.handle(record)  # as if this handler were not there


def _handled_only_here(record: logging.LogRecord) -> bool:
    logger: logging.Logger | None = logging.getLogger(record.name)
    while logger is not None:
        if any(h is not _HANDLER for h in logger.handlers):
            return False
        logger = logger.parent if logger.propagate else None
    return True


_HANDLER = _JobLogs()
_lock = threading.Lock()
_users = 0


def install() -> None:
    """Route the output of job threads (each executor that starts; `uninstall` when it stops)."""
    global _users
    with _lock:
        _users += 1
        if _users == 1:
            logging.getLogger().addHandler(_HANDLER)
        _route()


def uninstall() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        logging.getLogger().removeHandler(_HANDLER)
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _Routed):
                setattr(sys, name, stream.original)


def _route() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _Routed):
            setattr(sys, name, cast(TextIO, _Routed(name, stream)))


@contextmanager
def routed_to(output: JobOutput) -> Iterator[None]:
    """This thread's output goes to `output` meanwhile."""
    with _lock:
        if _users > 0:
            _route()
    _local.output = output
    try:
        yield
    finally:
        _local.output = None
