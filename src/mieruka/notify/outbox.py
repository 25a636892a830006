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
from typing import Any

from ..store.codec import json_out, time_of, time_out
from ..store.database import Database


@dataclass(frozen=True)
class NewEvent:
    kind: str
    key: str
    subject: str
    message: str | None = None
    job_id: int | None = None
    task: str | None = None


def _contains(text: str) -> str:
    """A LIKE pattern (with ESCAPE '/') of the values that contain `text`: its % and _ are theirs."""
    return "%" + text.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"


def wanted(db: Database, cur: Any, kind: str) -> bool:
    """Whether an enabled rule asks for `kind` (`cur`: a cursor of `db`)."""
    cur.execute(
        db.sql("SELECT id FROM notify_rules WHERE enabled AND events LIKE ? ESCAPE '/' LIMIT 1"),
        (_contains(f",{kind},"),),
    )
    return cur.fetchone() is not None


def record(db: Database, events: Iterable[NewEvent], now: datetime) -> int:
    """Write the events an enabled rule asks for (one already written is left); how many were new."""
    added = 0
    with db.write_cursor() as cur:
        for event in events:
            if not wanted(db, cur, event.kind):
                continue
            added += insert(db, cur, event, now)
    return added


def insert(db: Database, cur: Any, event: NewEvent, now: datetime) -> int:
    """Write one event with a write cursor of `db`, unless its key is written already; 1 if it was new."""
    cur.execute(
        db.sql(
            'INSERT INTO notify_events (kind, "key", at, job_id, task, subject, message, routed) '
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("key") DO NOTHING'
        ),
        (
            event.kind,
            event.key[:300],
            db.codec.time(now),
            event.job_id,
            event.task,
            event.subject[:200],
            event.message[:2000] if event.message else None,
            False,
        ),
    )
    return int(cur.rowcount or 0)


def long_jobs(db: Database, limits: dict[str | None, float], now: datetime) -> list[NewEvent]:
    """Running jobs past a limit: `limits` maps a task (None: every task) to the shortest limit of
    the rules about it."""
    if not limits:
        return []
    shortest = min(limits.values())
    query = "SELECT id, task, attempts, started_at FROM jobs WHERE status = ? AND started_at <= ?"
    args: list[Any] = ["running", db.codec.time(now - timedelta(seconds=shortest))]
    if None not in limits:
        tasks = [k for k in limits if k is not None]
        query += f" AND task IN ({', '.join('?' * len(tasks))})"
        args += tasks
    found = []
    for job_id, task, attempts, started in db.rows(query, args):
        limit = min((v for k, v in limits.items() if k is None or k == task), default=None)
        if limit is None:
            continue
        started_at = time_out(started)
        if started_at is not None and (now - started_at).total_seconds() >= limit:
            found.append(
                NewEvent(
                    "job.long",
                    f"job.long:{job_id}:{attempts}",
                    task,
                    f"running since {started_at:%Y-%m-%d %H:%M:%S} UTC (over {limit:g}s)",
                    job_id=job_id,
                    task=task,
                )
            )
    return found


def silent_nodes(db: Database, stale_after: float, now: datetime) -> list[NewEvent]:
    """Nodes (servers' engines, Celery workers) whose heartbeat stopped more than `stale_after` ago."""
    rows = db.rows(
        "SELECT id, host, heartbeat_at, info FROM engines WHERE heartbeat_at < ?",
        (db.codec.time(now - timedelta(seconds=stale_after)),),
    )
    found = []
    for node_id, host, heartbeat, stored_info in rows:
        heartbeat_at = time_of(heartbeat)
        info = json_out(stored_info)
        info = info if isinstance(info, dict) else {}
        name = str(info.get("name") or host)
        found.append(
            NewEvent(
                "node.down",
                f"node.down:{node_id}:{heartbeat_at.isoformat()}",
                name,
                f"last heard from at {heartbeat_at:%Y-%m-%d %H:%M:%S} UTC ({info.get('kind', 'node')} on {host})",
            )
        )
    return found
