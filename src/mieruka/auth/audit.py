"""The audit log: who did what, to which target, when, from which address, and its detail.

Record an entry from a route with one line: `audit(request, "source.refresh", f"source:{name}")`
(see mieruka.web.audit.audit); from elsewhere, `AuditLog.record(...)`.

An entry about a job says what was done (`job_detail`): the task, its parameters as they may be
kept (`shown_params`: secrets hidden, files by name and size, long text cut), the outcome and the
duration. An entry's detail is at most MAX_DETAIL bytes of JSON (`capped`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

import orjson

from ..core.clock import utcnow
from ..redaction import HIDDEN, secret_name, without_passwords
from ..store.codec import MAX_INT, json_out, json_text, time_of, time_out
from ..store.database import Database

_INSERT = "INSERT INTO audit_log (at, actor, action, target, address, detail) VALUES (?, ?, ?, ?, ?, ?)"
_PRUNE = "DELETE FROM audit_log WHERE at < ?"
_COLUMNS = "id, at, actor, action, target, address, detail"
# The task an entry about a job names in its detail, as text (SQLAlchemy's `detail["task"].as_string()`).
_TASK = {
    True: "CAST(json_extract(detail, '$.\"task\"') AS VARCHAR)",
    False: "CAST((detail ->> 'task') AS VARCHAR)",
}
NewEntry = tuple[str, str, str, str, datetime, dict[str, Any] | None]  # actor, action, target, address, at, detail


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
    task: str | None = None  # the task an entry about a job names in its detail
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
        cur: Any = None,
    ) -> None:
        """Add an entry; given `cur`, a DB-API cursor of this database's write transaction under
        way (`Database.write_cursor()`), in that transaction (it is then committed with the rest)."""
        db = self.db
        now = utcnow()
        prune = self._prune_due(now)
        with nullcontext(cur) if cur is not None else db.write_cursor(single=not prune) as writing:
            self.write_on(writing, [(actor, action, target, address, at or now, detail)])
            if prune:
                writing.execute(db.sql(_PRUNE), (db.codec.time(self._oldest_kept(now)),))

    def record_many(self, entries: Sequence[NewEntry]) -> None:
        """Add entries (actor, action, target, address, at, detail) in one transaction, on the
        store's DB-API cursor: a request's automatic entry costs a tenth of SQLAlchemy's insert."""
        with self.db.write_cursor(single=len(entries) == 1) as cur:
            self.write_on(cur, entries)
        self.tidy()

    def write_on(self, cur: Any, entries: Sequence[NewEntry]) -> None:
        """Add entries in a transaction of this database that is under way, on its DB-API cursor
        (a submitted job's: the entry is stored with its job or not at all); `tidy()` once it is
        committed."""
        db = self.db
        rows = [
            (
                db.codec.time(at),
                actor[:100],
                action[:100],
                target[:300],
                address[:64],
                json_text(capped(detail)) if detail else None,
            )
            for actor, action, target, address, at, detail in entries
        ]
        if len(rows) == 1:
            cur.execute(db.sql(_INSERT), rows[0])
        else:
            cur.executemany(db.sql(_INSERT), rows)

    def tidy(self) -> None:
        """The log stays bounded: entries older than the retention go, checked hourly."""
        now = utcnow()
        if self._prune_due(now):
            db = self.db
            db.run(_PRUNE, (db.codec.time(self._oldest_kept(now)),))

    def _prune_due(self, now: datetime) -> bool:
        if self._pruned is not None and now - self._pruned <= timedelta(hours=1):
            return False
        self._pruned = now
        return True

    def _oldest_kept(self, now: datetime) -> datetime:
        return now - timedelta(seconds=self.retention)

    def query(self, q: AuditQuery) -> list[Entry]:
        """The entries that meet every condition of `q`, newest first. The action's prefix and the
        target's text match as LIKE does on each backend (SQLite: ASCII letters in either case)."""
        db = self.db
        where: list[str] = []
        args: list[Any] = []
        if q.actor:
            where.append("actor = ?")
            args.append(q.actor)
        if q.action:
            if q.action.endswith("."):
                where.append("action LIKE ? ESCAPE '/'")
                args.append(_like_escaped(q.action) + "%")
            else:
                where.append("action = ?")
                args.append(q.action)
        if q.target:
            where.append("target LIKE ? ESCAPE '/'")
            args.append("%" + _like_escaped(q.target) + "%")
        if q.task:
            where.append(f"{_TASK[db.is_sqlite]} = ?")
            args.append(q.task)
        if q.since:
            where.append("at >= ?")
            args.append(db.codec.time(q.since))
        if q.until:
            where.append("at < ?")
            args.append(db.codec.time(q.until))
        if q.before_id:  # an id out of PostgreSQL's range is an error there, not "no match"
            if q.before_id <= MAX_INT:
                where.append("id < ?")
                args.append(max(q.before_id, -MAX_INT))
            else:
                where.append("id <= ?")
                args.append(MAX_INT)
        condition = f"WHERE {' AND '.join(where)} " if where else ""
        rows = db.rows(f"SELECT {_COLUMNS} FROM audit_log {condition}ORDER BY id DESC LIMIT ?", [*args, q.limit])
        return [
            Entry(entry_id, time_of(at), actor, action, target, address, json_out(detail))
            for entry_id, at, actor, action, target, address, detail in rows
        ]

    def count(self, action: str, since: datetime, *, actor: str | None = None, address: str | None = None) -> int:
        db = self.db
        where = "action = ? AND at >= ?"
        args: list[Any] = [action, db.codec.time(since)]
        if actor is not None:
            where += " AND actor = ?"
            args.append(actor)
        if address is not None:
            where += " AND address = ?"
            args.append(address)
        found = db.row(f"SELECT count(*) FROM audit_log WHERE {where}", args)
        return int(found[0]) if found is not None else 0

    def last(self, action: str, actor: str) -> datetime | None:
        found = self.db.row("SELECT max(at) FROM audit_log WHERE action = ? AND actor = ?", (action, actor))
        return time_out(found[0]) if found is not None else None


def _like_escaped(text: str) -> str:
    """`text` as a LIKE pattern that matches it literally (escape character "/", as SQLAlchemy's
    autoescape)."""
    return text.replace("/", "//").replace("%", "/%").replace("_", "/_")


MAX_DETAIL = 4096  # bytes of JSON in one entry's detail
MAX_TEXT = 200  # characters of one text value kept
MAX_ITEMS = 20  # items of one list or object kept
MAX_DEPTH = 4


def shown_params(
    params: Mapping[str, Any], secret: Collection[str] = (), files: Collection[str] = ()
) -> dict[str, Any]:
    """Parameters as the audit log keeps them: the values of `secret` names and of names that look
    secret hidden (at any depth), the `files` parameters as {"file": name, "size": bytes}, long
    text and long lists cut."""
    shown: dict[str, Any] = {}
    for name, value in list(params.items())[: MAX_ITEMS * 5]:
        if name in secret or secret_name(str(name)):
            shown[_cut(str(name))] = HIDDEN
        elif name in files:
            shown[_cut(str(name))] = _file(value)
        else:
            shown[_cut(str(name))] = _shown(value, 1)
    if len(params) > MAX_ITEMS * 5:
        shown["..."] = f"{len(params) - MAX_ITEMS * 5} more"
    return shown


def _file(value: Any) -> Any:
    if isinstance(value, list):
        return [_file(item) for item in value[:MAX_ITEMS]]
    if isinstance(value, Mapping) and "filename" in value:
        return {"file": _cut(str(value["filename"])), "size": value.get("size")}
    return None if value is None else "(file)"


def _shown(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _cut(without_passwords(value))
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= MAX_DEPTH:
        return "(...)"
    if isinstance(value, Mapping):
        kept = list(value.items())[:MAX_ITEMS]
        shown = {_cut(str(k)): HIDDEN if secret_name(str(k)) else _shown(v, depth + 1) for k, v in kept}
        if len(value) > MAX_ITEMS:
            shown["..."] = f"{len(value) - MAX_ITEMS} more"
        return shown
    if isinstance(value, list | tuple):
        items = [_shown(item, depth + 1) for item in value[:MAX_ITEMS]]
        return items + [f"... {len(value) - MAX_ITEMS} more"] if len(value) > MAX_ITEMS else items
    return _cut(str(value))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"


def job_detail(
    task: str, params: Mapping[str, Any], secret: Collection[str] = (), files: Collection[str] = (), **more: Any
) -> dict[str, Any]:
    """The detail of an entry about a job: `job_detail("add", {"a": 1}, job=7, outcome="accepted")`."""
    return {"task": task, "params": shown_params(params, secret, files), **more}


def capped(detail: dict[str, Any]) -> dict[str, Any]:
    """The detail within MAX_DETAIL bytes of JSON: the parameters are the first to go (their size
    said instead), then every value that is not a plain number, word or flag."""
    size = _size(detail)
    if size <= MAX_DETAIL:
        return detail
    if "params" in detail:
        detail = {**detail, "params": f"(left out: {_size(detail['params']):,} bytes)"}
        if _size(detail) <= MAX_DETAIL:
            return detail
    small = {k: v for k, v in list(detail.items())[:50] if _small(v)}
    return {**small, "(left out)": f"{size:,} bytes"}


def _small(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and len(value) <= 64)


def _size(value: Any) -> int:
    try:
        return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:  # an integer past 64 bits, among others
        return len(json.dumps(value, ensure_ascii=False, default=str).encode())


@dataclass(frozen=True)
class Described:
    """An entry's detail for people: the task, the parameters on one line, the outcome, the
    duration (seconds) and whatever else it holds."""

    task: str
    params: str
    outcome: str
    duration: float | None
    job: int | None
    rest: str


def describe(detail: Mapping[str, Any] | None) -> Described:
    detail = dict(detail or {})
    task = detail.pop("task", None)
    params = detail.pop("params", None)
    outcome = detail.pop("outcome", None)
    duration = detail.pop("duration", None)
    job = detail.pop("job", None)
    return Described(
        task=str(task) if task is not None else "",
        params=_params_text(params),
        outcome=str(outcome) if outcome is not None else "",
        duration=float(duration) if isinstance(duration, int | float) and not isinstance(duration, bool) else None,
        job=job if isinstance(job, int) and not isinstance(job, bool) else None,
        rest=", ".join(f"{k}={_value_text(v)}" for k, v in detail.items()),
    )


def _params_text(params: Any) -> str:
    if isinstance(params, Mapping):
        return ", ".join(f"{k}={_value_text(v)}" for k, v in params.items())
    if isinstance(params, list):  # a batch's: one set per job
        return "; ".join(_params_text(p) for p in params)
    return "" if params is None else str(params)


def _value_text(value: Any) -> str:
    if value == HIDDEN:
        return HIDDEN
    if isinstance(value, Mapping) and set(value) == {"file", "size"}:
        return f"{value['file']} ({value['size']:,} bytes)" if isinstance(value["size"], int) else str(value["file"])
    if isinstance(value, list) and value and all(isinstance(v, Mapping) and set(v) == {"file", "size"} for v in value):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def to_csv(entries: Iterable[Entry], zone: tzinfo | None = None) -> str:
    """The entries as CSV: the stored columns (detail as JSON), then the time in `zone` and the
    detail's parts in columns of their own."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "at_utc", "actor", "action", "target", "address", "detail", "at_local"]
        + ["task", "params", "outcome", "duration_s", "job", "other"]
    )
    for e in entries:
        d = describe(e.detail)
        local = e.at.astimezone(zone).isoformat(sep=" ") if zone is not None else ""
        writer.writerow(
            [e.id, e.json()["at"], _safe(e.actor), e.action, _safe(e.target), e.address, _safe(_detail(e.detail))]
            + [local, _safe(d.task), _safe(d.params), _safe(d.outcome), "" if d.duration is None else d.duration]
            + ["" if d.job is None else d.job, _safe(d.rest)]
        )
    return out.getvalue()


def _detail(detail: dict[str, Any] | None) -> str:
    return json.dumps(detail, ensure_ascii=False) if detail else ""


def _safe(value: str) -> str:
    # A cell starting with = + - @ is a formula to a spreadsheet: defuse it (CSV injection).
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
