"""Run one job: bind parameters, inject the job handle, call the function, shape the outcome.

Independent of how the job reached this process: the local worker pool and the Celery executor
both call `run_job` with a `Reporter` that carries progress, logs and artifacts to the store.
"""

from __future__ import annotations

import json
import mimetypes
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Protocol

from pydantic_core import to_jsonable_python

from .artifacts.base import ArtifactStorage
from .artifacts.local import check_name
from .core.clock import utcnow
from .core.job import ArtifactInfo
from .core.params import File, FileRef
from .core.task import Task
from .notes import Note, note

MAX_RESULT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class JobSpec:
    """What a worker needs to run one attempt of a job."""

    id: int
    task: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int


@dataclass(frozen=True)
class Outcome:
    ok: bool
    result: Any = None
    error: str | None = None
    traceback: str | None = None


class Abandon(BaseException):
    """Raised instead of calling the task's function: its `Gate` closed first (the worker lost its
    server and leaves the job to the next one)."""


class Gate:
    """Closed by a worker that lost its server: a job whose function has not started never does."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        self.closed = False


def _call(func: Callable[..., Any], kwargs: dict[str, Any], run_async: Callable[[Any], Any] | None, gate: Gate) -> Any:
    # The task's function runs while this frame has a callee: a worker that lost its server looks
    # for one (executors/local_worker.py) to tell a running function, which it kills, from one that
    # returned, whose outcome it records. Nothing between the check and the call can run a signal
    # handler (CPython runs them at function starts, backward jumps and after calls).
    if gate.closed:
        raise Abandon
    if run_async is not None:
        return run_async(func(**kwargs))
    return func(**kwargs)


def _asyncio_run() -> Callable[[Any], Any]:
    import asyncio  # here: a worker that runs no coroutine never loads asyncio (with ssl, 16 ms of a start)

    return asyncio.run


CALL_CODE = _call.__code__


class Reporter(Protocol):
    def progress(self, job_id: int, fraction: float | None, message: str | None) -> None: ...

    def artifact(self, job_id: int, info: ArtifactInfo) -> None: ...


class JobContext:
    """The `mieruka.Job` a task function receives."""

    def __init__(
        self, spec: JobSpec, reporter: Reporter, artifacts: ArtifactStorage, upload_root: Path | None = None
    ) -> None:
        self.id = spec.id
        self.task = spec.task
        self.attempt = spec.attempt
        self.max_attempts = spec.max_attempts
        self.params = spec.params
        self._reporter = reporter
        self._artifacts = artifacts
        self.upload_root = upload_root  # pipeline steps open the job's uploads in their own processes

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        if fraction is not None:
            fraction = min(max(float(fraction), 0.0), 1.0)
        self._reporter.progress(self.id, fraction, None if message is None else str(message)[:1000])

    def log(self, message: str) -> None:
        # Through stdout, so the line keeps its place among print() output.
        print(message, flush=True)

    def artifact(self, name: str, data: bytes | str | PathLike[str], content_type: str | None = None) -> None:
        """Attach a file: bytes or text content, or a Path to copy."""
        check_name(name)
        payload: bytes | Path
        if isinstance(data, bytes):
            payload = data
        elif isinstance(data, str):
            payload = data.encode()
        else:
            payload = Path(data)
        size = self._artifacts.save(self.id, name, payload)
        kind = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self._reporter.artifact(self.id, ArtifactInfo(name=name, size=size, content_type=kind, created_at=utcnow()))

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.task} attempt {self.attempt}>"


def file_opener(upload_root: Path) -> Callable[[FileRef], File]:
    def open_file(ref: FileRef) -> File:
        path = upload_root / ref.upload_id / ref.filename
        return File(path=path, filename=ref.filename, size=ref.size, content_type=ref.content_type)

    return open_file


def run_job(
    task: Task,
    spec: JobSpec,
    reporter: Reporter,
    artifacts: ArtifactStorage,
    upload_root: Path,
    gate: Gate | None = None,
) -> Outcome:
    """Run the attempt; raises Abandon, without calling the function, if `gate` closed first."""
    context = JobContext(spec, reporter, artifacts, upload_root)
    try:
        kwargs = task.signature.bind(spec.params, file_opener(upload_root))
        if task.signature.job_param:
            kwargs[task.signature.job_param] = context
        value = _call(task.func, kwargs, _asyncio_run() if task.is_async else None, gate or Gate())
    except Abandon:
        raise
    except BaseException as exc:
        return Outcome(ok=False, error=_describe(exc), traceback=_traceback(exc))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return _result_outcome(value, context)


def _result_outcome(value: Any, context: JobContext) -> Outcome:
    try:
        result = to_jsonable_python(value)
        text = json.dumps(result)
    except Exception as exc:
        return Outcome(ok=False, error=note("error.result_not_json", error=str(exc)))
    if len(text) > MAX_RESULT_BYTES:
        context.artifact("result.json", text.encode(), "application/json")
        result = {
            "artifact": "result.json",
            "size": len(text),
            "note": "the result was too large to keep inline; download the artifact",
        }
    return Outcome(ok=True, result=result)


def _describe(exc: BaseException) -> str:
    if len(exc.args) == 1 and isinstance(exc.args[0], Note):  # mieruka's own (a pipeline's step failed)
        return note("error.raised", kind=type(exc).__name__, error=exc.args[0])
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _traceback(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    # Drop our own frames: the user's code is what matters.
    here = __file__
    tb = exc.__traceback__
    skip = 0
    for frame in frames:
        if frame.filename == here:
            skip += 1
        else:
            break
    for _ in range(skip):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
