"""May they: the route a request matches, and its rule from policy.py (role, allow list of a task,
owner of a job) checked against who is asking; the same questions for templates (`may_change()`,
`may_run()`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jinja2 import pass_context
from starlette.routing import Match, Mount
from starlette.types import Scope

from ..core.access import Principal, Role, allowed
from .identity import Denied, current_user
from .policy import ALLOW_LISTS, SAFE_METHODS, Rule

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Runtime
    from .viewing import Viewing


@dataclass(frozen=True)
class FlatRoute:
    path: str | None
    methods: frozenset[str] | None
    original: Any
    matches: Callable[[Scope], tuple[Match, Scope]]


def flat_routes(api: FastAPI) -> list[FlatRoute]:
    """Every route of the app, included routers flattened, in matching order."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI >= 0.130 nests included routers
    except ImportError:
        return [
            FlatRoute(
                _template(getattr(r, "path", None)), frozenset(getattr(r, "methods", None) or ()) or None, r, r.matches
            )
            for r in api.router.routes
        ]
    return [
        FlatRoute(_template(rc.path), frozenset(rc.methods) if rc.methods else None, rc.original_route, rc.matches)
        for rc in iter_route_contexts(api.router.routes)
    ]


def _template(path: str | None) -> str | None:
    """`/api/jobs/{job_id:id}` is declared in policy.py as `/api/jobs/{job_id}`."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path) if path else path


@dataclass(frozen=True)
class Target:
    """The route a request matches: its path template ("" for none), path parameters, and whether it
    is a mount (the static files)."""

    template: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    mount: bool = False

    def job_id(self) -> int | None:
        """The job the route is about, when its own convertor parsed one."""
        job_id = self.params.get("job_id")
        return job_id if isinstance(job_id, int) else None


class Routes:
    """The app's routes, flattened once on first use (every router is included by then). A request's
    target is remembered by its method and path: matching tries each of the app's hundred routes in
    turn, a fifth of a small request's time."""

    REMEMBERED = 4096

    def __init__(self, api: FastAPI) -> None:
        self.api = api
        self._routes: list[FlatRoute] | None = None
        self._known: dict[tuple[str, str, str, str], Target] = {}

    def target(self, scope: Scope) -> Target:
        key = (scope["type"], scope.get("method", ""), scope["path"], scope.get("root_path", ""))
        found = self._known.get(key)
        if found is None:
            if len(self._known) >= self.REMEMBERED:
                self._known.clear()  # ids in paths: each seen once or twice
            found = self._known[key] = self._match(scope)
        return found

    def _match(self, scope: Scope) -> Target:
        if self._routes is None:
            self._routes = flat_routes(self.api)
        partial = None
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return Target(route.path or "", child.get("path_params", {}), isinstance(route.original, Mount))
            if match is Match.PARTIAL and partial is None:
                partial = Target(route.path or "", child.get("path_params", {}))
        return partial or Target()


def looks_up_job(rule: Rule, target: Target, hidden: frozenset[str]) -> bool:
    """Whether checking this request reads its job from the store (then not on the event loop)."""
    return target.job_id() is not None and (rule.owner or bool(hidden))


def check(
    runtime: Runtime,
    method: str,
    rule: Rule,
    who: Principal | None,
    target: Target,
    hidden: frozenset[str],
    viewing: Viewing | None = None,
) -> None:
    """Raise Denied unless `who` may make this request; `viewing`: what the request may read without
    a login (public dashboards, its display link's)."""
    if who is not None and who.via == "local" and rule.accounts and method not in SAFE_METHODS:
        raise Denied(
            403,
            "forbidden",
            "this server has no users yet: add the first admin on the server's "
            "machine with `mieruka users add NAME --role admin`, then log in",
        )
    if rule.role is None:
        return
    if who is None:
        if rule.shown is not None and viewing is not None:
            kind, param = rule.shown
            if viewing.shows(runtime, kind, str(target.params.get(param, ""))):
                return
        raise Denied(401, "not_authenticated", "log in first, or send 'Authorization: Bearer <token>'")
    if not who.can(rule.role):
        raise Denied(403, "forbidden", f"this needs the {rule.role.value} role; {who.name} is a {who.role.value}")
    if rule.allow_list is not None:
        kind, param = rule.allow_list
        name = str(target.params.get(param, ""))
        if not allowed(who, ALLOW_LISTS[kind](runtime, name)):
            raise Denied(403, "forbidden", f"{who.name} may not use {kind} {name!r}")
    if looks_up_job(rule, target, hidden):
        _check_job(runtime, rule, who, target, hidden)


def _check_job(runtime: Runtime, rule: Rule, who: Principal, target: Target, hidden: frozenset[str]) -> None:
    job_id = target.job_id()
    record = runtime.store.get_job(job_id) if job_id is not None else None
    if record is None:
        return  # the route answers 404
    if record.task in hidden:
        raise Denied(404, "job_not_found", f"no job with id {job_id}")
    if rule.owner and not who.may_change_job(record.owner):
        raise Denied(
            403,
            "forbidden",
            f"job {record.id} belongs to {record.owner or 'nobody'}; an operator may change only its own jobs",
        )


@pass_context
def may_change(context: Any, owner: str | None) -> bool:
    """`{% if may_change(job.owner) %}`: may the reader cancel, retry or delete this job?"""
    who = current_user(context)
    return who is None or who.may_change_job(owner)


@pass_context
def may_run(context: Any, task: Any) -> bool:
    """`{% if may_run(task) %}`: may the reader submit this task?"""
    who = current_user(context)
    return who is None or (who.can(Role.OPERATOR) and allowed(who, task.allow))
