"""The steps of pipeline jobs: written by the hot path's `apply` (planned, saved, closed), read by
`list_steps`. A StepRecord's fields are the job_steps columns, by name."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..core.clock import utcnow
from ..core.steps import STEP_FINISHED, StepRecord, StepStatus
from ..notes import read, stored
from .base import StepSaved, StepsClosed, StepsPlanned
from .codec import MAX_INT, STEP_KINDS, json_out, json_text, time_out
from .database import Database


class _Columns(NamedTuple):
    names: list[str]
    insert: str
    select: str
    json: set[str]
    times: set[str]


_STEPS = _Columns(
    [name for name, _ in STEP_KINDS],
    f"INSERT INTO job_steps ({', '.join(n for n, _ in STEP_KINDS)}) VALUES ({', '.join('?' for _ in STEP_KINDS)})",
    f"SELECT {', '.join(n for n, _ in STEP_KINDS)} FROM job_steps WHERE job_id = ? ORDER BY position, name",
    {name for name, kind in STEP_KINDS if kind == "json"},
    {name for name, kind in STEP_KINDS if kind == "time"},
)


def apply_step_change(db: Database, cur: Any, change: StepsPlanned | StepSaved | StepsClosed) -> bool:
    """One of `apply`'s step changes, on its cursor; whether it took effect."""
    if isinstance(change, StepsPlanned):
        cur.execute(db.sql("DELETE FROM job_steps WHERE job_id = ?"), (change.job_id,))
        for step in change.steps:
            _insert(db, cur, step)
        return True
    if isinstance(change, StepSaved):
        step = change.step
        cur.execute(db.sql("DELETE FROM job_steps WHERE job_id = ? AND name = ?"), (step.job_id, step.name))
        _insert(db, cur, step)
        return True
    open_states = [s.value for s in StepStatus if s not in STEP_FINISHED]
    finished = db.codec.time(utcnow()) if change.to in STEP_FINISHED else None
    cur.execute(
        db.sql(
            "UPDATE job_steps SET status = ?, finished_at = CASE WHEN status = ? THEN ? ELSE finished_at END "
            "WHERE job_id = ? AND status IN (?, ?)"
        ),
        (change.to.value, StepStatus.RUNNING.value, finished, change.job_id, *open_states),
    )
    return bool(cur.rowcount)


def _insert(db: Database, cur: Any, step: StepRecord) -> None:
    cur.execute(db.sql(_STEPS.insert), [_value(db, name, getattr(step, name)) for name in _STEPS.names])


def _value(db: Database, name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _STEPS.json:
        return json_text(value)
    if name in _STEPS.times:
        return db.codec.time(value)
    if name in ("message", "error"):
        return stored(value)
    return value.value if isinstance(value, StepStatus) else value


class StepQueries:
    db: Database

    def list_steps(self, job_id: int) -> list[StepRecord]:
        if not 0 < job_id <= MAX_INT:
            return []
        db = self.db
        return [
            _step(dict(zip(_STEPS.names, row, strict=True)), db.is_sqlite) for row in db.rows(_STEPS.select, (job_id,))
        ]


def _step(m: dict[str, Any], sqlite: bool) -> StepRecord:
    """A job_steps row, by column name, as the driver returns it."""
    if sqlite:  # sqlite3 hands back the JSON text; PostgreSQL's rows come decoded
        for name in _STEPS.json:
            m[name] = json_out(m[name])
    for name in _STEPS.times:
        m[name] = time_out(m[name])
    return StepRecord(
        **{
            **m,
            "status": StepStatus(m["status"]),
            "depends_on": list(m["depends_on"] or []),
            "allow_failure": bool(m["allow_failure"]),
            "artifacts": list(m["artifacts"] or []),
            "reused": bool(m["reused"]),
            "message": read(m["message"]),
            "error": read(m["error"]),
        }
    )
