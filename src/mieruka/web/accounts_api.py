"""API of accounts: who am I, users (admins), API tokens, the audit log (read only), presence."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..auth.accounts import MIN_PASSWORD, NAME, Token, User
from ..auth.audit import AuditQuery, to_csv
from ..core.access import Role
from ..core.clock import as_utc, utcnow
from ..errors import PermissionDenied, ValidationError
from .audit import audit
from .identity import principal
from .ids import TOKEN_ID
from .policy import shown_page
from .routers import Router
from .schemas import ErrorOut
from .state import RuntimeDep

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Not logged in, or the token is unknown, revoked or expired"},
    403: {"model": ErrorOut, "description": "The role does not allow it"},
    404: {"model": ErrorOut, "description": "No such user or token"},
    409: {"model": ErrorOut, "description": "Conflicts with existing data"},
    422: {"model": ErrorOut, "description": "Invalid request"},
}


LANGUAGE_HELP = "The user's own language for the pages: en, ja, zh-Hans or ru; none: the browser's."


class MeOut(BaseModel):
    name: str
    role: str
    via: str = Field(description="session, token, or local (no users configured, loopback only)")
    csrf_token: str | None = Field(
        None, description="Send as X-CSRF-Token with state-changing requests made with the session cookie."
    )
    language: str | None = Field(None, description=LANGUAGE_HELP)


class UserOut(BaseModel):
    name: str
    role: str
    created_at: str
    has_password: bool
    source: str = Field(description="Where the user comes from: local, ldap, oidc or proxy.")
    groups: list[str] = Field(description="The directory's or provider's groups at the last login.")
    synced_at: str | None = Field(description="When the directory or provider last confirmed the user.")
    language: str | None = Field(None, description=LANGUAGE_HELP)


class UserIn(BaseModel):
    # The pattern is documented here and checked by the accounts, whose message says it in words.
    name: str = Field(
        min_length=1,
        max_length=100,
        json_schema_extra={"pattern": NAME.pattern},
        description="Letters, digits, '_', '.', '@' or '-', starting with a letter or digit.",
    )
    role: Role = Role.VIEWER
    password: str | None = Field(
        None,
        min_length=MIN_PASSWORD,
        max_length=1024,
        description=(
            f"At least {MIN_PASSWORD} characters; none: the user signs in with a one-time link or uses tokens only."
        ),
    )


class UserPatch(BaseModel):
    role: Role | None = None
    password: str | None = Field(None, min_length=MIN_PASSWORD, max_length=1024)
    language: str | None = Field(None, max_length=20, description=LANGUAGE_HELP + ' "" lets the browser choose.')


class TokenOut(BaseModel):
    id: int
    user: str
    name: str
    hint: str = Field(description="The first characters of the token, to recognise it.")
    created_at: str
    expires_at: str | None
    last_used_at: str | None
    revoked_at: str | None
    active: bool


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown this once, send as 'Authorization: Bearer <token>'.")


class TokenIn(BaseModel):
    name: str = Field("", max_length=200, description="What the token is for.")
    user: str | None = Field(None, max_length=100, description="Admins may create tokens for other users.")
    expires_in_days: float | None = Field(None, gt=0, le=3650, description="Expire after this many days.")


class AuditEntryOut(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target: str
    address: str
    detail: dict[str, Any] | None = Field(
        description="What was done. About a job: task, params (secrets '(hidden)', files as "
        "{file, size}), job, outcome (accepted, duplicate, or the job's state), duration (seconds, "
        "for a job waited for); a batch adds count, created, first_job, last_job. At most 4 KB."
    )


class AuditPage(BaseModel):
    entries: list[AuditEntryOut]
    next_cursor: str | None


class PresenceEntry(BaseModel):
    user: str
    role: str
    last_seen_at: str
    address: str
    page: str


class PresenceOut(BaseModel):
    online: list[PresenceEntry]
    expiry_seconds: float


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def user_json(user: User, language: str | None = None) -> dict[str, Any]:
    return {
        "language": language,
        "name": user.name,
        "role": user.role.value,
        "created_at": iso(user.created_at),
        "has_password": user.has_password,
        "source": user.source,
        "groups": list(user.groups),
        "synced_at": iso(user.synced_at),
    }


def token_json(token: Token) -> dict[str, Any]:
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "hint": token.hint,
        "created_at": iso(token.created_at),
        "expires_at": iso(token.expires_at),
        "last_used_at": iso(token.last_used_at),
        "revoked_at": iso(token.revoked_at),
        "active": token.active(utcnow()),
    }


router = Router(prefix="/api", tags=["auth"], responses=AUTH_ERRORS)


@router.get("/me", response_model=MeOut)
def me(runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """Who this request is made as."""
    who = principal(request)
    language = runtime.auth.languages.of(who.user_id) if who.user_id is not None else None
    return {
        "name": who.name,
        "role": who.role.value,
        "via": who.via,
        "csrf_token": who.session_csrf,
        "language": language,
    }


# -- users (admins) ----------------------------------------------------------------------------


@router.get("/users", response_model=list[UserOut])
def list_users(runtime: RuntimeDep) -> list[dict[str, Any]]:
    languages = runtime.auth.languages.all()
    return [user_json(u, languages.get(u.name)) for u in runtime.auth.accounts.list_users()]


@router.post("/users", status_code=201, response_model=UserOut)
def add_user(runtime: RuntimeDep, request: Request, body: UserIn) -> dict[str, Any]:
    user = runtime.auth.accounts.add_user(body.name, body.role, body.password)
    audit(request, "user.add", f"user:{user.name}", role=user.role.value)
    return user_json(user)


@router.patch("/users/{name}", response_model=UserOut)
def change_user(runtime: RuntimeDep, request: Request, name: str, body: UserPatch) -> dict[str, Any]:
    accounts = runtime.auth.accounts
    user = accounts.get_user(name)
    if body.role is not None and body.role is not user.role:
        user = accounts.set_role(name, body.role)
        audit(request, "user.role", f"user:{name}", role=user.role.value)
    if body.password is not None:
        accounts.set_password(name, body.password)
        audit(request, "user.password", f"user:{name}")
    if body.language is not None:
        language = runtime.auth.languages.set(name, body.language)
        audit(request, "user.language", f"user:{name}", language=language)
    return user_json(accounts.get_user(name), runtime.auth.languages.all().get(name))


@router.delete("/users/{name}", status_code=204, response_class=Response)
def remove_user(runtime: RuntimeDep, request: Request, name: str) -> Response:
    runtime.auth.accounts.remove_user(name)
    audit(request, "user.remove", f"user:{name}")
    return Response(status_code=204)


# -- tokens (own; admins: anyone's) ------------------------------------------------------------


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(
    runtime: RuntimeDep,
    request: Request,
    user: str | None = Query(None, max_length=100, description="Admins: this user's tokens."),
) -> Any:
    """Your API tokens (admins: everyone's, or one user's)."""
    who = principal(request)
    if who.role is not Role.ADMIN:
        if user not in (None, who.name):
            raise PermissionDenied("only admins see other users' tokens")
        user = who.name
    return [token_json(t) for t in runtime.auth.accounts.list_tokens(user)]


@router.post("/tokens", status_code=201, response_model=TokenCreated)
def create_token(runtime: RuntimeDep, request: Request, body: TokenIn) -> dict[str, Any]:
    """Create an API token. The secret is in this answer only: it is stored hashed."""
    who = principal(request)
    owner = body.user or who.name
    if owner != who.name and who.role is not Role.ADMIN:
        raise PermissionDenied("only admins create tokens for other users")
    if who.via == "local" and body.user is None:
        raise ValidationError(
            "no users are configured: add one with `mieruka users add NAME --role admin`",
            [{"field": "user", "message": "no such user"}],
        )
    expires = utcnow() + timedelta(days=body.expires_in_days) if body.expires_in_days else None
    token, secret = runtime.auth.accounts.create_token(owner, body.name, expires)
    audit(request, "token.create", f"token:{token.id}", user=owner, name=body.name)
    return {**token_json(token), "token": secret}


@router.delete(f"/tokens/{TOKEN_ID}", status_code=204, response_class=Response)
def revoke_token(runtime: RuntimeDep, request: Request, token_id: int) -> Response:
    """Revoke a token: it stops working at once."""
    token = runtime.auth.accounts.revoke_token_as(principal(request), token_id)
    audit(request, "token.revoke", f"token:{token_id}", user=token.user)
    return Response(status_code=204)


# -- audit log (admins, read only) ---------------------------------------------------------------


@router.get(
    "/audit",
    response_model=AuditPage,
    responses={200: {"content": {"text/csv": {}}, "description": "A page, or CSV with format=csv"}},
)
def audit_log(
    runtime: RuntimeDep,
    actor: str | None = Query(None, max_length=100),
    action: str | None = Query(None, max_length=100, description="Exact, or a prefix ending in '.' (job.)"),
    target: str | None = Query(None, max_length=300, description="Text in the target."),
    task: str | None = Query(None, max_length=300, description="Entries about this task's jobs."),
    since: datetime | None = Query(None, description="ISO 8601; naive means UTC."),
    until: datetime | None = None,
    cursor: int | None = Query(None, ge=1, lt=2**63, description="next_cursor of the previous page."),
    limit: int = Query(100, ge=1, le=10000),
    format: str = Query("json", pattern="^(json|csv)$"),
) -> Any:
    """The audit log, newest first: who did what, to which target, when, from where."""
    query = AuditQuery(
        actor=actor,
        action=action,
        target=target,
        task=task,
        since=as_utc(since, "since"),
        until=as_utc(until, "until"),
        before_id=cursor,
        limit=limit + 1,
    )
    entries = runtime.auth.audit.query(query)
    more = len(entries) > limit
    entries = entries[:limit]
    if format == "csv":
        return Response(
            to_csv(entries, runtime.settings.zone),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return {"entries": [e.json() for e in entries], "next_cursor": str(entries[-1].id) if more and entries else None}


# -- presence ----------------------------------------------------------------------------------------


@router.get("/presence", response_model=PresenceOut, tags=["presence"])
def presence(runtime: RuntimeDep, request: Request) -> dict[str, Any]:
    """Who is online now: users seen within the last `presence_expiry` seconds (and on which page,
    unless it names something you may not see)."""
    who = principal(request)
    presence = runtime.auth.presence
    return {
        "online": [{**s.json(), "page": shown_page(runtime, who, s.page)} for s in presence.online()],
        "expiry_seconds": presence.expiry,
    }


@router.post("/presence/heartbeat", status_code=204, response_class=Response, tags=["presence"])
async def heartbeat(runtime: RuntimeDep, request: Request) -> Response:
    """Open pages call this every minute, so a reader who only watches stays online."""
    who = principal(request)
    if who.via in ("session", "token", "proxy"):
        page = request.headers.get("x-page", "")[:300]
        await run_in_threadpool(runtime.auth.presence.seen, who, request.client.host if request.client else "", page)
    return Response(status_code=204)
