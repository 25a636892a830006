"""Single sign-on pages: "Sign in with <provider>" leaves for the OpenID provider
(/login/oidc/{provider}), the provider sends the browser back (/login/oidc/{provider}/callback) and
a session starts as a password login's does; logging out also ends the provider's session when it
offers RP-initiated logout. Every failure is a page in words with a way to try again, never a 500.
The flow itself is auth/oidc.py."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from ..auth.accounts import User
from ..auth.oidc import PENDING_TTL, Client, Identity, Pending, SignInFailed
from ..auth.oidc_providers import Provider, configured
from ..auth.oidc_subjects import Subjects
from ..errors import NotFoundError, ValidationError
from ..i18n import _
from ..runtime import Runtime
from .identity import address, principal
from .routers import Router, adopt
from .state import RuntimeDep, pages_of
from .ui.account_pages import _start_session  # the one way a session starts, as a password login's

PENDING_COOKIE = "mieruka_oidc"  # the login on its way through the provider (auth/oidc.py: Pending)
SIGNED_IN_COOKIE = "mieruka_sso"  # which provider this browser's session came from, for logout
SSO_FAILED = "sso.failed"  # the audit action of a sign-in that did not end in a session
MAX_HINT = 3000  # an ID token longer than this is not kept for the logout's id_token_hint
# Refusals of someone the provider did sign in: trying again as is signs the same account in, so
# the page offers to sign in as someone else (the provider asks who, despite its session).
SOMEONE_ELSE = frozenset(
    {"sso_no_role", "sso_not_admitted", "sso_name_taken", "sso_renamed", "sso_no_username", "sso_unverified_email"}
)

router = Router(include_in_schema=False)


def install(api: FastAPI, runtime: Runtime, pages: Jinja2Templates) -> None:
    """Read the providers (a bad setting stops the start with its reason), add the routes, and give
    the login page its buttons."""
    providers = configured(runtime.settings)
    api.state.oidc = Client(providers) if providers else None
    api.state.oidc_subjects = Subjects(runtime.auth.db)
    api.state.after_logout = after_logout  # called by POST /logout (ui/account_pages.py)
    pages.env.globals["sign_in_providers"] = [(p.id, p.name) for p in providers]
    adopt(api.router, router)


def _client(request: Request) -> Client:
    client: Client | None = getattr(request.app.state, "oidc", None)
    if client is None:
        raise SignInFailed(_("Single sign-on is not set up on this server (setting oidc_providers)."), "sso_off", 404)
    return client


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def _base(runtime: Runtime, request: Request) -> str:
    """The server's address as the browser reaches it: public_url, else this request's."""
    if runtime.settings.public_url:
        return runtime.settings.public_url.rstrip("/")
    return f"{request.url.scheme}://{request.url.netloc}{_root(request)}"


def _callback_url(runtime: Runtime, request: Request, provider: Provider) -> str:
    return f"{_base(runtime, request)}/login/oidc/{provider.id}/callback"


def _cookie(request: Request, response: Response, name: str, value: str, max_age: int, path: str) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="lax",  # the provider sends the browser back with a top-level GET from its site
        secure=request.url.scheme == "https",
    )


def _failed(request: Request, exc: SignInFailed, provider: Provider | None) -> HTMLResponse:
    page = pages_of(request).TemplateResponse(
        request,
        "sso_error.html",
        {
            "root": _root(request),
            "last_event_id": 0,
            "message": exc.message,
            "code": exc.code,
            "provider": provider,
            "someone_else": exc.code in SOMEONE_ELSE,
        },
        status_code=exc.status_code,
    )
    page.delete_cookie(PENDING_COOKIE, path=f"{_root(request) or ''}/login/oidc")
    return page


def _safe_next(request: Request, target: str | None) -> str:
    base = _root(request)
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return f"{base}/"
    return target if base and target.startswith(base + "/") else f"{base}{target}"


@router.get("/login/oidc/{provider}", response_model=None)
def begin(
    runtime: RuntimeDep, request: Request, provider: str, next: str | None = None, prompt: str | None = None
) -> Response:
    """Leave for the provider's sign-in page, with this browser's pending login in a cookie;
    `prompt=login` has the provider ask who signs in even when it has a session."""
    found: Provider | None = None
    try:
        client = _client(request)
        found = client.provider(provider)
        pending = Pending.new(found.id, _safe_next(request, (next or "")[:2000]))
        asked = "login" if prompt == "login" else None
        url = client.authorization_url(found, pending, _callback_url(runtime, request, found), asked)
    except SignInFailed as exc:
        return _failed(request, exc, found)
    response = RedirectResponse(url, status_code=303)
    _cookie(request, response, PENDING_COOKIE, pending.cookie(), PENDING_TTL, f"{_root(request)}/login/oidc")
    return response


@router.get("/login/oidc/{provider}/callback", response_model=None)
async def callback(runtime: RuntimeDep, request: Request, provider: str) -> Response:
    """The provider's answer: a code (or an error) and the state; a session when all is right."""
    found: Provider | None = None
    try:
        client = _client(request)
        found = client.provider(provider)
        pending = Pending.read(request.cookies.get(PENDING_COOKIE, ""))
        if pending is None:
            raise SignInFailed(
                _(
                    "This browser has no sign-in under way: it was finished already, took too long, or cookies "
                    "are blocked. Please sign in again."
                ),
                "sso_no_pending",
            )
        params = {k: v[:4096] for k, v in request.query_params.items()}
        redirect_uri = _callback_url(runtime, request, found)
        identity = await run_in_threadpool(client.finish, found, pending, params, redirect_uri)
        user = await run_in_threadpool(_sign_in, runtime, request, identity)
    except SignInFailed as exc:
        # Not login.failed: that counts towards the password logins' lock of this address.
        runtime.auth.audit.record(
            exc.name or f"({provider[:40]})",
            SSO_FAILED,
            f"oidc:{provider[:40]}",
            address(request),
            {"reason": exc.code},
        )
        if exc.name is not None:
            await run_in_threadpool(_cut_off, runtime, request, exc.name)
        return _failed(request, exc, found)
    done = RedirectResponse(_safe_next(request, pending.target), status_code=303)  # a cookie may be planted
    await run_in_threadpool(_start_session, runtime, request, done, user)
    done.delete_cookie(PENDING_COOKIE, path=f"{_root(request)}/login/oidc")
    hint = identity.id_token if len(identity.id_token) <= MAX_HINT else ""
    _cookie(
        request, done, SIGNED_IN_COOKIE, f"{found.id}.{hint}", int(runtime.settings.session_max_age), _path(request)
    )
    return done


def _path(request: Request) -> str:
    return _root(request) or "/"


def _sign_in(runtime: Runtime, request: Request, identity: Identity) -> User:
    provider = _client(request).provider(identity.provider)
    subjects: Subjects = request.app.state.oidc_subjects
    subjects.check(provider, identity.subject, identity.name)
    try:
        user = runtime.auth.accounts.sign_in_external(
            identity.name,
            "oidc",
            identity.role,
            identity.groups,
            display_name=identity.display_name,
            address=address(request),
        )
    except ValidationError as exc:
        raise SignInFailed(
            _("You cannot sign in as %(name)s here: %(reason)s.", name=repr(identity.name), reason=exc.message),
            "sso_name_taken",
            403,
        ) from None
    subjects.link(provider, identity.subject, user.id)
    runtime.auth.audit.record(
        user.name,
        "login",
        f"user:{user.name}",
        address(request),
        {"via": "oidc", "provider": identity.provider, "role": user.role.value, "groups": list(identity.groups)[:50]},
    )
    return user


def _cut_off(runtime: Runtime, request: Request, name: str) -> None:
    """The provider vouched for `name` but no group admits them any more: a single sign-on user of
    that name loses its sessions and tokens now rather than when they run out."""
    accounts = runtime.auth.accounts
    try:
        user = accounts.get_user(name)
    except NotFoundError:
        return
    if user.source != "oidc":
        return
    ended = accounts.cut_off(name)
    runtime.auth.audit.record(
        "oidc", "user.cut_off", f"user:{name}", address(request), {"reason": "in no admitted group", "sessions": ended}
    )


def _from_sso(runtime: Runtime, request: Request) -> bool:
    """Whether the session ending is a single sign-on user's (a password login since leaves the
    cookie behind, and its logout has no business at the provider)."""
    who = principal(request)
    try:
        return who.via == "session" and runtime.auth.accounts.get_user(who.name).source == "oidc"
    except NotFoundError:
        return False


def after_logout(runtime: Runtime, request: Request, response: Response) -> Response:
    """POST /logout's answer for a session that came from a provider: a page that goes on to the
    provider's end_session_endpoint (which comes back to the login page), when it has one. A page,
    not a redirect: the pages' Content-Security-Policy (form-action 'self') stops a form's redirect
    to another site."""
    kept = request.cookies.get(SIGNED_IN_COOKIE)
    if not kept:
        return response
    response.delete_cookie(SIGNED_IN_COOKIE, path=_path(request))
    client: Client | None = getattr(request.app.state, "oidc", None)
    ident, _, hint = kept.partition(".")
    provider = client.providers.get(ident) if client is not None else None
    if client is None or provider is None or not _from_sso(runtime, request):
        return response
    url = client.logout_url(provider, hint, f"{_base(runtime, request)}/login")
    if url is None:
        return response
    page = pages_of(request).TemplateResponse(
        request, "sso_logout.html", {"root": _root(request), "last_event_id": 0, "url": url, "provider": provider}
    )
    for name, value in response.raw_headers:
        if name == b"set-cookie":
            page.raw_headers.append((name, value))
    return page
