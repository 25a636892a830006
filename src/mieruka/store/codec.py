"""How values go into the store's tables and come back: one codec for every statement, whether
SQLAlchemy runs it (times: time_in and time_out, which tables.UTCDateTime calls) or plain SQL does.
It needs no SQLAlchemy: a server that runs only plain SQL never imports it.

Times are stored as naive UTC (SQLite: text as SQLAlchemy writes it; PostgreSQL: `timestamp`) and
come back aware, in UTC; a naive time given to the store is refused. JSON is stored without ASCII
escapes, so that a search for "é" in parameters finds it however the job was stored.

A job row is the jobs table's columns in the order tables.py declares them (`JOB_COLUMNS`, with
the kind of each that is not stored as the driver returns it, as `STEP_KINDS` has job_steps';
tests/unit/test_codec.py checks both against tables.py), and `Codec.job` is the one mapping from
such a row to a JobRecord: a column added to `jobs` (and to JobRecord, under the same name) is
added here too, and needs no other change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from ..core.job import ArtifactInfo, JobRecord
from ..core.status import JobStatus
from ..notes import read, stored

if TYPE_CHECKING:
    from .base import NewJob

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's own text form of a time on SQLite
# Ids, sequence numbers and counters are INTEGER columns: 32 bits on PostgreSQL. A larger number in a
# query is an error there (not "no match"), so whatever reads one by number checks it against this.
MAX_INT = 2**31 - 1
# ix_jobs_active's predicate, word for word: a query that says it is answered from that index (a
# bound parameter, or the states in another order, and SQLite scans the table).
ACTIVE = "status IN ('queued', 'running')"

Kind = Literal["time", "json", "plain"]
# The jobs table's columns in tables.py's order, each with how it is stored.
JOB_KINDS: tuple[tuple[str, Kind], ...] = (
    ("id", "plain"),
    ("task", "plain"),
    ("status", "plain"),
    ("params", "json"),
    ("owner", "plain"),
    ("priority", "plain"),
    ("queue", "plain"),
    ("idempotency_key", "plain"),
    ("attempts", "plain"),
    ("max_attempts", "plain"),
    ("run_after", "time"),
    ("created_at", "time"),
    ("started_at", "time"),
    ("finished_at", "time"),
    ("progress", "plain"),
    ("message", "plain"),
    ("result", "json"),
    ("error", "plain"),
    ("traceback", "plain"),
    ("worker", "plain"),
    ("engine_id", "plain"),
    ("cancel_requested", "plain"),
    ("log_lines", "plain"),
    ("schedule", "plain"),
)

# The job_steps table's columns likewise (a pipeline's steps are written on the hot path).
STEP_KINDS: tuple[tuple[str, Kind], ...] = (
    ("job_id", "plain"),
    ("name", "plain"),
    ("position", "plain"),
    ("kind", "plain"),
    ("status", "plain"),
    ("depends_on", "json"),
    ("description", "plain"),
    ("allow_failure", "plain"),
    ("parent", "plain"),
    ("started_at", "time"),
    ("finished_at", "time"),
    ("progress", "plain"),
    ("message", "plain"),
    ("output", "json"),
    ("error", "plain"),
    ("artifacts", "json"),
    ("reused", "plain"),
)


def time_in(value: datetime | None) -> datetime | None:
    """A time as stored, on every backend and every path: naive UTC. A naive time is refused."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
    return value.astimezone(UTC).replace(tzinfo=None)


def time_out(value: Any) -> datetime | None:
    """A stored time (naive UTC, or SQLite's text of it) as an aware UTC datetime."""
    if value is None:
        return None
    moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def json_out(value: Any) -> Any:
    """A JSON column's value as read: SQLite hands back its text (and, the column having numeric
    affinity, a number's text as the number); psycopg has decoded it."""
    return json.loads(value) if isinstance(value, str) else value


JOB_COLUMNS: tuple[str, ...] = tuple(name for name, _ in JOB_KINDS)
COLUMN_LIST = ", ".join(JOB_COLUMNS)
_KNOWN = frozenset(JOB_COLUMNS)
# JobRecord's fields in its own order, as indexes into a job row (positional: the hot path's speed).
_RECORD_ORDER = [JOB_COLUMNS.index(f.name) for f in fields(JobRecord) if f.name != "artifacts"]
# Python's value of a column where it is not the driver's: the status enum, never-None parameters.
_AS_RECORD: dict[str, Callable[[Any], Any]] = {
    "status": JobStatus,
    "params": lambda v: v or {},
    "cancel_requested": bool,
    "message": read,  # mieruka's own texts come back as notes (mieruka.notes)
    "error": read,
}


class Codec:
    """Values to and from one backend's driver (SQLite's sqlite3 or PostgreSQL's text protocol)."""

    def __init__(self, sqlite: bool) -> None:
        self.sqlite = sqlite
        self._in: dict[str, Callable[[Any], Any]] = {"status": _enum_value, "message": stored, "error": stored}
        decoders: list[tuple[int, Callable[[Any], Any]]] = []
        for index, (name, kind) in enumerate(JOB_KINDS):
            decode: Callable[[Any], Any] | None = _AS_RECORD.get(name)
            if kind == "time":
                self._in[name] = self.time
                decode = time_out
            elif kind == "json":
                self._in[name] = json_text
                if sqlite:  # sqlite3 hands back the JSON text; psycopg's types have decoded it
                    decode = _compose(json_out, decode)
            if decode is not None:
                decoders.append((index, decode))
        self._decoders = decoders

    def time(self, value: datetime | None) -> Any:
        naive = time_in(value)
        return naive.strftime(SQLITE_TIME) if self.sqlite and naive is not None else naive

    def field(self, name: str, value: Any) -> Any:
        """A jobs column's value as the driver takes it."""
        if name not in _KNOWN:
            raise ValueError(f"no job field {name!r}")
        if value is None:
            return None
        encode = self._in.get(name)
        if encode is not None:
            return encode(value)
        return value.value if isinstance(value, Enum) else value

    def values(self, fields: dict[str, Any]) -> list[Any]:
        """Jobs columns' values (`queued`'s, by name) as the driver takes them."""
        encoders = self._in
        out = []
        for name, value in fields.items():
            encode = encoders.get(name)
            out.append(value if value is None or encode is None else encode(value))
        return out

    def job(self, row: Sequence[Any], artifacts: list[ArtifactInfo] | None = None) -> JobRecord:
        """The record of a job row (`JOB_COLUMNS`, as the driver returns them)."""
        values = list(row)
        for index, decode in self._decoders:
            value = values[index]
            if value is not None:
                values[index] = decode(value)
        args = [values[i] for i in _RECORD_ORDER]
        args.append(artifacts or [])
        return JobRecord(*args)

    def artifacts(self, rows: Any) -> list[ArtifactInfo]:
        """Artifacts from rows of (name, size, content_type, created_at), or from the JSON array
        of them that SQLite hands back as text."""
        found: Sequence[Sequence[Any]] = json.loads(rows) if isinstance(rows, str) else rows or ()
        return [ArtifactInfo(name=r[0], size=r[1], content_type=r[2], created_at=time_of(r[3])) for r in found]


def time_of(value: Any) -> datetime:
    """A time of a NOT NULL column, as read."""
    moment = time_out(value)
    assert moment is not None
    return moment


def _enum_value(value: Enum) -> Any:
    return value.value


def _compose(first: Callable[[Any], Any], then: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    if then is None:
        return first
    return lambda value: then(first(value))


def queued(job: NewJob, now: datetime) -> dict[str, Any]:
    """A new job's columns, as Python values (the other columns take the table's defaults, which
    are JobRecord's too)."""
    return {
        "task": job.task,
        "status": JobStatus.QUEUED,
        "params": job.params,
        "owner": job.owner,
        "priority": job.priority,
        "queue": job.queue,
        "idempotency_key": job.idempotency_key,
        "max_attempts": job.max_attempts,
        "run_after": time_out(time_in(job.run_after)),
        "created_at": now,
        "schedule": job.schedule,
    }
