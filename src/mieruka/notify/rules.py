"""Notification rules as declared: what happened (the event kinds), where to say it (targets), and
what it is about (tasks, tags, pools, sources). I/O-free: `core/task.py` reads these.

    @app.task(notify=mieruka.notify.on_failure("mail:ops@example.org"))
    @app.task(notify={"failed": "mail:ops@example.org", "long": "slack:https://hooks...", "longer_than": "10m"})
    app.notify(mieruka.notify.on_pool_change("teams:https://..."), pools=["gpu"])

A target is `<channel>:<address>`: `mail:` one or more addresses (comma separated), `webhook:` a URL
that gets a JSON body signed with HMAC-SHA256, `slack:`, `teams:` or `mattermost:` an incoming
webhook URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..durations import parse_duration
from ..errors import ConfigError
from ..i18n import N_

# Each kind of event a rule may ask for, and what it says in a message.
KINDS: dict[str, str] = {
    "job.failed": N_("a job failed"),
    "job.succeeded": N_("a job succeeded"),
    "job.long": N_("a job is running longer than the rule's limit"),
    "job.last_retry": N_("a job failed and its last attempt is queued"),
    "schedule.missed": N_("a scheduled run did not start on time (the server was down)"),
    "source.failing": N_("a data source started failing"),
    "source.recovered": N_("a data source works again"),
    "pool.started": N_("a compute pool started"),
    "pool.stopped": N_("a compute pool stopped"),
    "node.down": N_("a server or worker node stopped answering"),
}
# The short names of the dict form and the forms' own words.
SHORT = {
    "failed": "job.failed",
    "succeeded": "job.succeeded",
    "long": "job.long",
    "last_retry": "job.last_retry",
    "missed": "schedule.missed",
    "source_failing": "source.failing",
    "source_recovered": "source.recovered",
    "pool_started": "pool.started",
    "pool_stopped": "pool.stopped",
    "node_down": "node.down",
}
CHANNELS = ("mail", "webhook", "slack", "teams", "mattermost")
SCOPES = ("tasks", "tags", "pools", "sources")
_MAIL = re.compile(r"[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+")


@dataclass(frozen=True)
class Rule:
    """Send to each of `to` when an event of `on` happens within the scope (empty: everything)."""

    on: frozenset[str]
    to: tuple[str, ...]
    longer_than: float | None = None
    tasks: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(self.on - KINDS.keys())
        if unknown or not self.on:
            raise ConfigError(f"notify: unknown events {unknown}; known: {', '.join(KINDS)}")
        if not self.to:
            raise ConfigError("notify: a rule needs at least one target, e.g. 'mail:ops@example.org'")
        for target in self.to:
            check_target(target)
        if "job.long" in self.on and not self.longer_than:
            raise ConfigError("notify: a 'long' rule needs longer_than, e.g. '10m'")

    def scoped(
        self,
        tasks: Sequence[str] = (),
        tags: Sequence[str] = (),
        pools: Sequence[str] = (),
        sources: Sequence[str] = (),
    ) -> Rule:
        """The rule within these tasks, tags, pools and sources (an empty one keeps the rule's own)."""
        return replace(
            self,
            tasks=tuple(tasks) or self.tasks,
            tags=tuple(tags) or self.tags,
            pools=tuple(pools) or self.pools,
            sources=tuple(sources) or self.sources,
        )

    def scope_json(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in SCOPES if getattr(self, name)}


def check_target(target: str) -> str:
    """The target if it is `<channel>:<address>` with a known channel and a usable address."""
    channel, _, address = target.partition(":")
    if channel not in CHANNELS or not address:
        raise ConfigError(f"notify: target {target[:200]!r} must be one of {', '.join(c + ':...' for c in CHANNELS)}")
    if channel == "mail":
        for one in address.split(","):
            if not _MAIL.fullmatch(one.strip()):
                raise ConfigError(f"notify: {one.strip()[:200]!r} is not an e-mail address")
    elif not address.startswith(("https://", "http://")):
        raise ConfigError(f"notify: the {channel} target needs an http(s) URL, got {address[:200]!r}")
    return target


def rule(on: Iterable[str], *to: str, longer_than: str | float | None = None) -> Rule:
    """A rule for any events: `rule(["failed", "last_retry"], "mail:ops@example.org")`."""
    kinds = frozenset(SHORT.get(kind, kind) for kind in on)
    return Rule(on=kinds, to=tuple(to), longer_than=parse_duration(longer_than))


def on_failure(*to: str) -> Rule:
    """Tell `to` when a job fails (its last attempt: a job that will be retried has not failed yet)."""
    return rule(["job.failed"], *to)


def on_success(*to: str) -> Rule:
    return rule(["job.succeeded"], *to)


def on_long_run(longer_than: str | float, *to: str) -> Rule:
    """Tell `to` once when a job has been running longer than `longer_than` ("10m")."""
    return rule(["job.long"], *to, longer_than=longer_than)


def on_last_retry(*to: str) -> Rule:
    return rule(["job.last_retry"], *to)


def on_missed_run(*to: str) -> Rule:
    return rule(["schedule.missed"], *to)


def on_source_change(*to: str) -> Rule:
    """Tell `to` when a data source starts failing and when it recovers."""
    return rule(["source.failing", "source.recovered"], *to)


def on_pool_change(*to: str) -> Rule:
    return rule(["pool.started", "pool.stopped"], *to)


def on_node_down(*to: str) -> Rule:
    return rule(["node.down"], *to)


def task_rules(notify: Any, task: str) -> tuple[Rule, ...]:
    """A task's `notify=`: a Rule, a list of them, or the dict form
    {"failed": targets, "long": targets, "longer_than": "10m", ...}; each scoped to the task."""
    if notify is None:
        return ()
    if isinstance(notify, Rule):
        found: list[Rule] = [notify]
    elif isinstance(notify, Mapping):
        found = _from_mapping(notify)
    elif isinstance(notify, list | tuple) and all(isinstance(r, Rule) for r in notify):
        found = list(notify)
    else:
        raise ConfigError(f"task {task!r}: notify= takes a rule (mieruka.notify.on_failure(...)), a list or a dict")
    return tuple(r.scoped(tasks=[task]) for r in found)


def _from_mapping(notify: Mapping[str, Any]) -> list[Rule]:
    longer_than = notify.get("longer_than")
    found = []
    for key, targets in notify.items():
        if key == "longer_than":
            continue
        if key not in SHORT:
            raise ConfigError(f"notify: unknown key {key!r}; use {', '.join([*SHORT, 'longer_than'])}")
        to = (targets,) if isinstance(targets, str) else tuple(targets)
        found.append(rule([key], *to, longer_than=longer_than if key == "long" else None))
    if longer_than is not None and "long" not in notify:
        raise ConfigError("notify: longer_than needs a 'long' key naming whom to tell")
    return found
