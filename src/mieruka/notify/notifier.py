"""The delivery loop of one server: writes the events it observes (long jobs, silent nodes, data
sources failing and recovering), routes the outbox into messages and sends the messages that are
due. Every server sharing a database runs one; they share the work through the database."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..core.access import Principal, allowed
from ..core.clock import utcnow
from ..core.dashboards import Dashboard
from ..core.task import TaskRegistry
from ..errors import NotFoundError
from ..settings import Settings
from ..store.codec import json_out
from ..store.database import Database
from ..store.outage import is_outage, reason
from . import deliveries, outbox
from .channels import Channels, SendError, Smtp, send
from .messages import Event, compose
from .rulebook import Rulebook, StoredRule
from .rules import Rule

log = logging.getLogger("mieruka.notify")
LEASE = 60.0  # seconds a server holds a message it sends before another may try it
PRUNE_EVERY = 3600.0  # seconds between the deletions of old messages


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    ok: bool
    error: str | None = None


def channels_from(settings: Settings) -> Channels:
    smtp = Smtp(
        host=settings.notify_smtp_host,
        port=settings.notify_smtp_port,
        user=settings.notify_smtp_user,
        password=settings.notify_smtp_password,
        starttls=settings.notify_smtp_starttls,
        sender=settings.notify_smtp_from,
        timeout=settings.notify_webhook_timeout,
        ca_file=settings.notify_ca_file,
    )
    return Channels(
        smtp=smtp,
        webhook_timeout=settings.notify_webhook_timeout,
        webhook_secret=settings.notify_webhook_secret,
        ca_file=settings.notify_ca_file,
    )


class Notifier:
    """`declared`: the rules of the app's code by name; `listener(user)`: a subscription's owner as
    they may see now (None: they hear nothing), asked once per round before routing, since it may
    ask a directory, which routing (under the database's lock) must not wait for; `dashboards`:
    the app's, which a data source's message links."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        tasks: TaskRegistry,
        declared: Mapping[str, Rule],
        listener: Callable[[str], Principal | None],
        dashboards: Iterable[Dashboard] = (),
    ) -> None:
        self.db = db
        self.dashboards = dashboards
        self.settings = settings
        self.tasks = tasks
        self.declared = declared
        self.listener = listener
        self._listeners: dict[str, Principal | None] = {}  # this round's owners of subscriptions
        self.rulebook = Rulebook(db)
        self.channels = channels_from(settings)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failing: dict[str, bool] = {}  # source -> failing at its last refresh
        self._observed: set[str] = set()  # keys of the events this server wrote (long jobs, silent nodes)
        self._pruned_at = float("-inf")  # the first round prunes (a monotonic clock may read less than an hour)

    # -- life ----------------------------------------------------------------------------------
    def start(self) -> None:
        self.rulebook.sync_code(self.declared, utcnow())
        self._thread = threading.Thread(target=self._loop, name="mieruka-notify", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.notify_webhook_timeout + 5)
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping:
            try:
                self.run_once()
            except Exception as exc:
                if is_outage(exc):  # a moment, said in one line, as the engine says it
                    log.warning("notifications: the database does not answer (%s); trying again", reason(exc))
                else:
                    log.exception("notifications: a round failed; trying again")
            self._wake.wait(self.settings.notify_poll_interval)
            self._wake.clear()

    # -- one round -----------------------------------------------------------------------------
    def run_once(self, now: datetime | None = None) -> list[Outcome]:
        """Observe, route and send what is due; returns what each send did."""
        now = now or utcnow()
        rules = self.rulebook.all()
        self._observe(rules, now)
        if time.monotonic() - self._pruned_at > PRUNE_EVERY:
            self._pruned_at = time.monotonic()
            deliveries.prune(self.db, now - timedelta(seconds=self.settings.notify_retention))
        owners = {rule.owner for rule in rules if rule.enabled and rule.owner is not None}
        self._listeners = (
            {owner: self._listener(owner) for owner in owners} if owners and deliveries.unrouted(self.db) else {}
        )
        while deliveries.route(self.db, rules, self._matches, now, self.settings.notify_digest_window):
            pass
        return [self._send(claimed, rules) for claimed in deliveries.claim(self.db, now, LEASE)]

    def _observe(self, rules: list[StoredRule], now: datetime) -> None:
        limits: dict[str | None, float] = {}
        for rule in rules:
            if rule.enabled and "job.long" in rule.events and rule.longer_than:
                tasks: list[str | None] = [*rule.scope.get("tasks", [])] or [None]
                for task in tasks:
                    limits[task] = min(limits.get(task, rule.longer_than), rule.longer_than)
        found = outbox.long_jobs(self.db, limits, now)
        if any(rule.enabled and "node.down" in rule.events for rule in rules):
            found += outbox.silent_nodes(self.db, self.settings.engine_stale_after, now)
        found = [event for event in found if event.key not in self._observed]
        if found:  # a key already written is left alone by the database too: this saves the write
            outbox.record(self.db, found, now)
            self._observed.update(event.key for event in found)

    def _matches(self, rule: StoredRule, event: Event) -> bool:
        if not rule.matches(event.kind, event.subject, event.task, self._tags):
            return False
        if rule.owner is None:
            return True
        task = event.task or (event.subject if event.kind.startswith("schedule.") else None)
        if task is None or task not in self.tasks:
            return False
        if rule.owner not in self._listeners:  # events came after this round's look at the owners
            self._listeners[rule.owner] = self._listener(rule.owner)
        who = self._listeners[rule.owner]
        return who is not None and allowed(who, self.tasks.get(task).allow)

    def _listener(self, owner: str) -> Principal | None:
        """The owner as they may see now; one whose look-up fails hears nothing this round, and
        the others still do."""
        try:
            return self.listener(owner)
        except Exception:
            log.exception("notifications: could not tell what %s may see; their subscriptions skip this round", owner)
            return None

    def _tags(self, task: str) -> tuple[str, ...]:
        return self.tasks.get(task).tags if task in self.tasks else ()

    def _send(self, claimed: deliveries.Claimed, rules: list[StoredRule]) -> Outcome:
        now = utcnow()
        rule = next((r for r in rules if r.id == claimed.rule_id), None)
        if rule is None:
            try:
                rule = self.rulebook.get(claimed.rule_id)
            except NotFoundError:
                return Outcome(claimed.id, False, "its rule was deleted")
        events = [] if claimed.test else deliveries.events_of(self.db, claimed.id)
        about_sources = any(event.kind.startswith("source.") for event in events)
        message = compose(
            events,
            self.settings.served_url,
            claimed.key,
            rule.name,
            self._task_map(),
            self._params,
            self.settings.zone,
            self.dashboards,
            self._listener(rule.owner) if rule.owner is not None and about_sources else None,
        )
        try:
            send(self.channels, rule.target, message, rule.secret)
        except SendError as exc:
            wait = deliveries.backoff(claimed.attempts + 1, self.settings.notify_retry_after)
            again = deliveries.failed(self.db, claimed, now, str(exc), wait, self.settings.notify_max_attempts)
            log.warning(
                "notification %d (rule %s) not sent%s: %s",
                claimed.id,
                rule.name,
                f", again in {wait:g}s" if again else "",
                exc,
            )
            return Outcome(claimed.id, False, str(exc))
        deliveries.sent(self.db, claimed, utcnow())
        return Outcome(claimed.id, True)

    def _task_map(self) -> dict[str, Any]:
        return {task.name: task for task in self.tasks}

    def _params(self, job_id: int) -> Mapping[str, Any] | None:
        row = self.db.row("SELECT params FROM jobs WHERE id = ?", (job_id,))
        found = None if row is None else json_out(row[0])
        return found if isinstance(found, dict) else None

    # -- what a server observes ------------------------------------------------------------------
    def on_source(self, name: str, error: str | None, error_at: datetime | None) -> None:
        """A data source's refresh ended: failing now and not before, or working again."""
        was = self._failing.get(name, False)
        self._failing[name] = error is not None
        if error is not None and not was:
            at = (error_at or utcnow()).isoformat()
            event = outbox.NewEvent("source.failing", f"source.failing:{name}:{at}", name, error)
        elif error is None and was:
            at = utcnow().isoformat()
            event = outbox.NewEvent("source.recovered", f"source.recovered:{name}:{at}", name, None)
        else:
            return
        try:
            outbox.record(self.db, [event], utcnow())
        except Exception:
            log.exception("notifications: could not record %s", event.key)
        self.wake()

    def test(self, rule_id: int) -> int:
        """Queue a test message of the rule, sent within a poll interval; returns its id."""
        self.rulebook.get(rule_id)
        found = deliveries.add_test(self.db, rule_id, utcnow())
        self.wake()
        return found
