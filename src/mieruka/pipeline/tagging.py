"""Each Snakemake job's output tagged with its job id (in the workflow's child process), so the
runner hands every line to its rule's step even while several rules run at once, and whenever
Snakemake gets round to reporting the job's start.

Snakemake's local executor runs a job in a thread (`cached_or_run`): a shell rule through
`shell()`, which starts the command with `subprocess.Popen`, a `run:` block in a process of its
own (`spawn_job`). The thread is marked with its job; a command started by `shell()` from a
marked thread, and a spawned job, get pipes whose lines are forwarded with the job's tag, and
lines the thread prints itself are tagged through sys.stdout and sys.stderr. Output with no tag
is attributed by the sync marks of pipeline/rules.py instead. If Snakemake's executor changes
shape, nothing is wrapped."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

JOB_TAG = "\x1emieruka-job "
# After each job event the workflow writes this mark, with the event's number, on stdout and stderr
# (pipeline/rules.py orders the two pipes by it).
SYNC = "\x1emieruka-sync "
WRITE_LOCK = threading.Lock()  # one line at a time on fd 1 and fd 2, whoever writes
_current = threading.local()


def tagged(jobid: Any, line: bytes) -> bytes:
    return f"{JOB_TAG}{jobid} ".encode() + line.rstrip(b"\n") + b"\n"


def write_line(fd: int, data: bytes) -> None:
    with WRITE_LOCK:
        while data:
            data = data[os.write(fd, data) :]


def _forward(stream: IO[bytes], fd: int, jobid: Any) -> None:
    for raw in iter(stream.readline, b""):
        write_line(fd, tagged(jobid, raw))
    stream.close()


def _inherits(value: Any, fd: int) -> bool:
    if value is None:
        return True
    try:
        return bool(value.fileno() == fd)
    except (AttributeError, OSError, ValueError):
        return False


class _Subprocess:
    """What snakemake.shell calls `sp`: the subprocess module, whose Popen tags the output of a
    command a job's thread starts (when it would write straight to the workflow's stdout or stderr)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
        return popen(getattr(_current, "jobid", None), *args, **kwargs)


def popen(jobid: Any, *args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """subprocess.Popen, its inherited stdout and stderr tagged with `jobid` (if not None)."""
    if jobid is None:
        return subprocess.Popen(*args, **kwargs)
    pipes: list[tuple[int, int, int]] = []
    for key, fd in (("stdout", 1), ("stderr", 2)):
        if _inherits(kwargs.get(key), fd):
            read, write = os.pipe()
            kwargs[key] = write
            pipes.append((read, write, fd))
    try:
        proc = subprocess.Popen(*args, **kwargs)
    except BaseException:
        for read, write, _ in pipes:
            os.close(read)
            os.close(write)
        raise
    for read, write, fd in pipes:
        os.close(write)
        _start(_forward, os.fdopen(read, "rb"), fd, jobid)
    return proc


def _start(target: Callable[..., None], *args: Any) -> None:
    """A forwarding thread, joined before the job's thread reports the job done."""
    reader = threading.Thread(target=target, args=args, daemon=True)
    reader.start()
    readers: list[threading.Thread] = getattr(_current, "readers", [])
    readers.append(reader)
    _current.readers = readers


def _join_readers() -> None:
    for reader in getattr(_current, "readers", []):
        reader.join(timeout=5)  # a process the rule left running may hold the pipe open
    _current.readers = []


class _JobStream(io.TextIOBase):
    """sys.stdout or sys.stderr: lines written by a thread running a job carry the job's tag."""

    def __init__(self, real: Any, fd: int) -> None:
        self.real = real
        self.fd = fd
        self._partial: dict[int, str] = {}

    def write(self, text: str) -> int:
        jobid = getattr(_current, "jobid", None)
        if jobid is None:
            return int(self.real.write(text))
        key = threading.get_ident()
        *lines, rest = (self._partial.pop(key, "") + text).split("\n")
        if rest:
            self._partial[key] = rest
        if lines:
            self.real.flush()
            for line in lines:
                write_line(self.fd, tagged(jobid, line.encode("utf-8", "replace")))
        return len(text)

    def end_job(self) -> None:
        rest = self._partial.pop(threading.get_ident(), "")
        jobid = getattr(_current, "jobid", None)
        if rest and jobid is not None:
            write_line(self.fd, tagged(jobid, rest.encode("utf-8", "replace")))

    def flush(self) -> None:
        self.real.flush()

    def fileno(self) -> int:
        return int(self.real.fileno())

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self.real, "encoding", "utf-8"))


def install() -> bool:
    """Wrap Snakemake's local executor; False if it is not the shape this was written for."""
    try:
        from snakemake.exceptions import SpawnedJobError
        from snakemake.executors.local import Executor

        # The module, not the `shell` class the package exports under the same name.
        snakemake_shell = importlib.import_module("snakemake.shell")
    except ImportError:
        return False
    if (
        not all(callable(getattr(Executor, name, None)) for name in ("spawn_job", "cached_or_run", "format_job_exec"))
        or getattr(snakemake_shell, "sp", None) is not subprocess
    ):
        return False
    out, err = _JobStream(sys.stdout, 1), _JobStream(sys.stderr, 2)
    original_run: Callable[..., Any] = Executor.cached_or_run

    def cached_or_run(self: Any, job: Any, run_func: Any, *args: Any) -> Any:
        jobid = getattr(job, "jobid", None)

        # Snakemake may call run_func in another thread than this one (its event loop's): the
        # mark goes with the function.
        def marked(*call: Any) -> Any:
            _current.jobid = jobid
            try:
                return run_func(*call)
            finally:
                _join_readers()
                out.end_job()
                err.end_job()
                _current.jobid = None

        return original_run(self, job, marked, *args)

    def spawn_job(self: Any, job: Any) -> None:
        proc = popen(getattr(job, "jobid", None), self.format_job_exec(job), shell=True)
        code = proc.wait()
        _join_readers()
        if code:
            raise SpawnedJobError()

    Executor.cached_or_run = cached_or_run
    Executor.spawn_job = spawn_job
    setattr(snakemake_shell, "sp", _Subprocess())  # noqa: B010 - a module attribute mypy cannot see
    sys.stdout, sys.stderr = out, err
    return True
