"""The outbox of events: what happened, written once per event (its key is unique), before anyone
is told.

A job's end, its last retry and a pool's start or stop are written by the database itself, in the
transaction that changes the job or the pool (triggers of migration 0010), on every path that
changes them: a server's engine, a Celery worker, recovery. A scheduled run fired late is written
in the transaction that fires it (store/schedules.py). What no row records is written as soon as a
server sees it: a job running longer than a rule's limit, a data source failing or recovering, a
node whose heartbeat stopped. Only the kinds an enabled rule asks for are written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..deferred import deferred
from ..store.database import Database

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..store import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")


@dataclass(frozen=True)
class NewEvent:
    kind: str
    key: str
    subject: str
    message: str | None = None
    job_id: int | None = None
    task: str | None = None


def wanted(conn: sa.Connection, kind: str) -> bool:
    """Whether an enabled rule asks for `kind`."""
    r = t.notify_rules.c
    found = conn.execute(
        sa.select(r.id).where(r.enabled, r.events.contains(f",{kind},", autoescape=True)).limit(1)
    ).first()
    return found is not None


def record(db: Database, events: Iterable[NewEvent], now: datetime) -> int:
    """Write the events an enabled rule asks for (one already written is left); how many were new."""
    added = 0
    with db.write() as conn:
        for event in events:
            if not wanted(conn, event.kind):
                continue
            added += insert(conn, db.is_sqlite, event, now)
    return added


def insert(conn: sa.Connection, is_sqlite: bool, event: NewEvent, now: datetime) -> int:
    values = {
        "kind": event.kind,
        "key": event.key[:300],
        "at": now,
        "job_id": event.job_id,
        "task": event.task,
        "subject": event.subject[:200],
        "message": event.message[:2000] if event.message else None,
        "routed": False,
    }
    # The dialect of the database at hand only: PostgreSQL's is 30 modules a server on SQLite never needs.
    if is_sqlite:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    else:
        from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
    stmt = dialect_insert(t.notify_events).values(**values).on_conflict_do_nothing(index_elements=["key"])
    return int(conn.execute(stmt).rowcount or 0)


def long_jobs(db: Database, limits: dict[str | None, float], now: datetime) -> list[NewEvent]:
    """Running jobs past a limit: `limits` maps a task (None: every task) to the shortest limit of
    the rules about it."""
    if not limits:
        return []
    j = t.jobs.c
    shortest = min(limits.values())
    query = sa.select(j.id, j.task, j.attempts, j.started_at).where(
        j.status == "running", j.started_at <= now - timedelta(seconds=shortest)
    )
    if None not in limits:
        query = query.where(j.task.in_([k for k in limits if k is not None]))
    with db.read() as conn:
        rows = conn.execute(query).all()
    found = []
    for row in rows:
        limit = min((v for k, v in limits.items() if k is None or k == row.task), default=None)
        if limit is None:
            continue
        if row.started_at is not None and (now - row.started_at).total_seconds() >= limit:
            found.append(
                NewEvent(
                    "job.long",
                    f"job.long:{row.id}:{row.attempts}",
                    row.task,
                    f"running since {row.started_at:%Y-%m-%d %H:%M:%S} UTC (over {limit:g}s)",
                    job_id=row.id,
                    task=row.task,
                )
            )
    return found


def silent_nodes(db: Database, stale_after: float, now: datetime) -> list[NewEvent]:
    """Nodes (servers' engines, Celery workers) whose heartbeat stopped more than `stale_after` ago."""
    e = t.engines.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(e.id, e.host, e.pid, e.heartbeat_at, e.info).where(
                e.heartbeat_at < now - timedelta(seconds=stale_after)
            )
        ).all()
    found = []
    for row in rows:
        info = row.info if isinstance(row.info, dict) else {}
        name = str(info.get("name") or row.host)
        found.append(
            NewEvent(
                "node.down",
                f"node.down:{row.id}:{row.heartbeat_at.isoformat()}",
                name,
                f"last heard from at {row.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC "
                f"({info.get('kind', 'node')} on {row.host})",
            )
        )
    return found
