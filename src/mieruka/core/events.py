"""Events about jobs, as published on the event bus and sent to browsers over SSE."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """`kind` is one of: state, progress, log, artifact. `topic` is "job:<id>".
    `id` is assigned by the bus: increasing, so a reconnecting client can resume after it."""

    kind: str
    job_id: int
    task: str
    data: dict[str, Any]
    id: int = 0
    extra_topics: tuple[str, ...] = field(default=())

    @property
    def topic(self) -> str:
        return f"job:{self.job_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "job_id": self.job_id, "task": self.task, **self.data}
