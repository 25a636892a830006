"""The security layer in front of every route, one ASGI middleware, so routes added later are covered
without doing anything. For each request, in order:

- the request target's characters and, in the open mode, the host name (limits.py, identity.py);
- who is asking (identity.py) and may they: the route's rule from policy.py (access.py);
- CSRF for cookie sessions, same origin in the open mode (csrf.py);
- the body's limits (limits.py);
- presence: authenticated requests mark their user as seen (presence.py);
- the language of the pages and messages: the user's, the browser's, the server's (languages.py);
- then the route, its answer with the security headers (headers.py), and its audit entry (audit.py).
  The hot routes (submit, run now, get a job) are served by fastpath.py, the others by FastAPI.

A refused request is answered by web/errors.py. A database that does not answer while the middleware
asks it (who is this, whose job is it) is a 503 `database_unavailable` for routes that need to know,
and anonymous for public ones (the health check then says what is wrong); presence and audit writes
that fail are logged, the request goes on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.access import Principal
from ..i18n import LANGUAGE
from .access import Routes, Target, check, looks_up_job
from .audit import AuditWriter, Outcome, record, ticket_for
from .csrf import check_csrf
from .errors import database_down, outage, refusal
from .fastpath import FastPath
from .headers import DOCS_PATHS, secured
from .identity import HIDDEN_KEY, STATE_KEY, Denied, Identifier
from .languages import before_login, of_user
from .limits import Limits, Refused, check_target, checked_body, kind_of, scanned_multipart
from .policy import SAFE_METHODS, Rule, hidden_tasks, rule_for
from .presence import mark_seen
from .viewing import VIEWING_KEY, viewing_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..runtime import Runtime
    from .front import Api


class Security:
    """The middleware. `api` is the FastAPI app whose routes it matches requests against."""

    def __init__(self, inner: ASGIApp, api: FastAPI, runtime: Runtime) -> None:
        self.inner = inner
        self.runtime = runtime
        self.routes = Routes(api)
        self.identifier = Identifier(runtime)
        self.fast = FastPath(api, runtime)
        self.audit = AuditWriter(runtime)
        settings = runtime.settings
        self.limits = Limits(settings.max_body_size, settings.max_json_depth, settings.max_json_keys)
        # Files may travel in a JSON submission as base64: a third larger than the file.
        self.upload_body = max(settings.max_body_size, settings.max_upload_size * 4 // 3 + 65536)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.inner(scope, receive, send)
            return
        request = Request(scope)
        # Set in this request's own task, so never seen by another request: no reset needed.
        LANGUAGE.set(before_login(request, self.runtime.settings.language))
        try:
            await self.screen(request)
            target = self.routes.target(scope)
            rule = rule_for(request.method, target.template)
            who = await self.identify(request, rule, target)
            if who is not None and who.user_id is not None:
                LANGUAGE.set(await of_user(self.runtime, who) or LANGUAGE.get())
            receive = await self.admit(request, receive, rule, who, target)
        except Refused as refused:  # Denied too
            await refusal(request, refused)(scope, receive, secured(send))
            return
        except Exception as exc:
            await refusal(request, outage(request, exc))(scope, receive, secured(send))
            return
        await mark_seen(self.runtime, request, who, target.template)
        ticket = ticket_for(request, who, rule, target)
        answer = secured(send, docs=target.template in DOCS_PATHS, no_store=not target.mount)
        if ticket is None:  # nothing to record: nothing kept alive for, say, an event stream's hours
            del request, who, rule
            if not await self.fast.serve(scope, receive, answer, target):
                await self.inner(scope, receive, answer)
            return
        outcome = Outcome()
        watched = outcome.watching(answer)
        if not await self.fast.serve(scope, receive, watched, target):
            await self.inner(scope, receive, watched)
        await record(self.audit, request, ticket, target, outcome)

    async def screen(self, request: Request) -> None:
        """What is refused before anything else: a bad request target, a host name not ours."""
        check_target(request.scope)
        if self.identifier.users_due():
            try:
                await run_in_threadpool(self.identifier.has_users)
            except Exception as exc:
                if database_down(request, exc) is None:
                    raise
        self.identifier.check_host(request.scope)

    async def identify(self, request: Request, rule: Rule, target: Target) -> Principal | None:
        """Who is asking; a public route answers the anonymous when that cannot be told."""
        if target.mount:
            return None
        try:
            if self.identifier.needs_db(request):
                return await run_in_threadpool(self.identifier.identify, request)
            return self.identifier.identify(request)  # nothing to look up: no thread hop
        except Denied:
            if rule.role is not None:
                raise
            return None  # a stale token does not lock anyone out of a public route
        except Exception as exc:
            if rule.role is not None:
                raise
            outage(request, exc)
            return None  # a public route (the health check, the login page) still answers

    async def admit(
        self, request: Request, receive: Receive, rule: Rule, who: Principal | None, target: Target
    ) -> Receive:
        """Check access and CSRF, and bound the body; returns the receive the route reads from."""
        hidden = hidden_tasks(self.runtime, who)
        state = request.scope.setdefault("state", {})
        state[STATE_KEY], state[HIDDEN_KEY] = who, hidden
        # Without a login, a route that shows dashboards asks which it may (public, display link).
        seen = await viewing_of(self.runtime, request) if who is None and rule.shown is not None else None
        state[VIEWING_KEY] = seen
        if looks_up_job(rule, target, hidden):
            await run_in_threadpool(check, self.runtime, request.method, rule, who, target, hidden, seen)
        else:
            check(self.runtime, request.method, rule, who, target, hidden, seen)
        receive = await check_csrf(request, receive, rule, who, target.template)
        kind = kind_of(request.scope) if request.method not in SAFE_METHODS else None
        if kind == "multipart":
            return scanned_multipart(request.scope, receive)
        if kind is not None:
            size = self.upload_body if rule.uploads else self.limits.body_size
            return await checked_body(request.scope, receive, kind, self.limits, size)
        return receive


def install_security(api: Api, runtime: Runtime) -> None:
    api.put_in_front(lambda behind: Security(behind, api, runtime))
