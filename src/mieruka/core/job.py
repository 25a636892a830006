"""The job record as stored and served, and the handle a running task function receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from os import PathLike
from typing import Any, Protocol

from ..notes import read, stored
from .status import JobStatus


@dataclass(frozen=True)
class ArtifactInfo:
    name: str
    size: int
    content_type: str
    created_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: int
    task: str
    status: JobStatus
    params: dict[str, Any]
    created_at: datetime
    owner: str | None = None
    priority: int = 0
    queue: str = "default"
    idempotency_key: str | None = None
    attempts: int = 0
    max_attempts: int = 1
    run_after: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: str | None = None
    traceback: str | None = None
    worker: str | None = None
    engine_id: str | None = None
    cancel_requested: bool = False
    log_lines: int = 0
    schedule: str | None = None
    artifacts: list[ArtifactInfo] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status.finished

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at
        if end is None:
            return None
        return (end - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration"] = self.duration
        del data["engine_id"]
        return data

    def to_json(self) -> dict[str, Any]:
        """Every field, JSON-ready (times as ISO 8601): how a record travels between processes.
        `from_json` turns it back into an equal record."""
        return {
            "id": self.id,
            "task": self.task,
            "status": self.status.value,
            "params": self.params,
            "created_at": _iso(self.created_at),
            "owner": self.owner,
            "priority": self.priority,
            "queue": self.queue,
            "idempotency_key": self.idempotency_key,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "run_after": _iso(self.run_after),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "progress": self.progress,
            "message": stored(self.message),
            "result": self.result,
            "error": stored(self.error),
            "traceback": self.traceback,
            "worker": self.worker,
            "engine_id": self.engine_id,
            "cancel_requested": self.cancel_requested,
            "log_lines": self.log_lines,
            "schedule": self.schedule,
            "artifacts": [[a.name, a.size, a.content_type, a.created_at.isoformat()] for a in self.artifacts],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobRecord:
        times = {key: _time(data[key]) for key in ("run_after", "started_at", "finished_at")}
        return cls(
            id=data["id"],
            task=data["task"],
            status=JobStatus(data["status"]),
            params=data["params"],
            created_at=datetime.fromisoformat(data["created_at"]),
            owner=data["owner"],
            priority=data["priority"],
            queue=data["queue"],
            idempotency_key=data["idempotency_key"],
            attempts=data["attempts"],
            max_attempts=data["max_attempts"],
            progress=data["progress"],
            message=read(data["message"]),
            result=data["result"],
            error=read(data["error"]),
            traceback=data["traceback"],
            worker=data["worker"],
            engine_id=data["engine_id"],
            cancel_requested=data["cancel_requested"],
            log_lines=data["log_lines"],
            schedule=data["schedule"],
            **times,
            artifacts=[
                ArtifactInfo(name, size, content_type, datetime.fromisoformat(at))
                for name, size, content_type, at in data["artifacts"]
            ],
        )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


class Job(Protocol):
    """What a task function gets when it declares a parameter typed `mieruka.Job`.

    >>> @app.task()
    ... def align(reads: mieruka.File, job: mieruka.Job) -> dict:
    ...     job.progress(0.1, "indexing")
    ...     job.artifact("report.html", b"<h1>done</h1>")
    ...     return {"mapped": 0.97}
    """

    id: int
    task: str
    attempt: int
    max_attempts: int
    params: dict[str, Any]

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Report progress in [0, 1] and/or a short status message."""

    def log(self, message: str) -> None:
        """Add one line to the job log (print() and logging do the same)."""

    def artifact(self, name: str, data: bytes | str | PathLike[str], content_type: str | None = None) -> None:
        """Attach a downloadable file: bytes or text content, or a Path to a file to copy."""
