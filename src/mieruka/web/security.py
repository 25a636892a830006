"""The security layer in front of every route: who is asking, may they, CSRF, audit, headers.

One ASGI middleware, so routes added later are covered without doing anything:
- identity: `Authorization: Bearer <token>` (API clients), else the session cookie (browsers), else
  anonymous; with no user configured on a loopback-bound server, everyone is the local admin
  (today's single-user behaviour);
- access: the route's rule from policy.py (role, allow list of a task, owner of a job);
- CSRF: a cookie-authenticated state-changing request must carry the session's token, in the
  `X-CSRF-Token` header (mieruka.js adds it to htmx requests) or as the form field `csrf_token`
  (`{{ csrf_input() }}` in every form, placed first so uploads are not buffered to find it);
  Bearer requests carry no ambient credentials and are not checked;
  in the open single-user mode, a cross-site `Origin` is refused instead;
- audit: every successful state-changing request is recorded (policy.py names the action);
- presence: authenticated requests mark their user as seen;
- headers: a Content-Security-Policy allowing only this server, nosniff, no framing, no-store.

A database that does not answer while the middleware asks it (who is this, whose job is it) is a
503 `database_unavailable` for routes that need to know, and anonymous for public ones (the health
check then says what is wrong); presence and audit writes that fail are logged, the request goes on.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlparse, urlsplit

from jinja2 import pass_context
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core.access import Principal, Role, allowed
from .errors import database_down, respond
from .limits import Limits, Refused, check_target, checked_body, kind_of, replay, scanned_multipart
from .policy import ALLOW_LISTS, SAFE_METHODS, Rule, hidden_tasks, rule_for
from .state import runtime_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Runtime

log = logging.getLogger("mieruka.web")
SESSION_COOKIE = "mieruka_session"
LOGIN_CSRF_COOKIE = "mieruka_login_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
STATE_KEY = "mieruka_principal"
HIDDEN_KEY = "mieruka_hidden_tasks"
LOCAL = Principal("local", Role.ADMIN, "local")
MAX_FORM_SCAN = 1024 * 1024  # an urlencoded form bigger than this is not a form of ours
MULTIPART_HEAD = 64 * 1024  # the CSRF field comes first: this much is plenty to find it

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# ReDoc styles its elements with inserted <style> elements (styled-components) and runs a worker
# from a blob: only its page allows those. Swagger UI works under the strict policy.
DOCS_CSP = CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").replace(
    "script-src 'self'", "script-src 'self'; worker-src 'self' blob:"
)
DOCS_PATHS = ("/redoc",)


def principal(request: Request) -> Principal:
    """Who is making this request (set by the middleware for every route)."""
    found: Principal | None = getattr(request.state, STATE_KEY, None)
    if found is None:
        raise RuntimeError("the security middleware is not installed")
    return found


def hidden(request: Request) -> frozenset[str]:
    """The tasks whose jobs this request's user may not see (policy.hidden_tasks)."""
    found: frozenset[str] | None = getattr(request.state, HIDDEN_KEY, None)
    if found is None:
        raise RuntimeError("the security middleware is not installed")
    return found


def owner_name(request: Request) -> str | None:
    """The name jobs submitted by this request belong to (none in the open single-user mode)."""
    who = principal(request)
    return None if who.via == "local" else who.name


def address(request: Request) -> str:
    return request.client.host if request.client else ""


def audit(request: Request, action: str, target: str = "", **detail: Any) -> None:
    """Record an audit entry for this request's user: `audit(request, "source.refresh", "source:x")`."""
    runtime_of(request).auth.audit.record(principal(request).name, action, target, address(request), detail or None)


def csrf_token(request: Request) -> str:
    who: Principal | None = getattr(request.state, STATE_KEY, None)
    if who is not None and who.session_csrf:
        return who.session_csrf
    return request.cookies.get(LOGIN_CSRF_COOKIE, "")


@pass_context
def csrf_input(context: Any) -> Markup:
    """`{{ csrf_input() }}`: the hidden CSRF field; put it first in every form that posts."""
    request = context.get("request")
    value = csrf_token(request) if request is not None else ""
    return Markup(f'<input type="hidden" name="{CSRF_FIELD}" value="{html.escape(value)}">')


@pass_context
def current_user(context: Any) -> Principal | None:
    request = context.get("request")
    return getattr(request.state, STATE_KEY, None) if request is not None else None


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


def install_template_globals(env: Any) -> None:
    """Give a Jinja environment `csrf_input()`, `csrf_token()`, `current_user()`, `may_change()`
    and `may_run()`."""
    env.globals["csrf_input"] = csrf_input
    env.globals["csrf_token"] = pass_context(lambda ctx: csrf_token(ctx["request"]))
    env.globals["current_user"] = current_user
    env.globals["may_change"] = may_change
    env.globals["may_run"] = may_run


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


class Denied(Refused):
    """Refused by the access rules (who is asking, may they)."""


class Security:
    """The middleware. `api` is the FastAPI app whose routes it matches requests against."""

    def __init__(self, inner: ASGIApp, api: FastAPI, runtime: Runtime) -> None:
        self.inner = inner
        self.api = api
        self.runtime = runtime
        self._routes: list[FlatRoute] | None = None
        self._users_checked = 0.0
        self._has_users = False
        settings = runtime.settings
        self.allowed_hosts = tuple(
            h.strip().lower().removeprefix("*") for h in settings.allowed_hosts.split(",") if h.strip()
        )
        self.limits = Limits(settings.max_body_size, settings.max_json_depth, settings.max_json_keys)
        # Files may travel in a JSON submission as base64: a third larger than the file.
        self.upload_body = max(settings.max_body_size, settings.max_upload_size * 4 // 3 + 65536)

    # -- identity --------------------------------------------------------------------------------
    def has_users(self) -> bool:
        now = time.monotonic()
        if not self._has_users and now - self._users_checked > 1.0:
            self._has_users = self.runtime.auth.accounts.has_users()
            self._users_checked = now
        return self._has_users

    def _users_due(self) -> bool:
        """Whether has_users() would look in the database now (while there are none, once a second)."""
        return not self._has_users and time.monotonic() - self._users_checked > 1.0

    def _needs_db(self, request: Request) -> bool:
        return bool(request.headers.get("authorization") or request.cookies.get(SESSION_COOKIE) or self._users_due())

    def identify(self, request: Request) -> Principal | None:
        accounts = self.runtime.auth.accounts
        header = request.headers.get("authorization", "")
        if header:
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                raise Denied(401, "not_authenticated", "Authorization must be 'Bearer <token>'")
            user = accounts.check_token(secret.strip())
            if user is None:
                raise Denied(401, "not_authenticated", "the token is unknown, revoked or expired")
            return user.principal("token")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            found = accounts.session_user(cookie)
            if found is not None:
                return found
        if not self.has_users():
            if not _local_connection(request.scope):
                raise Denied(
                    401,
                    "not_authenticated",
                    "this server has no users yet and trusts only requests "
                    "from its own machine: add one with `mieruka users add NAME --role admin`",
                )
            if request.headers.get("x-forwarded-for") or request.headers.get("forwarded"):
                raise Denied(
                    401,
                    "not_authenticated",
                    "this server has no users yet and a proxy forwards to it: "
                    "add one with `mieruka users add NAME --role admin`",
                )
            return LOCAL
        return None

    def check_host(self, scope: Scope) -> None:
        """DNS rebinding: another site's name pointed at this machine reaches the server with its own
        Host; a server that trusts its machine (no users) answers only to its own names."""
        if self.allowed_hosts == ("*",):
            return
        if not self.allowed_hosts and self._has_users:
            return
        host = _host_of(scope)
        if host is None:
            return  # HTTP/1.0 without Host: no browser sends that
        names = self.allowed_hosts or self.own_names(scope)
        if not any(host == name or (name.startswith(".") and host.endswith(name)) for name in names):
            raise Denied(
                400,
                "bad_host",
                f"this server does not answer to the host name {host[:100]!r}: add it to the setting allowed_hosts",
            )

    def own_names(self, scope: Scope) -> tuple[str, ...]:
        server = scope.get("server") or ("", None)
        return ("localhost", "127.0.0.1", "::1", self.runtime.settings.host.lower(), str(server[0]).lower())

    # -- the checks --------------------------------------------------------------------------------
    def route_of(self, scope: Scope) -> tuple[str, dict[str, Any], bool] | None:
        """The matching route's path template, path parameters, and whether it is a mount."""
        if self._routes is None:
            self._routes = flat_routes(self.api)
        partial = None
        for route in self._routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return route.path or "", child.get("path_params", {}), isinstance(route.original, Mount)
            if match is Match.PARTIAL and partial is None:
                partial = (route.path or "", child.get("path_params", {}), False)
        return partial

    def check(
        self, request: Request, rule: Rule, who: Principal | None, params: dict[str, Any], hidden: frozenset[str]
    ) -> None:
        if rule.role is None:
            return
        if who is None:
            raise Denied(401, "not_authenticated", "log in first, or send 'Authorization: Bearer <token>'")
        if not who.can(rule.role):
            raise Denied(403, "forbidden", f"this needs the {rule.role.value} role; {who.name} is a {who.role.value}")
        if rule.allow_list is not None:
            kind, param = rule.allow_list
            name = str(params.get(param, ""))
            if not allowed(who, ALLOW_LISTS[kind](self.runtime, name)):
                raise Denied(403, "forbidden", f"{who.name} may not use {kind} {name!r}")
        job_id = params.get("job_id")
        if isinstance(job_id, int) and (rule.owner or hidden):  # the route's own convertor parsed it
            record = self.runtime.engine.store.get_job(job_id)
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        request = Request(scope)
        method = scope["method"]
        try:
            check_target(scope)
            if self._users_due():
                try:
                    await run_in_threadpool(self.has_users)
                except Exception as exc:
                    if database_down(request, exc) is None:
                        raise
            self.check_host(scope)
        except Refused as refused:  # Denied too
            await self.deny(scope, receive, send, refused, request)
            return
        found = self.route_of(scope)
        template, params, is_static = found if found is not None else ("", {}, False)
        rule = rule_for(method, template)
        try:
            who = None
            if not is_static:
                # Requests with nothing to look up in the database skip the thread hop.
                try:
                    who = (
                        await run_in_threadpool(self.identify, request)
                        if self._needs_db(request)
                        else self.identify(request)
                    )
                except Denied:
                    if rule.role is not None:
                        raise
                    who = None  # a stale token does not lock anyone out of a public route
                except Exception as exc:
                    if rule.role is not None:
                        raise
                    _outage(request, exc)
                    who = None  # a public route (the health check, the login page) still answers
            if who is LOCAL and rule.accounts and method not in SAFE_METHODS:
                raise Denied(
                    403,
                    "forbidden",
                    "this server has no users yet: add the first admin on the server's "
                    "machine with `mieruka users add NAME --role admin`, then log in",
                )
            hidden = hidden_tasks(self.runtime, who)
            state = scope.setdefault("state", {})
            state[STATE_KEY], state[HIDDEN_KEY] = who, hidden
            if isinstance(params.get("job_id"), int) and (rule.owner or hidden):
                await run_in_threadpool(self.check, request, rule, who, params, hidden)
            else:
                self.check(request, rule, who, params, hidden)
            if method not in SAFE_METHODS and rule.csrf and (who is None or who.via == "session"):
                receive = await self.check_csrf(request, receive, who, template)
            elif method not in SAFE_METHODS and who is LOCAL:
                _same_origin(request)
            kind = kind_of(scope) if method not in SAFE_METHODS else None
            if kind == "multipart":
                receive = scanned_multipart(scope, receive)
            elif kind is not None:
                receive = await checked_body(
                    scope, receive, kind, self.limits, self.upload_body if rule.uploads else self.limits.body_size
                )
        except Refused as refused:  # Denied too
            await self.deny(scope, receive, send, refused, request)
            return
        except Exception as exc:
            await self.deny(scope, receive, send, _outage(request, exc), request)
            return
        if who is not None and who.via in ("session", "token") and template != "/api/presence/heartbeat":
            try:
                await run_in_threadpool(
                    self.runtime.auth.presence.seen, who, address(request), _page_of(request, template)
                )
            except Exception as exc:
                _outage(request, exc)
        status: list[int] = []
        location: list[str] = []
        docs = template in DOCS_PATHS

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in headers:
                    if k.lower() == b"location":
                        location.append(v.decode("latin-1"))
                _add_headers(headers, names, docs)
                if not is_static and b"cache-control" not in names:
                    # Pages and answers may hold secrets (a new token, a login link): never stored.
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.inner(scope, receive, send_wrapper)
        if method not in SAFE_METHODS and who is not None and rule.audit is not None and status and status[0] < 400:
            action = f"{method} {template}" if rule.audit == "auto" else rule.audit
            target = _target(params, location[0] if location else "")
            try:
                await run_in_threadpool(
                    self.runtime.auth.audit.record, who.name, action, target, address(request), None
                )
            except Exception as exc:
                _outage(request, exc)
                log.error("audit entry not recorded: %s %s by %s (%s)", action, target, who.name, address(request))

    async def check_csrf(self, request: Request, receive: Receive, who: Principal | None, template: str) -> Receive:
        """Raise Denied unless the request carries the right token; returns a receive that replays
        whatever body had to be read to find it."""
        if who is None:  # only the login form is posted without a session
            expected = (
                request.cookies.get(LOGIN_CSRF_COOKIE, "") if template in ("/login", "/login/link/{secret}") else ""
            )
        else:
            expected = who.session_csrf or ""
        given = request.headers.get(CSRF_HEADER)
        read: list[Message] = []
        if given is None:
            given, read = await _field_from_body(request, receive)
        if not expected or not given or not hmac.compare_digest(given.encode(), expected.encode()):
            raise Denied(403, "csrf_failed", "missing or wrong CSRF token: reload the page and try again")
        return replay(read, receive) if read else receive

    async def deny(self, scope: Scope, receive: Receive, send: Send, denied: Refused, request: Request) -> None:
        from fastapi.responses import RedirectResponse

        response: Any
        if (
            denied.status == 401
            and scope["method"] == "GET"
            and not request.headers.get("hx-request")
            and "text/html" in request.headers.get("accept", "")
        ):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = RedirectResponse(
                f"{scope.get('root_path', '')}/login?next={quote(target, safe='')}", status_code=303
            )
        else:
            response = respond(request, denied.status, denied.code, denied.message, headers=denied.headers)
            if denied.status == 401:
                response.headers["WWW-Authenticate"] = 'Bearer realm="mieruka"'
        headers = list(response.raw_headers)
        _add_headers(headers, {k.lower() for k, _ in headers}, False)
        if b"cache-control" not in {k.lower() for k, _ in headers}:
            headers.append((b"cache-control", b"no-store"))
        response.raw_headers = headers
        await response(scope, receive, send)


def _outage(request: Request, exc: Exception) -> Refused:
    """A database that did not answer as the 503 to send (logged in one line); any other error is
    raised again."""
    problem = database_down(request, exc)
    if problem is None:
        raise exc
    log.warning("%s %s: %s", request.method, request.url.path, problem.message)
    return Refused(problem.status_code, problem.code, problem.message, {"Retry-After": str(problem.retry_after)})


def _same_origin(request: Request) -> None:
    """The open single-user mode has no session to tie a token to; a browser still names the site a
    request comes from, so another site's page cannot make the local server change anything."""
    origin = request.headers.get("origin")
    if origin is not None and urlparse(origin).netloc != request.headers.get("host", ""):
        raise Denied(403, "csrf_failed", f"cross-site request from {origin[:100]} refused")


def _add_headers(headers: list[tuple[bytes, bytes]], names: set[bytes], docs: bool) -> None:
    if b"content-security-policy" not in names:
        headers.append((b"content-security-policy", (DOCS_CSP if docs else CSP).encode()))
    for name, value in (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ):
        if name not in names:
            headers.append((name, value))


_JOB_URL = re.compile(r"/jobs/(\d+)(?:$|[/?])")


def _target(params: dict[str, Any], location: str) -> str:
    match = _JOB_URL.search(location)
    if match:
        return f"job:{match.group(1)}"
    if "job_id" in params:
        return f"job:{params['job_id']}"
    return " ".join(f"{k}:{v}" for k, v in params.items())


def _page_of(request: Request, template: str) -> str:
    current = request.headers.get("hx-current-url")  # htmx requests name the page they come from
    if current:
        return urlparse(current).path
    return request.url.path if not template.startswith("/api/") else ""


async def _field_from_body(request: Request, receive: Receive) -> tuple[str | None, list[Message]]:
    """Read just enough of a form body to find its csrf_token field."""
    kind = request.headers.get("content-type", "")
    if not kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None, []
    replay: list[Message] = []
    body = b""
    limit = MAX_FORM_SCAN if kind.startswith("application/") else MULTIPART_HEAD
    more = True
    while more and len(body) < limit:
        message = await receive()
        replay.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if kind.startswith("multipart/"):
            value = _first_part(kind, body)
            if value is not None:
                return value, replay
    if kind.startswith("application/"):
        values = parse_qs(body.decode("latin-1"), keep_blank_values=True).get(CSRF_FIELD)
        return (values[0] if values else None), replay
    return _first_part(kind, body), replay


def _first_part(kind: str, body: bytes) -> str | None:
    match = re.search(r'boundary="?([^";]+)"?', kind)
    if not match:
        return None
    boundary = b"--" + match.group(1).encode("latin-1")
    start = body.find(boundary)
    if start < 0:
        return None
    head_end = body.find(b"\r\n\r\n", start)
    end = body.find(b"\r\n" + boundary, head_end + 4) if head_end >= 0 else -1
    if head_end < 0 or end < 0:
        return None
    head = body[start:head_end].decode("latin-1").lower()
    if f'name="{CSRF_FIELD}"' not in head:
        return ""  # the first field is something else: the form lacks the token
    return body[head_end + 4 : end].decode("latin-1")


def _local_connection(scope: Scope) -> bool:
    """Both ends of the connection on this machine (not a Unix socket: a proxy may stand behind it)."""
    server, client = scope.get("server"), scope.get("client")
    return bool(server and client and is_loopback(str(server[0])) and is_loopback(str(client[0])))


def _host_of(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"host":
            text = bytes(value).decode("latin-1")
            try:
                return urlsplit("//" + text).hostname or ""
            except ValueError:
                return text.lower()
    return None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install_security(api: FastAPI, runtime: Runtime) -> None:
    api.add_middleware(Security, api=api, runtime=runtime)
