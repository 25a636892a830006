"""Who may call which route: the one place where access is declared.

Every route is protected by default: reading (GET, HEAD) needs a `viewer`, anything else an
`operator`, and every successful state-changing request is written to the audit log. The table
below declares the exceptions: public routes, admin-only routes, routes where an operator may act
only on its own job (`owner`), routes subject to the allow list of the task (or other thing) they
name, routes that show a dashboard's page and live data without a login when the dashboard is
public or the request carries its display link (`shown`), and the audit action of each
state-changing route. A route is found by its path template, so a new route is protected the
moment it exists; tests/web/test_access.py fails until its expectation is stated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..core.access import Principal, Role, allowed
from .ids import parse_id

if TYPE_CHECKING:
    from ..runtime import Runtime

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AUTO = "auto"  # audit as "<METHOD> <path template>"


@dataclass(frozen=True)
class Rule:
    role: Role | None  # None: public, no login needed
    owner: bool = False  # {job_id} must belong to the caller unless admin
    # (kind, path parameter): the parameter names a thing whose allow list applies, e.g.
    # ("task", "task"); kinds are registered in ALLOW_LISTS below.
    allow_list: tuple[str, str] | None = None
    audit: str | None = AUTO  # action name for the audit log; None: the route records its own entries
    csrf: bool = True
    uploads: bool = False  # its JSON body may carry files (base64): max_upload_size bounds it
    accounts: bool = False  # changes users: never in the open mode (the first admin comes from the CLI)
    # (kind, path parameter): without a login, allowed when the parameter names a dashboard shown to
    # the request (public, or its display link's), or a source or stream such a dashboard shows;
    # ("topics", ""): the route checks each topic itself (web/viewing.py).
    shown: tuple[str, str] | None = None


PUBLIC = Rule(None, audit=None)
VIEW = Rule(Role.VIEWER)
ADMIN = Rule(Role.ADMIN)

# (method, path template) -> Rule; "*" matches any method.
RULES: dict[tuple[str, str], Rule] = {
    # public: the login page, the one-time link, static files, health checks
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): Rule(None, audit=None, csrf=True),
    ("GET", "/login/link/{secret}"): PUBLIC,
    ("POST", "/login/link/{secret}"): Rule(None, audit=None, csrf=True),
    # single sign-on (web/sso.py): leave for the OpenID provider, come back; bound to the browser by
    # its pending-login cookie, audited by the route (login, sso.failed)
    ("GET", "/login/oidc/{provider}"): PUBLIC,
    ("GET", "/login/oidc/{provider}/callback"): PUBLIC,
    ("*", "/static"): PUBLIC,
    # the header's language switcher: a cookie, and a signed-in user's own setting (web/languages.py)
    ("POST", "/language"): Rule(None, audit=None, csrf=True),
    ("GET", "/healthz"): PUBLIC,
    # any signed-in user
    ("POST", "/logout"): Rule(Role.VIEWER, audit=None),
    ("POST", "/api/presence/heartbeat"): Rule(Role.VIEWER, audit=None),
    ("GET", "/api/me"): VIEW,
    ("GET", "/account"): VIEW,
    ("GET", "/presence"): VIEW,
    ("GET", "/presence/badge"): VIEW,
    ("GET", "/api/presence"): VIEW,
    ("POST", "/account/tokens"): Rule(Role.VIEWER, audit=None),
    ("POST", "/account/tokens/{token_id}/revoke"): Rule(Role.VIEWER, audit=None),
    ("POST", "/account/password"): Rule(Role.VIEWER, audit=None),
    ("GET", "/api/tokens"): VIEW,
    ("POST", "/api/tokens"): Rule(Role.VIEWER, audit=None),
    ("DELETE", "/api/tokens/{token_id}"): Rule(Role.VIEWER, audit=None),
    # tasks with allow lists
    ("GET", "/api/tasks/{task}"): Rule(Role.VIEWER, allow_list=("task", "task")),
    ("POST", "/api/tasks/{task}/jobs"): Rule(
        Role.OPERATOR, allow_list=("task", "task"), audit="job.submit", uploads=True
    ),
    ("POST", "/api/tasks/{task}/jobs/batch"): Rule(
        Role.OPERATOR, allow_list=("task", "task"), audit="job.submit_batch"
    ),
    ("POST", "/api/tasks/{task}/run"): Rule(Role.OPERATOR, allow_list=("task", "task"), audit="task.run", uploads=True),
    ("GET", "/tasks/{name}"): Rule(Role.VIEWER, allow_list=("task", "name")),
    ("POST", "/tasks/{name}"): Rule(Role.OPERATOR, allow_list=("task", "name"), audit="job.submit", uploads=True),
    # an operator changes only its own jobs
    ("POST", "/api/jobs/{job_id}/cancel"): Rule(Role.OPERATOR, owner=True, audit="job.cancel"),
    ("POST", "/api/jobs/{job_id}/retry"): Rule(Role.OPERATOR, owner=True, audit="job.retry"),
    ("DELETE", "/api/jobs/{job_id}"): Rule(Role.OPERATOR, owner=True, audit="job.delete"),
    ("POST", "/jobs/{job_id}/cancel"): Rule(Role.OPERATOR, owner=True, audit="job.cancel"),
    ("POST", "/jobs/{job_id}/retry"): Rule(Role.OPERATOR, owner=True, audit="job.retry"),
    ("POST", "/jobs/cancel"): Rule(Role.OPERATOR, audit=None),  # checks and audits each job itself
    # admins only
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("PATCH", "/api/users/{name}"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("DELETE", "/api/users/{name}"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("POST", "/users/{name}/role"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("POST", "/users/{name}/delete"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("POST", "/users/{name}/link"): Rule(Role.ADMIN, audit=None, accounts=True),
    ("GET", "/api/audit"): ADMIN,
    ("GET", "/audit"): ADMIN,
    ("GET", "/audit.csv"): ADMIN,
    # routes of other features: dashboards and sources, compute pools
    ("GET", "/api/dashboards/{name}"): Rule(Role.VIEWER, allow_list=("dashboard", "name"), shown=("dashboard", "name")),
    ("GET", "/api/dashboards/{name}/events"): Rule(
        Role.VIEWER, allow_list=("dashboard", "name"), shown=("dashboard", "name")
    ),
    ("GET", "/dashboards/{name}"): Rule(Role.VIEWER, allow_list=("dashboard", "name"), shown=("dashboard", "name")),
    ("GET", "/api/sources/{name}"): Rule(Role.VIEWER, allow_list=("source", "name")),
    ("GET", "/api/sources/{name}/data"): Rule(Role.VIEWER, allow_list=("source", "name"), shown=("source", "name")),
    # the task's allow list too: web/controls.py checks it (the path names the control, not the task)
    ("POST", "/api/dashboards/{name}/controls/{control}"): Rule(
        Role.OPERATOR, allow_list=("dashboard", "name"), audit="control.press"
    ),
    ("POST", "/api/sources/{name}/refresh"): Rule(Role.OPERATOR, allow_list=("source", "name"), audit="source.refresh"),
    ("GET", "/api/streams/{name}"): Rule(Role.VIEWER, allow_list=("stream", "name")),
    ("GET", "/api/streams/{name}/points"): Rule(Role.VIEWER, allow_list=("stream", "name"), shown=("stream", "name")),
    ("GET", "/api/live/events"): Rule(Role.VIEWER, shown=("topics", "")),
    ("GET", "/api/streams/{name}/events"): Rule(Role.VIEWER, allow_list=("stream", "name")),
    ("GET", "/streams/{name}"): Rule(Role.VIEWER, allow_list=("stream", "name")),
    ("POST", "/api/pools/{name}/start"): Rule(Role.ADMIN, audit="pool.start"),
    ("POST", "/api/pools/{name}/stop"): Rule(Role.ADMIN, audit="pool.stop"),
    ("POST", "/pools/{name}/{action}"): Rule(Role.ADMIN, audit="pool.change"),
    # wall screens: admins make and revoke display links (audited by the routes, without the
    # secret); a display trades its link's secret (in the URL's fragment, posted) for a cookie
    ("GET", "/api/displays"): ADMIN,
    ("POST", "/api/displays"): Rule(Role.ADMIN, audit=None),
    ("DELETE", "/api/displays/{display_id}"): Rule(Role.ADMIN, audit=None),
    ("GET", "/displays"): ADMIN,
    ("POST", "/displays"): Rule(Role.ADMIN, audit=None),
    ("POST", "/displays/{display_id}/revoke"): Rule(Role.ADMIN, audit=None),
    # notifications: admins see and manage every rule; anyone signed in subscribes themselves (the
    # routes check whose rule it is, answering 404 for another's; they audit themselves)
    ("GET", "/api/notifications"): VIEW,
    ("POST", "/api/notifications/rules"): Rule(Role.VIEWER, audit=None),
    ("DELETE", "/api/notifications/rules/{rule_id}"): Rule(Role.VIEWER, audit=None),
    ("POST", "/api/notifications/rules/{rule_id}/test"): Rule(Role.VIEWER, audit=None),
    ("GET", "/notifications"): VIEW,
    ("POST", "/notifications"): Rule(Role.VIEWER, audit=None),
    ("POST", "/notifications/{rule_id}/test"): Rule(Role.VIEWER, audit=None),
    ("POST", "/notifications/{rule_id}/delete"): Rule(Role.VIEWER, audit=None),
    ("GET", "/display"): PUBLIC,
    ("POST", "/display"): Rule(None, audit=None, csrf=False),
}


def _task_allow(runtime: Runtime, name: str) -> Iterable[str] | None:
    return runtime.tasks.get(name).allow if name in runtime.tasks else None


def _dashboard_allow(runtime: Runtime, name: str) -> Iterable[str] | None:
    dashboards = getattr(runtime, "dashboards", None)  # the dashboards feature may be absent
    if dashboards is None or name not in dashboards:
        return None
    allow: Iterable[str] | None = getattr(dashboards.get(name), "allow", None)
    return allow


def _source_allow(runtime: Runtime, name: str) -> Iterable[str] | None:
    dashboards = getattr(runtime, "dashboards", None)
    return dashboards.source_allow(name) if dashboards is not None else None


def _stream_allow(runtime: Runtime, name: str) -> Iterable[str] | None:
    dashboards = getattr(runtime, "dashboards", None)
    return dashboards.stream_allow(name) if dashboards is not None else None


# kind -> the allow list of the thing of that name (None: everyone; unknown names: None, and the
# route answers 404). Another kind registers itself the same way.
ALLOW_LISTS: dict[str, Callable[[Runtime, str], Iterable[str] | None]] = {
    "task": _task_allow,
    "dashboard": _dashboard_allow,
    "source": _source_allow,
    "stream": _stream_allow,
}


def hidden_tasks(runtime: Runtime, who: Principal | None) -> frozenset[str]:
    """The tasks whose allow list leaves `who` out: their jobs are not shown to `who` anywhere
    (lists, pages, events, logs, artifacts), and a path naming one answers as if it did not exist."""
    return hidden_names(runtime, who, "task", (t.name for t in runtime.tasks))


def hidden_names(runtime: Runtime, who: Principal | None, kind: str, names: Iterable[str]) -> frozenset[str]:
    """Of `names` (sources, streams, dashboards: `kind` in ALLOW_LISTS), those `who` may not see."""
    if who is not None and who.role is Role.ADMIN:
        return frozenset()
    allow_of = ALLOW_LISTS[kind]
    return frozenset(
        name
        for name in names
        if (allow := allow_of(runtime, name)) is not None and (who is None or not allowed(who, allow))
    )


_NAMED = re.compile(r"/(tasks|dashboards|streams|jobs)/([^/?#]+)")
_KINDS = {"tasks": "task", "dashboards": "dashboard", "streams": "stream"}


def shown_page(runtime: Runtime, who: Principal | None, page: str) -> str:
    """The page someone is on (presence), as `who` may be told it: empty when it names a task,
    dashboard, stream or job that `who` may not see, or a job id that is no job ("/jobs/3 /cancel"
    is about job 3 to a reader, whatever the router made of it). Admins see every page."""
    if who is not None and who.role is Role.ADMIN:
        return page
    for kind, name in _NAMED.findall(page):
        name = unquote(name)
        if kind == "jobs":
            job_id = parse_id(name)
            record = runtime.store.get_job(job_id) if job_id is not None else None
            if record is None or record.task in hidden_tasks(runtime, who):
                return ""
        elif not _declared(runtime, kind, name) or hidden_names(runtime, who, _KINDS[kind], (name,)):
            return ""  # an undeclared name may be a hidden one misspelt ("/tasks/vault%20")
    return page


def _declared(runtime: Runtime, kind: str, name: str) -> bool:
    names: Container[str] = runtime.streams
    if kind == "tasks":
        names = runtime.tasks
    elif kind == "dashboards":
        names = runtime.dashboards
    return name in names


def rule_for(method: str, template: str) -> Rule:
    """The declared rule, else the default: viewer to read, operator to change (audited)."""
    rule = RULES.get((method, template)) or RULES.get(("*", template))
    if rule is None and method == "HEAD":
        rule = RULES.get(("GET", template))
    if rule is not None:
        return rule
    return Rule(Role.VIEWER if method in SAFE_METHODS else Role.OPERATOR)
