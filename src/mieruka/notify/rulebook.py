"""The rules as stored: those declared in code (written again at each start, named after where
they are declared), those admins make in the UI, and each user's own subscriptions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ConfigError, NotFoundError, ValidationError
from ..store.codec import MAX_INT, json_out, json_text, time_of
from ..store.database import Database, integrity_errors, marks
from .rules import KINDS, SCOPES, Rule

CODE, ADMIN, USER = "code", "admin", "user"
log = logging.getLogger("mieruka.notify")


@dataclass(frozen=True)
class StoredRule:
    id: int
    name: str
    origin: str
    owner: str | None
    events: frozenset[str]
    scope: dict[str, list[str]]
    target: str
    secret: str | None
    longer_than: float | None
    enabled: bool
    created_by: str
    created_at: datetime

    def matches(self, kind: str, subject: str, task: str | None, tags: Callable[[str], Sequence[str]]) -> bool:
        """Whether this rule is about an event: its kind, and its subject within the rule's scope
        (a scope of another family leaves the event in: a rule about task x and pools hears of
        every pool)."""
        if kind not in self.events:
            return False
        family = kind.split(".")[0]
        if family in ("job", "schedule"):
            name = task or subject
            tasks, wanted_tags = self.scope.get("tasks"), self.scope.get("tags")
            if tasks and name not in tasks:
                return False
            return not wanted_tags or bool(set(wanted_tags) & set(tags(name)))
        if family == "pool":
            return not self.scope.get("pools") or subject in self.scope["pools"]
        if family == "source":
            return not self.scope.get("sources") or subject in self.scope["sources"]
        return True

    def shown_target(self) -> str:
        """The target as the page shows it: a webhook's URL holds its secret in its path."""
        channel, _, address = self.target.partition(":")
        if channel == "mail":
            return self.target
        scheme, _, rest = address.partition("://")
        return f"{channel}:{scheme}://{rest.split('/', 1)[0]}/\u2026"


def events_text(kinds: Sequence[str] | frozenset[str]) -> str:
    return "," + ",".join(sorted(kinds)) + ","


# StoredRule's fields in its order.
_COLUMNS = "id, name, origin, owner, events, scope, target, secret, longer_than, enabled, created_by, created_at"
# What the code declares of a rule, compared with the stored rule and written, in this order.
_DECLARED = "events, scope, target, longer_than, enabled"


def _stored(row: Sequence[Any]) -> StoredRule:
    """The rule of a row of `_COLUMNS`, as either backend's driver returns it."""
    rule_id, name, origin, owner, events, scope, target, secret, longer_than, enabled, created_by, created_at = row
    created = time_of(created_at)
    return StoredRule(
        id=rule_id,
        name=name,
        origin=origin,
        owner=owner,
        events=frozenset(k for k in events.split(",") if k),
        scope=dict(json_out(scope) or {}),
        target=target,
        secret=secret,
        longer_than=longer_than,
        enabled=bool(enabled),
        created_by=created_by,
        created_at=created,
    )


class Rulebook:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self, owner: str | None = None) -> list[StoredRule]:
        db = self.db
        owned, args = ("WHERE owner = ? ", (owner,)) if owner is not None else ("", ())
        with db.cursor() as cur:
            cur.execute(db.sql(f"SELECT {_COLUMNS} FROM notify_rules {owned}ORDER BY id"), args)
            rows = cur.fetchall()
        return [_stored(row) for row in rows]

    def get(self, rule_id: int) -> StoredRule:
        if not 0 < rule_id <= MAX_INT:  # a PostgreSQL integer column: a larger id names no rule
            raise NotFoundError(f"no notification rule {rule_id}")
        db = self.db
        with db.cursor() as cur:
            cur.execute(db.sql(f"SELECT {_COLUMNS} FROM notify_rules WHERE id = ?"), (rule_id,))
            row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"no notification rule {rule_id}")
        return _stored(row)

    def sync_code(self, declared: Mapping[str, Rule], now: datetime) -> None:
        """Make the rules of origin "code" those declared (by name): new ones added, changed ones
        rewritten (keeping their id, so their messages stay theirs), gone ones deleted. Servers
        starting together may both add a rule: the one that loses reads it again."""
        if not declared and not self._any_of_code():
            return  # nothing to add, rewrite, delete or rename: no write transaction
        for attempt in range(3):
            try:
                self._sync_code(declared, now)
                return
            except integrity_errors():
                if attempt == 2:
                    raise ConfigError("notify: the rules of the code could not be written (a name taken)") from None

    def _any_of_code(self) -> bool:
        db = self.db
        with db.cursor() as cur:
            cur.execute(db.sql("SELECT id FROM notify_rules WHERE origin = ? LIMIT 1"), (CODE,))
            return cur.fetchone() is not None

    def _sync_code(self, declared: Mapping[str, Rule], now: datetime) -> None:
        wanted: dict[str, tuple[Any, ...]] = {}  # name: the values of `_DECLARED`
        for name, rule in declared.items():
            for index, target in enumerate(rule.to):
                key = f"{name}#{index}" if len(rule.to) > 1 else name
                wanted[key] = (events_text(rule.on), rule.scope_json(), target, rule.longer_than, True)
        db = self.db
        with db.write_cursor() as cur:
            # The code's names are the code's: a rule made in the UI under one of them (a subscription
            # named "task:x" before the code declared it) is renamed, not let stop the server's start.
            if wanted:
                cur.execute(
                    db.sql(f"SELECT id, name FROM notify_rules WHERE origin <> ? AND name IN ({marks(len(wanted))})"),
                    (CODE, *wanted),
                )
                for rule_id, name in cur.fetchall():
                    renamed = f"{name[:150]} (renamed: rule {rule_id})"
                    cur.execute(db.sql("UPDATE notify_rules SET name = ? WHERE id = ?"), (renamed, rule_id))
                    log.warning(
                        "notify: the code declares a rule named %r: the UI's rule %d is now %r", name, rule_id, renamed
                    )
            cur.execute(db.sql(f"SELECT id, name, {_DECLARED} FROM notify_rules WHERE origin = ?"), (CODE,))
            have = {
                name: (rule_id, (events, json_out(scope), target, longer_than, bool(enabled)))
                for rule_id, name, events, scope, target, longer_than, enabled in cur.fetchall()
            }
            for key, values in wanted.items():
                old = have.pop(key, None)
                written = (values[0], json_text(values[1]), *values[2:])
                if old is None:
                    cur.execute(
                        db.sql(
                            f"INSERT INTO notify_rules (name, origin, created_by, created_at, {_DECLARED}) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        ),
                        (key, CODE, "code", db.codec.time(now), *written),
                    )
                elif old[1] != values:
                    cur.execute(
                        db.sql(
                            "UPDATE notify_rules SET events = ?, scope = ?, target = ?, longer_than = ?, enabled = ? "
                            "WHERE id = ?"
                        ),
                        (*written, old[0]),
                    )
            for rule_id, _values in have.values():
                cur.execute(db.sql("DELETE FROM notify_rules WHERE id = ?"), (rule_id,))

    def add(
        self,
        *,
        name: str,
        origin: str,
        owner: str | None,
        events: Sequence[str],
        scope: Mapping[str, Sequence[str]],
        target: str,
        secret: str | None,
        longer_than: float | None,
        created_by: str,
        now: datetime,
    ) -> StoredRule:
        unknown = sorted(set(events) - KINDS.keys())
        if unknown or not events:
            raise ValidationError(
                f"events: unknown {unknown}; known: {', '.join(KINDS)}", [{"field": "events", "message": "unknown"}]
            )
        if "job.long" in events and not longer_than:
            raise ValidationError("longer_than: a 'job.long' rule needs it", [{"field": "longer_than"}])
        clean = {k: [str(v) for v in scope.get(k, [])] for k in SCOPES if scope.get(k)}
        try:
            ((new_id,),) = self.db.run_returning(
                "INSERT INTO notify_rules (name, origin, owner, events, scope, target, secret, longer_than, enabled, "
                "created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    name,
                    origin,
                    owner,
                    events_text(events),
                    json_text(clean),
                    target,
                    secret or None,
                    longer_than,
                    True,
                    created_by,
                    self.db.codec.time(now),
                ),
            )
        except integrity_errors():
            raise ValidationError(
                f"name: a rule named {name[:100]!r} exists", [{"field": "name", "message": "taken"}]
            ) from None
        return self.get(int(new_id))

    def delete(self, rule_id: int) -> None:
        self.db.run("DELETE FROM notify_rules WHERE id = ?", (rule_id,))
