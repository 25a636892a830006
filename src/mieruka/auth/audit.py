"""The audit log: who did what, to which target, when, from which address.

Record an entry from a route with one line: `audit(request, "source.refresh", f"source:{name}")`
(see mieruka.web.audit.audit); from elsewhere, `AuditLog.record(...)`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..core.clock import utcnow
from ..store import tables as t
from ..store.database import Database


@dataclass(frozen=True)
class Entry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    address: str
    detail: dict[str, Any] | None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "address": self.address,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." ("job." matches job.cancel, job.retry...)
    target: str | None = None  # text contained in the target
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


class AuditLog:
    def __init__(self, db: Database, retention: float = 400 * 86400.0) -> None:
        self.db = db
        self.retention = retention
        self._pruned: datetime | None = None

    def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        address: str = "",
        detail: dict[str, Any] | None = None,
        at: datetime | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Add an entry; given `conn`, in that transaction (it is then committed with the rest)."""
        if conn is None:
            with self.db.write() as conn:
                self.record(actor, action, target, address, detail, at, conn)
            return
        now = utcnow()
        conn.execute(
            t.audit_log.insert().values(
                at=at or now,
                actor=actor[:100],
                action=action[:100],
                target=target[:300],
                address=address[:64],
                detail=detail or None,
            )
        )
        # The log stays bounded: entries older than the retention go, checked hourly.
        if self._pruned is None or now - self._pruned > timedelta(hours=1):
            self._pruned = now
            conn.execute(t.audit_log.delete().where(t.audit_log.c.at < now - timedelta(seconds=self.retention)))

    def query(self, q: AuditQuery) -> list[Entry]:
        c = t.audit_log.c
        stmt = sa.select(t.audit_log).order_by(c.id.desc()).limit(q.limit)
        if q.actor:
            stmt = stmt.where(c.actor == q.actor)
        if q.action:
            stmt = stmt.where(
                c.action.startswith(q.action, autoescape=True) if q.action.endswith(".") else c.action == q.action
            )
        if q.target:
            stmt = stmt.where(c.target.contains(q.target, autoescape=True))
        if q.since:
            stmt = stmt.where(c.at >= q.since)
        if q.until:
            stmt = stmt.where(c.at < q.until)
        if q.before_id:
            stmt = stmt.where(c.id < q.before_id if q.before_id <= t.MAX_INT else c.id <= t.MAX_INT)
        with self.db.read() as conn:
            return [Entry(r.id, r.at, r.actor, r.action, r.target, r.address, r.detail) for r in conn.execute(stmt)]

    def count(self, action: str, since: datetime, *, actor: str | None = None, address: str | None = None) -> int:
        c = t.audit_log.c
        stmt = sa.select(sa.func.count()).select_from(t.audit_log).where(c.action == action, c.at >= since)
        if actor is not None:
            stmt = stmt.where(c.actor == actor)
        if address is not None:
            stmt = stmt.where(c.address == address)
        with self.db.read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def last(self, action: str, actor: str) -> datetime | None:
        c = t.audit_log.c
        with self.db.read() as conn:
            value: datetime | None = conn.execute(
                sa.select(sa.func.max(c.at)).where(c.action == action, c.actor == actor)
            ).scalar_one()
        if value is not None and value.tzinfo is None:  # max() bypasses the column type on SQLite
            value = t.UTCDateTime().process_result_value(value, None)  # type: ignore[arg-type]
        return value


def to_csv(entries: Iterable[Entry], zone: Any = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "at_utc", "actor", "action", "target", "address", "detail"])
    for e in entries:
        writer.writerow(
            [e.id, e.json()["at"], _safe(e.actor), e.action, _safe(e.target), e.address, _safe(_detail(e.detail))]
        )
    return out.getvalue()


def _detail(detail: dict[str, Any] | None) -> str:
    import json

    return json.dumps(detail, ensure_ascii=False) if detail else ""


def _safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: defuse it (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
