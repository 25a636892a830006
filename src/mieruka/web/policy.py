"""Who may call which route: the one place where access is declared.

Every route is protected by default: reading (GET, HEAD) needs a `viewer`, anything else an
`operator`, and every successful state-changing request is written to the audit log. The table
below declares the exceptions: public routes, admin-only routes, routes where an operator may act
only on its own job (`owner`), routes subject to the allow list of the task (or other thing) they
name, and the audit action of each state-changing route. A route is found by its path template,
so a new route is protected the moment it exists; tests/test_access.py fails until its
expectation is stated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.access import Role

if TYPE_CHECKING:
    from ..app import App

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
    ("*", "/static"): PUBLIC,
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
    ("POST", "/api/tasks/{task}/jobs"): Rule(Role.OPERATOR, allow_list=("task", "task"), audit="job.submit"),
    ("POST", "/api/tasks/{task}/run"): Rule(Role.OPERATOR, allow_list=("task", "task"), audit="task.run"),
    ("GET", "/tasks/{name}"): Rule(Role.VIEWER, allow_list=("task", "name")),
    ("POST", "/tasks/{name}"): Rule(Role.OPERATOR, allow_list=("task", "name"), audit="job.submit"),
    # an operator changes only its own jobs
    ("POST", "/api/jobs/{job_id}/cancel"): Rule(Role.OPERATOR, owner=True, audit="job.cancel"),
    ("POST", "/api/jobs/{job_id}/retry"): Rule(Role.OPERATOR, owner=True, audit="job.retry"),
    ("DELETE", "/api/jobs/{job_id}"): Rule(Role.OPERATOR, owner=True, audit="job.delete"),
    ("POST", "/jobs/{job_id}/cancel"): Rule(Role.OPERATOR, owner=True, audit="job.cancel"),
    ("POST", "/jobs/{job_id}/retry"): Rule(Role.OPERATOR, owner=True, audit="job.retry"),
    ("POST", "/jobs/cancel"): Rule(Role.OPERATOR, audit=None),  # checks and audits each job itself
    # admins only
    ("GET", "/api/users"): ADMIN,
    ("POST", "/api/users"): Rule(Role.ADMIN, audit=None),
    ("PATCH", "/api/users/{name}"): Rule(Role.ADMIN, audit=None),
    ("DELETE", "/api/users/{name}"): Rule(Role.ADMIN, audit=None),
    ("GET", "/users"): ADMIN,
    ("POST", "/users"): Rule(Role.ADMIN, audit=None),
    ("POST", "/users/{name}/role"): Rule(Role.ADMIN, audit=None),
    ("POST", "/users/{name}/delete"): Rule(Role.ADMIN, audit=None),
    ("POST", "/users/{name}/link"): Rule(Role.ADMIN, audit=None),
    ("GET", "/api/audit"): ADMIN,
    ("GET", "/audit"): ADMIN,
    ("GET", "/audit.csv"): ADMIN,
    # routes of other features: dashboards and sources, compute pools
    ("GET", "/api/dashboards/{name}"): Rule(Role.VIEWER, allow_list=("dashboard", "name")),
    ("GET", "/api/dashboards/{name}/events"): Rule(Role.VIEWER, allow_list=("dashboard", "name")),
    ("GET", "/dashboards/{name}"): Rule(Role.VIEWER, allow_list=("dashboard", "name")),
    ("GET", "/api/sources/{name}"): Rule(Role.VIEWER, allow_list=("source", "name")),
    ("GET", "/api/sources/{name}/data"): Rule(Role.VIEWER, allow_list=("source", "name")),
    ("POST", "/api/sources/{name}/refresh"): Rule(Role.OPERATOR, allow_list=("source", "name"),
                                                 audit="source.refresh"),
    ("POST", "/api/pools/{name}/start"): Rule(Role.ADMIN, audit="pool.start"),
    ("POST", "/api/pools/{name}/stop"): Rule(Role.ADMIN, audit="pool.stop"),
    ("POST", "/pools/{name}/{action}"): Rule(Role.ADMIN, audit="pool.change"),
}


def _task_allow(app: App, name: str) -> Iterable[str] | None:
    return app.tasks.get(name).allow if name in app.tasks else None


def _dashboard_allow(app: App, name: str) -> Iterable[str] | None:
    dashboards = getattr(app, "dashboards", None)  # the dashboards feature may be absent
    if dashboards is None or name not in dashboards:
        return None
    allow: Iterable[str] | None = getattr(dashboards.get(name), "allow", None)
    return allow


def _source_allow(app: App, name: str) -> Iterable[str] | None:
    dashboards = getattr(app, "dashboards", None)
    return dashboards.source_allow(name) if dashboards is not None else None


# kind -> the allow list of the thing of that name (None: everyone; unknown names: None, and the
# route answers 404). Another kind registers itself the same way.
ALLOW_LISTS: dict[str, Callable[[App, str], Iterable[str] | None]] = {"task": _task_allow,
                                                                      "dashboard": _dashboard_allow,
                                                                      "source": _source_allow}


def rule_for(method: str, template: str) -> Rule:
    """The declared rule, else the default: viewer to read, operator to change (audited)."""
    rule = RULES.get((method, template)) or RULES.get(("*", template))
    if rule is None and method == "HEAD":
        rule = RULES.get(("GET", template))
    if rule is not None:
        return rule
    return Rule(Role.VIEWER if method in SAFE_METHODS else Role.OPERATOR)
