"""Pages of accounts: log in and out, one-time login links, your account and API tokens, users
(admins), the audit log (admins) and who is online."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ...auth.audit import AuditQuery, to_csv
from ...core.access import ROLE_NAMES
from ...core.clock import as_utc, utcnow
from ...errors import DirectoryUnavailable, MierukaError, TooManyAttempts, ValidationError
from ...i18n import N_, _
from ...runtime import Runtime
from ..audit import audit, outcome_label, shown_entries
from ..csrf import LOGIN_CSRF_COOKIE
from ..identity import SESSION_COOKIE, address, principal
from ..ids import TOKEN_ID
from ..policy import shown_page
from ..routers import Router
from ..state import RuntimeDep, pages_of, runtime_or_none

router = Router(include_in_schema=False)
logger = logging.getLogger("mieruka.login")
# The words pages show for roles and for where an account comes from (the values stay in forms).
ROLE_LABELS = {"admin": N_("admin"), "operator": N_("operator"), "viewer": N_("viewer")}
SOURCE_LABELS = {"local": N_("local"), "proxy": N_("proxy")}


def role_label(role: str) -> str:
    return _(ROLE_LABELS[role]) if role in ROLE_LABELS else role


def source_label(source: str) -> str:
    return _(SOURCE_LABELS[source]) if source in SOURCE_LABELS else source


def _page(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("root", request.scope.get("root_path", ""))
    context.setdefault("last_event_id", 0)
    context.update(role_name=role_label, source_name=source_label, outcome_name=outcome_label)
    return pages_of(request).TemplateResponse(request, template, context, status_code=status)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _cookie_path(request: Request) -> str:
    return _root(request) or "/"


def _secure(request: Request) -> bool:
    # Behind a trusted HTTPS proxy uvicorn sets the scheme from X-Forwarded-Proto.
    return request.url.scheme == "https"


def _safe_next(request: Request, target: str | None) -> str:
    base = _root(request)
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return f"{base}/"
    return target if base and target.startswith(base + "/") else f"{base}{target}"


def _start_session(runtime: Runtime, request: Request, response: Response, user: Any) -> None:
    # A new session id at every login (never the one the browser came with): no fixation.
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        runtime.auth.accounts.end_session(old)
    secret = runtime.auth.accounts.create_session(user, address(request))[0]
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(runtime.settings.session_max_age),
        path=_cookie_path(request),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=_cookie_path(request))


# -- log in and out --------------------------------------------------------------------------------
def _login_page(request: Request, status: int = 200, error: str = "", name: str = "", target: str = "") -> HTMLResponse:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    request.cookies[LOGIN_CSRF_COOKIE] = token  # so that csrf_input() renders it now
    response = _page(
        request, "login.html", status=status, error=error, user_name=name, next=target, directory=_directory(request)
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path=_cookie_path(request), httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


def _directory(request: Request) -> str:
    """The host of the directory the login form also checks (empty: none)."""
    runtime = runtime_or_none(request)
    directory = runtime.auth.directory if runtime is not None else None
    if directory is None:
        return ""
    return ", ".join(urlsplit(url).hostname or url for url in directory.config.urls)


@router.get("/login", response_class=HTMLResponse)
def login_form(runtime: RuntimeDep, request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, target=next or "")


@router.post("/login")
async def login(runtime: RuntimeDep, request: Request) -> Response:
    form = await request.form()
    name = str(form.get("name") or "").strip()[:100]
    password = str(form.get("password") or "")
    target = str(form.get("next") or "")
    try:
        user = await run_in_threadpool(
            runtime.auth.throttle.login, name, password, address(request), runtime.auth.directory
        )
    except TooManyAttempts as exc:
        response = _login_page(request, 429, exc.message, name, target)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except DirectoryUnavailable as exc:
        logger.warning("%s: %s", exc, exc.reason)
        message = _(
            "Directory users cannot log in now: the directory (%(url)s) cannot be reached. Local accounts still work.",
            url=exc.url,
        )
        response = _login_page(request, 503, message, name, target)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return _login_page(request, 401, _("Wrong user name or password."), name, target)
    done = RedirectResponse(_safe_next(request, target), status_code=303)
    await run_in_threadpool(_start_session, runtime, request, done, user)
    return done


@router.post("/logout")
def logout(runtime: RuntimeDep, request: Request) -> Response:
    who = principal(request)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        runtime.auth.accounts.end_session(secret)
        runtime.auth.presence.forget(who.name)
        audit(request, "logout", f"user:{who.name}")
    response = RedirectResponse(f"{_root(request)}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
    # Single sign-on (web/sso.py) may go on to end the provider's session too.
    after: Callable[[Runtime, Request, Response], Response] | None = getattr(request.app.state, "after_logout", None)
    return after(runtime, request, response) if after is not None else response


@router.get("/login/link/{secret}", response_class=HTMLResponse)
def login_link_page(runtime: RuntimeDep, request: Request, secret: str) -> HTMLResponse:
    """A one-time login link asks for one click: mail scanners and link previews that open
    links do not use it up."""
    if not runtime.auth.accounts.login_link_valid(secret):
        return _login_page(request, 401, _("This login link was used already or has expired."))
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    request.cookies[LOGIN_CSRF_COOKIE] = token
    response = _page(request, "login_link.html", secret=secret)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, path=_cookie_path(request), httponly=True, samesite="strict", secure=_secure(request)
    )
    return response


@router.post("/login/link/{secret}")
def login_link(runtime: RuntimeDep, request: Request, secret: str) -> Response:
    """Exchange a one-time login link for a session; the link is void from then on."""
    user = runtime.auth.accounts.consume_login_link(secret)
    if user is None:
        runtime.auth.audit.record("(link)", "login.failed", "link", address(request), {"reason": "void link"})
        return _login_page(request, 401, _("This login link was used already or has expired."))
    runtime.auth.audit.record(user.name, "login", f"user:{user.name}", address(request), {"via": "link"})
    response = RedirectResponse(f"{_root(request)}/", status_code=303)
    _start_session(runtime, request, response, user)
    return response


# -- your account: password and API tokens --------------------------------------------------------
def _account_page(runtime: Runtime, request: Request, status: int = 200, **extra: Any) -> HTMLResponse:
    who = principal(request)
    tokens = runtime.auth.accounts.list_tokens(who.name) if who.via != "local" else []
    source = runtime.auth.accounts.get_user(who.name).source if who.via != "local" else "local"
    return _page(request, "account.html", status=status, who=who, tokens=tokens, now=utcnow(), source=source, **extra)


@router.get("/account", response_class=HTMLResponse)
def account(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    return _account_page(runtime, request)


@router.post("/account/tokens", response_class=HTMLResponse)
async def create_token(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    who = principal(request)
    form = await request.form()
    name = str(form.get("name") or "")[:200]
    days = str(form.get("expires_in_days") or "").strip()
    try:
        if who.via == "local":
            raise ValidationError(_("no users are configured yet: add one with `mieruka users add`"))
        expires = None
        if days:
            try:
                value = float(days)
            except ValueError:
                value = -1
            if not 0 < value <= 3650:
                raise ValidationError(_("expiry: a number of days between 0 and 3650"))
            expires = utcnow() + timedelta(days=value)
        token, secret = await run_in_threadpool(runtime.auth.accounts.create_token, who.name, name, expires)
    except ValidationError as exc:
        return _account_page(runtime, request, 422, error=exc.message)
    audit(request, "token.create", f"token:{token.id}", user=who.name, name=name)
    return _account_page(runtime, request, 201, new_token=secret, new_token_name=name)


@router.post(f"/account/tokens/{TOKEN_ID}/revoke")
def revoke_token(runtime: RuntimeDep, request: Request, token_id: int) -> Response:
    token = runtime.auth.accounts.revoke_token_as(principal(request), token_id)
    audit(request, "token.revoke", f"token:{token_id}", user=token.user)
    return RedirectResponse(request.headers.get("referer") or f"{_root(request)}/account", status_code=303)


@router.post("/account/password", response_class=HTMLResponse)
async def change_password(runtime: RuntimeDep, request: Request) -> Response:
    who = principal(request)
    form = await request.form()
    current, new = str(form.get("current") or ""), str(form.get("password") or "")
    if who.via == "local":
        return _account_page(runtime, request, 422, error=_("no users are configured yet"))
    source = (await run_in_threadpool(runtime.auth.accounts.get_user, who.name)).source
    if source != "local":  # not checked here, so not counted as a wrong password either
        return _account_page(
            runtime, request, 422, error=_("Your password is kept by %(source)s: change it there.", source=source)
        )
    try:
        checked = await run_in_threadpool(
            runtime.auth.throttle.change_password, who.name, current, new, address(request)
        )
    except ValidationError as exc:
        return _account_page(runtime, request, 422, error=exc.message)
    except TooManyAttempts as exc:
        locked = _account_page(runtime, request, 429, error=exc.message)
        locked.headers["Retry-After"] = str(exc.retry_after)
        return locked
    if checked is None:
        return _account_page(runtime, request, 422, error=_("The current password is wrong."))
    # Changing the password ended every session: start a fresh one for this browser.
    response = RedirectResponse(f"{_root(request)}/account", status_code=303)
    await run_in_threadpool(_start_session, runtime, request, response, checked)
    return response


# -- users (admins) --------------------------------------------------------------------------------
def _users_page(runtime: Runtime, request: Request, status: int = 200, **extra: Any) -> HTMLResponse:
    return _page(
        request,
        "users.html",
        status=status,
        users=runtime.auth.accounts.list_users(),
        roles=ROLE_NAMES,
        tokens=runtime.auth.accounts.list_tokens(),
        now=utcnow(),
        **extra,
    )


@router.get("/users", response_class=HTMLResponse)
def users(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    return _users_page(runtime, request)


@router.post("/users", response_class=HTMLResponse)
async def add_user(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    form = await request.form()
    name, role = str(form.get("name") or "").strip(), str(form.get("role") or "viewer")
    password = str(form.get("password") or "") or None
    try:
        user = await run_in_threadpool(runtime.auth.accounts.add_user, name, role, password)
    except MierukaError as exc:
        return _users_page(runtime, request, exc.status_code, error=exc.message)
    audit(request, "user.add", f"user:{user.name}", role=user.role.value)
    return _users_page(
        runtime, request, 201, notice=_("Added %(name)s (%(role)s).", name=user.name, role=role_label(user.role.value))
    )


@router.post("/users/{name}/role", response_class=HTMLResponse)
async def set_role(runtime: RuntimeDep, request: Request, name: str) -> HTMLResponse:
    form = await request.form()
    try:
        user = await run_in_threadpool(runtime.auth.accounts.set_role, name, str(form.get("role") or ""))
    except MierukaError as exc:
        return _users_page(runtime, request, exc.status_code, error=exc.message)
    audit(request, "user.role", f"user:{name}", role=user.role.value)
    return _users_page(
        runtime, request, notice=_("%(name)s is now %(role)s.", name=name, role=role_label(user.role.value))
    )


@router.post("/users/{name}/delete", response_class=HTMLResponse)
def remove_user(runtime: RuntimeDep, request: Request, name: str) -> HTMLResponse:
    try:
        runtime.auth.accounts.remove_user(name)
    except MierukaError as exc:
        return _users_page(runtime, request, exc.status_code, error=exc.message)
    audit(request, "user.remove", f"user:{name}")
    return _users_page(runtime, request, notice=_("Removed %(name)s.", name=name))


@router.post("/users/{name}/link", response_class=HTMLResponse)
def make_link(runtime: RuntimeDep, request: Request, name: str) -> HTMLResponse:
    try:
        secret = runtime.auth.accounts.create_login_link(name)
    except MierukaError as exc:
        return _users_page(runtime, request, exc.status_code, error=exc.message)
    audit(request, "user.link", f"user:{name}")
    url = f"{request.base_url}".rstrip("/") + f"{_root(request)}/login/link/{quote(secret)}"
    return _users_page(
        runtime, request, notice=_("A one-time login link for %(name)s (valid 24 hours):", name=name), link=url
    )


# -- audit log (admins) ----------------------------------------------------------------------------
def _audit_query(runtime: Runtime, request: Request, limit: int) -> tuple[AuditQuery, dict[str, str]]:
    zone = runtime.settings.zone
    q = request.query_params
    keys = ("actor", "action", "target", "task", "since", "until", "cursor")
    filters = {k: (q.get(k) or "").strip()[:300] for k in keys}
    cursor = int(filters["cursor"]) if filters["cursor"].isdigit() and len(filters["cursor"]) < 19 else None
    return AuditQuery(
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        target=filters["target"] or None,
        task=filters["task"] or None,
        since=_day(filters["since"], "since", zone),
        until=_day(filters["until"], "until", zone, end=True),
        before_id=cursor,
        limit=limit,
    ), filters


@router.get("/audit", response_class=HTMLResponse)
def audit_page(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    try:
        query, filters = _audit_query(runtime, request, 101)
    except ValidationError as exc:
        return _page(
            request, "audit.html", status=422, entries=[], filters={}, error=exc.message, next_cursor=None, csv_query=""
        )
    entries = runtime.auth.audit.query(query)
    more = len(entries) > 100
    entries = entries[:100]
    csv_query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v and k != "cursor")
    return _page(
        request,
        "audit.html",
        entries=shown_entries(runtime, entries),
        filters=filters,
        csv_query=csv_query,
        next_cursor=entries[-1].id if more and entries else None,
    )


@router.get("/audit.csv")
def audit_csv(runtime: RuntimeDep, request: Request) -> Response:
    query = _audit_query(runtime, request, 100_000)[0]
    return Response(
        to_csv(runtime.auth.audit.query(query), runtime.settings.zone),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


# -- who is online ---------------------------------------------------------------------------------
@router.get("/presence", response_class=HTMLResponse)
def presence(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    who = principal(request)
    online = [replace(s, page=shown_page(runtime, who, s.page)) for s in runtime.auth.presence.online()]
    return _page(request, "presence.html", online=online, expiry=runtime.auth.presence.expiry)


@router.get("/presence/badge", response_class=HTMLResponse)
def presence_badge(request: Request) -> HTMLResponse:
    """The header's "N online": open pages fetch it every minute, which is also their heartbeat."""
    return _page(request, "_presence_badge.html")


def _day(text: str, field: str, zone: tzinfo, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD, the whole day) or an ISO date-time; naive means the shown time zone."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            _("%(field)s: use a date like 2026-11-21", field=field), [{"field": field, "message": "invalid"}]
        ) from None
    return as_utc(value, field, zone, timedelta(days=1) if len(text) <= 10 and end else timedelta(0))
