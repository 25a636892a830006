"""Notifications in the web: the rules and the messages sent (`/api/notifications`, the page
/notifications), rules made and deleted, and a rule's test message.

Admins see and manage every rule (those declared in code are shown, not deleted: the code says
them) and every message. Any signed-in user may subscribe themselves: a rule of their own, about
jobs of the tasks they may see (allow lists apply when each event is routed, so a task hidden later
is not told of), sent to their address (or a webhook on a host `notify_user_webhook_hosts` allows);
they see their own rules and messages only. A
rule's webhook secret is never shown, and a webhook's URL only up to its host (its path is often
the credential).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..core.access import Principal, Role, allowed
from ..core.clock import utcnow
from ..durations import parse_duration
from ..errors import ConfigError, ConflictError, MierukaError, NotFoundError, ValidationError
from ..i18n import _
from ..notify import deliveries
from ..notify.rulebook import ADMIN, CODE, USER, StoredRule
from ..notify.rules import KINDS, SCOPES, check_target
from .audit import audit
from .identity import principal
from .routers import Router
from .serialize import iso
from .state import RuntimeDep, pages_of

if TYPE_CHECKING:
    from ..runtime import Runtime

RULE_ID = "{rule_id:id}"
# What a user's own subscription may ask for: its tasks' jobs and runs (pools, sources and nodes
# are the admins').
USER_KINDS = ("job.failed", "job.succeeded", "job.long", "job.last_retry", "schedule.missed")


class RuleIn(BaseModel):
    name: str = Field("", max_length=100, description="A name for the rule; empty: one is made.")
    events: list[str] = Field(min_length=1, max_length=20, description=f"Event kinds: {', '.join(KINDS)}.")
    target: str = Field(
        min_length=3, max_length=2000, description="mail:a@b.org, webhook:https://..., slack:, teams:, mattermost:"
    )
    tasks: list[str] = Field(default_factory=list, max_length=200, description="Only these tasks (empty: all).")
    tags: list[str] = Field(default_factory=list, max_length=50, description="Only tasks with one of these tags.")
    pools: list[str] = Field(default_factory=list, max_length=50, description="Only these pools (admins).")
    sources: list[str] = Field(default_factory=list, max_length=50, description="Only these sources (admins).")
    longer_than: str | float | None = Field(None, description="For job.long: e.g. '10m'.")
    secret: str = Field("", max_length=200, description="The generic webhook's HMAC key (never shown again).")


def rule_json(rule: StoredRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": rule.name,
        "origin": rule.origin,
        "owner": rule.owner,
        "events": sorted(rule.events),
        "scope": rule.scope,
        "target": rule.shown_target(),
        "signed": bool(rule.secret),
        "longer_than": rule.longer_than,
        "enabled": rule.enabled,
        "created_by": rule.created_by,
        "created_at": iso(rule.created_at),
    }


def delivery_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "rule_id": row["rule_id"],
        "rule": row["rule"],
        "status": row["status"],
        "test": bool(row["test"]),
        "events": row["events"],
        "attempts": row["attempts"],
        "created_at": iso(row["created_at"]),
        "due_at": iso(row["due_at"]),
        "sent_at": iso(row["sent_at"]),
        "last_error": row["last_error"],
    }


def visible_rules(runtime: Runtime, who: Principal) -> list[StoredRule]:
    rulebook = runtime.notifier.rulebook
    return rulebook.all() if who.role is Role.ADMIN else rulebook.all(owner=who.name)


def overview(runtime: Runtime, who: Principal, page: bool = False) -> dict[str, Any]:
    """What `who` is shown: as JSON, or for the page (times as times, shown in the configured zone)."""
    rules = visible_rules(runtime, who)
    ids = None if who.role is Role.ADMIN else [r.id for r in rules]
    sent = deliveries.listing(runtime.database, ids) if ids is None or ids else []
    found: dict[str, Any] = {
        "rules": [rule_json(r) for r in rules],
        "deliveries": sent if page else [delivery_json(d) for d in sent],
    }
    if who.role is Role.ADMIN:
        found["counts"] = deliveries.counts(runtime.database)
    return found


def own_rule(runtime: Runtime, who: Principal, rule_id: int) -> StoredRule:
    """The rule, if `who` may act on it (an admin any, a user their own); else not found."""
    try:
        rule = runtime.notifier.rulebook.get(rule_id)
    except NotFoundError:
        rule = None
    if rule is None or (who.role is not Role.ADMIN and rule.owner != who.name):
        raise NotFoundError(_("no notification rule %(id)s", id=rule_id))
    return rule


def create_rule(runtime: Runtime, request: Request, body: RuleIn) -> StoredRule:
    who = principal(request)
    admin = who.role is Role.ADMIN
    try:
        target = check_target(body.target.strip())
        longer_than = parse_duration(body.longer_than)
    except ConfigError as exc:
        raise ValidationError(exc.message, [{"field": "target", "message": exc.message}]) from None
    events = list(dict.fromkeys(body.events))
    if not admin:
        outside = [kind for kind in events if kind not in USER_KINDS]
        if outside or body.pools or body.sources:
            raise ValidationError(
                _(
                    "events: a subscription may ask for %(kinds)s only (pools, sources and nodes are for admins)",
                    kinds=", ".join(USER_KINDS),
                ),
                [{"field": "events", "message": "not for subscriptions"}],
            )
        _check_user_target(runtime, target)
        hidden = [name for name in body.tasks if name not in runtime.tasks or not _sees(runtime, who, name)]
        if hidden:
            raise ValidationError(
                _("tasks: no task named %(name)s", name=repr(hidden[0][:100])),
                [{"field": "tasks", "message": "unknown"}],
            )
    elif unknown := [name for name in body.tasks if name not in runtime.tasks]:
        raise ValidationError(
            _("tasks: no task named %(name)s", name=repr(unknown[0][:100])), [{"field": "tasks", "message": "unknown"}]
        )
    scope = {k: getattr(body, k) for k in SCOPES if getattr(body, k)}
    name = body.name.strip() or f"{who.name}:{utcnow():%Y%m%d%H%M%S%f}"
    rule = runtime.notifier.rulebook.add(
        name=name,
        origin=ADMIN if admin else USER,
        owner=None if admin else who.name,
        events=events,
        scope=scope,
        target=target,
        secret=body.secret or None,
        longer_than=longer_than,
        created_by=who.name,
        now=utcnow(),
    )
    audit(request, "notify.rule_create", f"notify_rule:{rule.id}", name=rule.name, events=sorted(rule.events))
    return rule


def _check_user_target(runtime: Runtime, target: str) -> None:
    """A user's own subscription calls no URL an admin did not allow: a webhook would make the
    server send requests wherever its user likes (its own network, a cloud's metadata address)."""
    channel, _colon, address = target.partition(":")
    if channel == "mail":
        return
    hosts = {h.strip().lower() for h in runtime.settings.notify_user_webhook_hosts.split(",") if h.strip()}
    host = (urlsplit(address).hostname or "").lower()
    if host not in hosts:
        message = (
            _(
                "target: a subscription may send to the hosts allowed: %(hosts)s; ask an admin for a webhook rule",
                hosts=", ".join(sorted(hosts)),
            )
            if hosts
            else _("target: a subscription may send to e-mail only (mail:...); ask an admin for a webhook rule")
        )
        raise ValidationError(
            message,
            [{"field": "target", "message": "host not allowed"}],
        )


def _sees(runtime: Runtime, who: Principal, task: str) -> bool:
    return allowed(who, runtime.tasks.get(task).allow)


def delete_rule(runtime: Runtime, request: Request, rule_id: int) -> StoredRule:
    rule = own_rule(runtime, principal(request), rule_id)
    if rule.origin == CODE:
        raise ConflictError(_("rule %(name)s is declared in the app's code: change it there", name=repr(rule.name)))
    runtime.notifier.rulebook.delete(rule.id)
    audit(request, "notify.rule_delete", f"notify_rule:{rule.id}", name=rule.name)
    return rule


def test_rule(runtime: Runtime, request: Request, rule_id: int) -> int:
    rule = own_rule(runtime, principal(request), rule_id)
    delivery = runtime.notifier.test(rule.id)
    audit(request, "notify.test", f"notify_rule:{rule.id}", name=rule.name, delivery=delivery)
    return delivery


router = Router(tags=["notifications"])


@router.get("/api/notifications")
def list_notifications(runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """The rules and the newest messages: every one for admins (with counts by status), a user's
    own subscriptions and their messages for anyone else."""
    return overview(runtime, principal(request))


@router.post("/api/notifications/rules", status_code=201)
def create_notification_rule(runtime: RuntimeDep, request: Request, body: RuleIn) -> dict[str, Any]:
    """Make a rule (admins: any; anyone else: a subscription of their own, about their tasks' jobs)."""
    return rule_json(create_rule(runtime, request, body))


@router.delete(f"/api/notifications/rules/{RULE_ID}")
def delete_notification_rule(runtime: RuntimeDep, request: Request, rule_id: int) -> dict[str, Any]:
    """Delete a rule made in the UI or API (admins: any; anyone else: their own); its messages go with it."""
    return rule_json(delete_rule(runtime, request, rule_id))


@router.post(f"/api/notifications/rules/{RULE_ID}/test", status_code=202)
def test_notification_rule(runtime: RuntimeDep, request: Request, rule_id: int) -> dict[str, Any]:
    """Send a test message to the rule's target now; its outcome shows in the messages."""
    return {"delivery": test_rule(runtime, request, rule_id)}


# -- the page ---------------------------------------------------------------------------------------
pages = Router(include_in_schema=False)


def _page(runtime: Runtime, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    who = principal(request)
    context.setdefault("root", request.scope.get("root_path", ""))
    context.setdefault("last_event_id", 0)
    context.update(overview(runtime, who, page=True))
    admin = who.role is Role.ADMIN
    seen = [t for t in runtime.tasks if _sees(runtime, who, t.name)]
    context.update(
        admin=admin,
        kinds=KINDS if admin else {k: KINDS[k] for k in USER_KINDS},
        task_names=[t.name for t in seen],
        tag_names=sorted({tag for t in seen for tag in t.tags}),
        pool_names=sorted(runtime.pools) if admin else [],
        source_names=sorted(source.name for source in runtime.declared.sources) if admin else [],
    )
    return pages_of(request).TemplateResponse(request, "notifications.html", context, status_code=status)


@pages.get("/notifications", response_class=HTMLResponse)
def notifications_page(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    return _page(runtime, request)


@pages.post("/notifications", response_class=HTMLResponse)
async def create_rule_form(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    form = await request.form()

    def chosen(field: str) -> list[str]:
        return [str(v) for v in form.getlist(field) if str(v)]

    try:
        body = RuleIn(
            name=str(form.get("name") or ""),
            events=chosen("events"),
            target=str(form.get("target") or ""),
            tasks=chosen("tasks"),
            tags=chosen("tags"),
            pools=chosen("pools"),
            sources=chosen("sources"),
            longer_than=str(form.get("longer_than") or "") or None,
            secret=str(form.get("secret") or ""),
        )
    except ValueError:
        return _page(runtime, request, 422, error=_("Choose at least one event and give a target."))
    try:
        rule = await run_in_threadpool(create_rule, runtime, request, body)
    except MierukaError as exc:
        return _page(runtime, request, exc.status_code, error=exc.message)
    return _page(runtime, request, 201, notice=_("Rule %(name)s made.", name=rule.name))


@pages.post(f"/notifications/{RULE_ID}/test", response_class=HTMLResponse)
def test_rule_form(runtime: RuntimeDep, request: Request, rule_id: int) -> HTMLResponse:
    try:
        delivery = test_rule(runtime, request, rule_id)
    except MierukaError as exc:
        return _page(runtime, request, exc.status_code, error=exc.message)
    return _page(
        runtime, request, notice=_("Test message %(id)s queued: its outcome shows below in a moment.", id=delivery)
    )


@pages.post(f"/notifications/{RULE_ID}/delete", response_class=HTMLResponse)
def delete_rule_form(runtime: RuntimeDep, request: Request, rule_id: int) -> HTMLResponse:
    try:
        rule = delete_rule(runtime, request, rule_id)
    except MierukaError as exc:
        return _page(runtime, request, exc.status_code, error=exc.message)
    return _page(runtime, request, notice=_("Rule %(name)s deleted.", name=rule.name))
