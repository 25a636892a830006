"""Messages on their way: events routed to the rules about them, grouped into one message per rule
and digest window, claimed by one server at a time, sent, retried with backoff.

Routing and claiming take the same lock (`Database.write_alone`), so an event joins a message only
while no server sends it: each (rule, event) pair is in exactly one message (the primary key of
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
from typing import Any

from ..errors import ConflictError
from ..i18n import _
from ..notes import read
from ..store.codec import time_of, time_out
from ..store.database import Database, marks
from .messages import Event
from .rulebook import StoredRule

PENDING, SENT, FAILED = "pending", "sent", "failed"
ROUTE_BATCH = 1000  # events routed per transaction
# The columns of notify_events in the table's order (`event_of` reads a row of them).
EVENT_COLUMNS = 'id, kind, "key", at, job_id, task, subject, message, routed'


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
    with db.write_alone("notify_deliveries") as cur:
        cur.execute(
            db.sql(f"SELECT {EVENT_COLUMNS} FROM notify_events WHERE NOT routed ORDER BY id LIMIT ?"), (ROUTE_BATCH,)
        )
        rows = cur.fetchall()
        if not rows:
            return 0
        open_messages: dict[int, int] = {}
        for row in rows:
            event = event_of(row)
            for rule in rules:
                if not rule.enabled or not matches(rule, event):
                    continue
                delivery = open_messages.get(rule.id) or _open_message(db, cur, rule.id, now, window)
                open_messages[rule.id] = delivery
                cur.execute(
                    db.sql("INSERT INTO notify_items (rule_id, event_id, delivery_id) VALUES (?, ?, ?)"),
                    (rule.id, event.id, delivery),
                )
                cur.execute(db.sql("UPDATE notify_deliveries SET events = events + 1 WHERE id = ?"), (delivery,))
        ids = [row[0] for row in rows]
        cur.execute(db.sql(f"UPDATE notify_events SET routed = ? WHERE id IN ({marks(len(ids))})"), (True, *ids))
    return len(rows)


def unrouted(db: Database) -> bool:
    """Whether some event waits to be routed."""
    with db.cursor() as cur:
        cur.execute("SELECT id FROM notify_events WHERE NOT routed LIMIT 1")
        return cur.fetchone() is not None


def _open_message(db: Database, cur: Any, rule_id: int, now: datetime, window: float) -> int:
    """The rule's message that still takes events, or a new one: due now if the rule was quiet for
    `window` seconds, else at the end of the window of its last message."""
    cur.execute(
        db.sql(
            "SELECT id FROM notify_deliveries WHERE rule_id = ? AND status = ? AND attempts = 0 "
            "AND lease_until IS NULL AND NOT test ORDER BY id DESC LIMIT 1"
        ),
        (rule_id, PENDING),
    )
    found = cur.fetchone()
    if found is not None:
        return int(found[0])
    cur.execute(
        db.sql("SELECT created_at FROM notify_deliveries WHERE rule_id = ? AND NOT test ORDER BY id DESC LIMIT 1"),
        (rule_id,),
    )
    last = cur.fetchone()
    last_at = None if last is None else time_out(last[0])
    due = now if last_at is None else max(now, last_at + timedelta(seconds=window))
    return _new(db, cur, rule_id, now, due, test=False)


def _new(db: Database, cur: Any, rule_id: int, now: datetime, due: datetime, test: bool) -> int:
    cur.execute(
        db.sql(
            'INSERT INTO notify_deliveries (rule_id, "key", status, test, created_at, due_at, attempts, events) '
            "VALUES (?, ?, ?, ?, ?, ?, 0, 0) RETURNING id"
        ),
        (rule_id, uuid.uuid4().hex, PENDING, test, db.codec.time(now), db.codec.time(due)),
    )
    return int(cur.fetchone()[0])


def add_test(db: Database, rule_id: int, now: datetime) -> int:
    """A test message of the rule, due at once (it carries no events). One not tried yet is
    enough: pressing the button again meanwhile (or a script doing it) queues no more mail."""
    with db.write_alone("notify_deliveries") as cur:
        cur.execute(
            db.sql(
                "SELECT id FROM notify_deliveries WHERE rule_id = ? AND test AND status = ? AND attempts = 0 LIMIT 1"
            ),
            (rule_id, PENDING),
        )
        waiting = cur.fetchone()
        if waiting is None:
            return _new(db, cur, rule_id, now, now, test=True)
    # Said once the transaction is over: an error inside it would cost PostgreSQL its connection.
    raise ConflictError(_("test message %(id)s of this rule is on its way: its outcome shows here", id=waiting[0]))


# `claim`'s and `_any_due`'s: pending, due, and not being sent.
_DUE = "status = ? AND due_at <= ? AND (lease_until IS NULL OR lease_until < ?)"


def claim(db: Database, now: datetime, lease: float, limit: int = 20) -> list[Claimed]:
    """Take the messages that are due and not being sent, for `lease` seconds."""
    if not _any_due(db, now):  # the common case takes no lock
        return []
    at = db.codec.time(now)
    with db.write_alone("notify_deliveries") as cur:
        cur.execute(
            db.sql(
                f'SELECT id, rule_id, "key", attempts, test FROM notify_deliveries WHERE {_DUE} '
                "ORDER BY due_at, id LIMIT ?"
            ),
            (PENDING, at, at, limit),
        )
        rows = cur.fetchall()
        if rows:
            cur.execute(
                db.sql(f"UPDATE notify_deliveries SET lease_until = ? WHERE id IN ({marks(len(rows))})"),
                (db.codec.time(now + timedelta(seconds=lease)), *(row[0] for row in rows)),
            )
    return [Claimed(row_id, rule_id, key, attempts, bool(test)) for row_id, rule_id, key, attempts, test in rows]


def _any_due(db: Database, now: datetime) -> bool:
    """Whether a message is due and not being sent (`claim`'s `due`)."""
    at = db.codec.time(now)
    return db.row(f"SELECT id FROM notify_deliveries WHERE {_DUE} LIMIT 1", (PENDING, at, at)) is not None


def events_of(db: Database, delivery_id: int) -> list[Event]:
    rows = db.rows(
        f"SELECT {EVENT_COLUMNS} FROM notify_events JOIN notify_items ON notify_items.event_id = notify_events.id "
        "WHERE notify_items.delivery_id = ? ORDER BY notify_events.id",
        (delivery_id,),
    )
    return [event_of(row) for row in rows]


def event_of(row: Sequence[Any]) -> Event:
    """The event of a row of `EVENT_COLUMNS`, as either backend's driver returns it."""
    event_id, kind, _key, at, job_id, task, subject, message, _routed = row
    moment = time_of(at)
    return Event(
        id=event_id,
        kind=kind,
        at=moment,
        subject=subject,
        job_id=job_id,
        task=task,
        message=read(message),  # a job's error or a pool's reason, copied as stored: a note's English
    )


def sent(db: Database, claimed: Claimed, now: datetime) -> None:
    db.run(
        "UPDATE notify_deliveries SET status = ?, sent_at = ?, lease_until = NULL, attempts = ?, last_error = NULL "
        "WHERE id = ?",
        (SENT, db.codec.time(now), claimed.attempts + 1, claimed.id),
    )


def failed(db: Database, claimed: Claimed, now: datetime, error: str, backoff: float, most: int) -> bool:
    """Record a failed attempt; the message is tried again after `backoff` seconds, unless this was
    attempt `most` (then it stays failed). Returns whether it will be tried again."""
    attempts = claimed.attempts + 1
    again = attempts < most
    db.run(
        "UPDATE notify_deliveries SET status = ?, attempts = ?, last_error = ?, lease_until = NULL, due_at = ? "
        "WHERE id = ?",
        (
            PENDING if again else FAILED,
            attempts,
            error[:1000],
            db.codec.time(now + timedelta(seconds=backoff)),
            claimed.id,
        ),
    )
    return again


def backoff(attempts: int, first: float, most: float = 3600.0) -> float:
    """Seconds before try `attempts + 1`: first, 2×, 4×... up to `most`."""
    return float(min(first * 2 ** max(attempts - 1, 0), most))


def listing(db: Database, rule_ids: Sequence[int] | None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest messages (of `rule_ids` only, unless None), each with its rule's name."""
    where, args = "", []
    if rule_ids is not None:
        if not rule_ids:
            return []
        where, args = f"WHERE d.rule_id IN ({marks(len(rule_ids))}) ", list(rule_ids)
    rows = db.rows(
        'SELECT d.id, d.rule_id, r.name, d."key", d.status, d.test, d.created_at, d.due_at, d.sent_at, d.attempts, '
        f"d.events, d.last_error FROM notify_deliveries d JOIN notify_rules r ON r.id = d.rule_id {where}"
        "ORDER BY d.id DESC LIMIT ?",
        (*args, limit),
    )
    return [
        {
            "id": row_id,
            "rule_id": rule_id,
            "rule": rule,
            "key": key,
            "status": status,
            "test": bool(test),
            "created_at": time_out(created_at),
            "due_at": time_out(due_at),
            "sent_at": time_out(sent_at),
            "attempts": attempts,
            "events": events,
            "last_error": last_error,
        }
        for row_id, rule_id, rule, key, status, test, created_at, due_at, sent_at, attempts, events, last_error in rows
    ]


def counts(db: Database) -> dict[str, int]:
    """Messages by status (sent, pending, failed) and failed attempts that will be retried."""
    # One statement, so that the figures are of one moment, as the one transaction they were read in.
    rows = db.rows(
        "SELECT status, COUNT(*), SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) FROM notify_deliveries "
        "GROUP BY status UNION ALL SELECT NULL, COUNT(*), 0 FROM notify_events"
    )
    found = {status: (int(n), int(tried)) for status, n, tried in rows}
    return {
        SENT: found.get(SENT, (0, 0))[0],
        PENDING: found.get(PENDING, (0, 0))[0],
        FAILED: found.get(FAILED, (0, 0))[0],
        "retrying": found.get(PENDING, (0, 0))[1],
        "events": found[None][0],
    }


def prune(db: Database, before: datetime) -> int:
    """Delete the messages sent or given up before `before` (their items go with them), and the
    routed events no message holds any more; returns how many messages went."""
    at = db.codec.time(before)
    with db.write_alone("notify_deliveries") as cur:
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
