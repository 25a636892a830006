"""Messages on their way: events routed to the rules about them, grouped into one message per rule
and digest window, claimed by one server at a time, sent, retried with backoff.

Routing and claiming take the same lock (`write_alone`), so an event joins a message only while
no server sends it: each (rule, event) pair is in exactly one message (the primary key of
notify_items says so too). The first event of a quiet rule goes at once; those that follow within
`window` seconds of its message wait, together, for the window's end: a flood of 500 failures is
two messages, not 500. A message is marked sent after its receiver accepted it; a server killed in
between leaves the claim to expire and the message is sent again with the same key (the
receivers' `X-Mieruka-Delivery`, the mail's Message-ID), which is how a receiver tells a repeat.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..deferred import deferred
from ..errors import ConflictError
from ..i18n import _
from ..notes import read
from ..store.database import Database
from .messages import Event
from .rulebook import StoredRule

if TYPE_CHECKING:
    import sqlalchemy as sa

    from ..store import tables as t
else:
    sa = deferred("sqlalchemy")
    t = deferred("mieruka.store.tables")

PENDING, SENT, FAILED = "pending", "sent", "failed"
ROUTE_BATCH = 1000  # events routed per transaction


@dataclass(frozen=True)
class Claimed:
    id: int
    rule_id: int
    key: str
    attempts: int
    test: bool


def route(
    db: Database,
    rules: Sequence[StoredRule],
    matches: Callable[[StoredRule, Event], bool],
    now: datetime,
    window: float,
) -> int:
    """Route the events not routed yet into messages; returns how many events were routed."""
    if not unrouted(db):  # the common case, nothing to route, takes no lock
        return 0
    e, d = t.notify_events.c, t.notify_deliveries.c
    with db.write_alone("notify_deliveries") as conn:
        rows = conn.execute(sa.select(t.notify_events).where(sa.not_(e.routed)).order_by(e.id).limit(ROUTE_BATCH)).all()
        if not rows:
            return 0
        open_messages: dict[int, int] = {}
        for row in rows:
            event = event_of(row)
            for rule in rules:
                if not rule.enabled or not matches(rule, event):
                    continue
                delivery = open_messages.get(rule.id) or _open_message(conn, rule.id, now, window)
                open_messages[rule.id] = delivery
                conn.execute(sa.insert(t.notify_items).values(rule_id=rule.id, event_id=event.id, delivery_id=delivery))
                conn.execute(sa.update(t.notify_deliveries).where(d.id == delivery).values(events=d.events + 1))
        conn.execute(sa.update(t.notify_events).where(e.id.in_([row.id for row in rows])).values(routed=True))
    return len(rows)


def unrouted(db: Database) -> bool:
    """Whether some event waits to be routed."""
    with db.cursor() as cur:
        cur.execute("SELECT id FROM notify_events WHERE NOT routed LIMIT 1")
        return cur.fetchone() is not None


def _open_message(conn: sa.Connection, rule_id: int, now: datetime, window: float) -> int:
    """The rule's message that still takes events, or a new one: due now if the rule was quiet for
    `window` seconds, else at the end of the window of its last message."""
    d = t.notify_deliveries.c
    found = conn.execute(
        sa.select(d.id)
        .where(d.rule_id == rule_id, d.status == PENDING, d.attempts == 0, d.lease_until.is_(None), sa.not_(d.test))
        .order_by(d.id.desc())
        .limit(1)
    ).scalar()
    if found is not None:
        return int(found)
    last = conn.execute(
        sa.select(d.created_at).where(d.rule_id == rule_id, sa.not_(d.test)).order_by(d.id.desc()).limit(1)
    ).scalar()
    due = now if last is None else max(now, last + timedelta(seconds=window))
    return _new(conn, rule_id, now, due, test=False)


def _new(conn: sa.Connection, rule_id: int, now: datetime, due: datetime, test: bool) -> int:
    return int(
        conn.execute(
            sa.insert(t.notify_deliveries)
            .values(
                rule_id=rule_id,
                key=uuid.uuid4().hex,
                status=PENDING,
                test=test,
                created_at=now,
                due_at=due,
                attempts=0,
                events=0,
            )
            .returning(t.notify_deliveries.c.id)
        ).scalar_one()
    )


def add_test(db: Database, rule_id: int, now: datetime) -> int:
    """A test message of the rule, due at once (it carries no events). One not tried yet is
    enough: pressing the button again meanwhile (or a script doing it) queues no more mail."""
    d = t.notify_deliveries.c
    with db.write_alone("notify_deliveries") as conn:
        waiting = conn.execute(
            sa.select(d.id).where(d.rule_id == rule_id, d.test, d.status == PENDING, d.attempts == 0).limit(1)
        ).scalar()
        if waiting is not None:
            raise ConflictError(_("test message %(id)s of this rule is on its way: its outcome shows here", id=waiting))
        return _new(conn, rule_id, now, now, test=True)


def claim(db: Database, now: datetime, lease: float, limit: int = 20) -> list[Claimed]:
    """Take the messages that are due and not being sent, for `lease` seconds."""
    if not _any_due(db, now):  # the common case takes no lock
        return []
    d = t.notify_deliveries.c
    due = sa.and_(d.status == PENDING, d.due_at <= now, sa.or_(d.lease_until.is_(None), d.lease_until < now))
    with db.write_alone("notify_deliveries") as conn:
        rows = conn.execute(
            sa.select(d.id, d.rule_id, d.key, d.attempts, d.test).where(due).order_by(d.due_at, d.id).limit(limit)
        ).all()
        if rows:
            conn.execute(
                sa.update(t.notify_deliveries)
                .where(d.id.in_([r.id for r in rows]))
                .values(lease_until=now + timedelta(seconds=lease))
            )
    return [Claimed(r.id, r.rule_id, r.key, r.attempts, bool(r.test)) for r in rows]


def _any_due(db: Database, now: datetime) -> bool:
    """Whether a message is due and not being sent (`claim`'s `due`)."""
    at = db.codec.time(now)
    with db.cursor() as cur:
        cur.execute(
            db.sql(
                "SELECT id FROM notify_deliveries WHERE status = ? AND due_at <= ? "
                "AND (lease_until IS NULL OR lease_until < ?) LIMIT 1"
            ),
            (PENDING, at, at),
        )
        return cur.fetchone() is not None


def events_of(db: Database, delivery_id: int) -> list[Event]:
    e, i = t.notify_events.c, t.notify_items.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(t.notify_events)
            .join(t.notify_items, i.event_id == e.id)
            .where(i.delivery_id == delivery_id)
            .order_by(e.id)
        ).all()
    return [event_of(row) for row in rows]


def event_of(row: sa.Row[Any]) -> Event:
    m = row._mapping
    return Event(
        id=m["id"],
        kind=m["kind"],
        at=m["at"],
        subject=m["subject"],
        job_id=m["job_id"],
        task=m["task"],
        message=read(m["message"]),  # a job's error or a pool's reason, copied as stored: a note's English
    )


def sent(db: Database, claimed: Claimed, now: datetime) -> None:
    d = t.notify_deliveries.c
    with db.write() as conn:
        conn.execute(
            sa.update(t.notify_deliveries)
            .where(d.id == claimed.id)
            .values(status=SENT, sent_at=now, lease_until=None, attempts=claimed.attempts + 1, last_error=None)
        )


def failed(db: Database, claimed: Claimed, now: datetime, error: str, backoff: float, most: int) -> bool:
    """Record a failed attempt; the message is tried again after `backoff` seconds, unless this was
    attempt `most` (then it stays failed). Returns whether it will be tried again."""
    d = t.notify_deliveries.c
    attempts = claimed.attempts + 1
    again = attempts < most
    with db.write() as conn:
        conn.execute(
            sa.update(t.notify_deliveries)
            .where(d.id == claimed.id)
            .values(
                status=PENDING if again else FAILED,
                attempts=attempts,
                last_error=error[:1000],
                lease_until=None,
                due_at=now + timedelta(seconds=backoff),
            )
        )
    return again


def backoff(attempts: int, first: float, most: float = 3600.0) -> float:
    """Seconds before try `attempts + 1`: first, 2×, 4×... up to `most`."""
    return float(min(first * 2 ** max(attempts - 1, 0), most))


def listing(db: Database, rule_ids: Sequence[int] | None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest messages (of `rule_ids` only, unless None), each with its rule's name."""
    d, r = t.notify_deliveries.c, t.notify_rules.c
    stmt = (
        sa.select(
            d.id,
            d.rule_id,
            r.name.label("rule"),
            d.key,
            d.status,
            d.test,
            d.created_at,
            d.due_at,
            d.sent_at,
            d.attempts,
            d.events,
            d.last_error,
        )
        .join(t.notify_rules, r.id == d.rule_id)
        .order_by(d.id.desc())
        .limit(limit)
    )
    if rule_ids is not None:
        stmt = stmt.where(d.rule_id.in_(list(rule_ids)))
    with db.read() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def counts(db: Database) -> dict[str, int]:
    """Messages by status (sent, pending, failed) and failed attempts that will be retried."""
    d = t.notify_deliveries.c
    with db.read() as conn:
        found = {
            row.status: int(row.n)
            for row in conn.execute(sa.select(d.status, sa.func.count().label("n")).group_by(d.status))
        }
        retrying = conn.execute(sa.select(sa.func.count()).where(d.status == PENDING, d.attempts > 0)).scalar_one()
        events = conn.execute(sa.select(sa.func.count()).select_from(t.notify_events)).scalar_one()
    return {
        SENT: found.get(SENT, 0),
        PENDING: found.get(PENDING, 0),
        FAILED: found.get(FAILED, 0),
        "retrying": int(retrying),
        "events": int(events),
    }


def prune(db: Database, before: datetime) -> int:
    """Delete the messages sent or given up before `before` (their items go with them), and the
    routed events no message holds any more; returns how many messages went."""
    at = db.codec.time(before)
    with db.write_cursor() as cur:
        if not db.is_sqlite:  # as write_alone("notify_deliveries")
            cur.execute("LOCK TABLE notify_deliveries IN SHARE ROW EXCLUSIVE MODE")
        cur.execute(db.sql("DELETE FROM notify_deliveries WHERE status <> ? AND created_at < ?"), (PENDING, at))
        gone = cur.rowcount
        cur.execute(
            db.sql(
                "DELETE FROM notify_events WHERE routed AND at < ? "
                "AND NOT EXISTS (SELECT 1 FROM notify_items WHERE notify_items.event_id = notify_events.id)"
            ),
            (at,),
        )
    return int(gone or 0)
