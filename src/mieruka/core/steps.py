"""Pipeline steps: their states, the one table of allowed transitions, the stored record, and the
pure scheduling rule (which steps may start, which can never run)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class StepStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in STEP_FINISHED

    def __str__(self) -> str:
        return self.value


STEP_FINISHED = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})

# Every finished state may go back to pending: a retried job plans its steps again (steps that
# succeeded stay succeeded and are reused; the others run anew).
STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    StepStatus.PENDING: frozenset({StepStatus.RUNNING, StepStatus.SKIPPED, StepStatus.CANCELLED, StepStatus.FAILED}),
    StepStatus.RUNNING: frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CANCELLED}),
    StepStatus.SUCCEEDED: frozenset({StepStatus.PENDING}),
    StepStatus.FAILED: frozenset({StepStatus.PENDING}),
    StepStatus.SKIPPED: frozenset({StepStatus.PENDING}),
    StepStatus.CANCELLED: frozenset({StepStatus.PENDING}),
}


@dataclass(frozen=True)
class StepRecord:
    """One step of a pipeline job, as stored and served."""

    job_id: int
    name: str
    position: int
    kind: str  # python, shell, snakemake, rule
    status: StepStatus = StepStatus.PENDING
    depends_on: list[str] = field(default_factory=list)
    description: str = ""
    allow_failure: bool = False
    parent: str | None = None  # the workflow step a Snakemake rule execution belongs to
    started_at: datetime | None = None
    finished_at: datetime | None = None
    progress: float | None = None
    message: str | None = None
    output: Any = None
    error: str | None = None
    artifacts: list[str] = field(default_factory=list)
    reused: bool = False  # succeeded in an earlier attempt; its outputs were kept

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration"] = self.duration
        for key in ("started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data


def ready_steps(depends: Mapping[str, Sequence[str]], status: Mapping[str, StepStatus]) -> tuple[list[str], list[str]]:
    """Which pending steps can start now, and which can never run (an input failed or was
    skipped or cancelled). A step runs once every step it depends on succeeded; a failed step
    that was allowed to fail still blocks the steps that need its output."""
    ready: list[str] = []
    blocked: list[str] = []
    for name, deps in depends.items():
        if status[name] is not StepStatus.PENDING:
            continue
        states = [status[d] for d in deps]
        if all(s is StepStatus.SUCCEEDED for s in states):
            ready.append(name)
        elif any(s in (StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED) for s in states):
            blocked.append(name)
    return ready, blocked


def topological_order(depends: Mapping[str, Sequence[str]]) -> list[str]:
    """Names in an order where each comes after what it depends on (declaration order kept among
    equals); ValueError naming the cycle's members, or an unknown dependency."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(depends)
    for name, deps in depends.items():
        for dep in deps:
            if dep not in depends:
                raise ValueError(f"step {name!r} depends on unknown step {dep!r}")
    while remaining:
        progressed = False
        for name in list(remaining):
            if all(d in placed for d in depends[name]):
                order.append(name)
                placed.add(name)
                remaining.remove(name)
                progressed = True
        if not progressed:
            raise ValueError(f"the steps {', '.join(sorted(remaining))} depend on each other in a cycle")
    return order
