"""The language of each request (issue 22), and the header's language switcher.

Chosen in this order: the signed-in user's own setting (auth/languages.py); the language this
browser last picked in the switcher (a cookie: the login page and the open single-user mode have no
user to keep it); the browser's Accept-Language; the setting `language`. The security middleware
puts it in mieruka.i18n.LANGUAGE for the rest of the request's task.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from fastapi import Form, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from ..auth.languages import checked
from ..i18n import negotiate, supported
from .identity import STATE_KEY
from .routers import Router
from .state import runtime_of

if TYPE_CHECKING:
    from ..core.access import Principal
    from ..runtime import Runtime

COOKIE = "mieruka_language"
COOKIE_AGE = 400 * 86400  # the longest browsers keep a cookie

router = Router(include_in_schema=False)


@functools.lru_cache(maxsize=512)
def _negotiated(header: str) -> str | None:
    return negotiate(header)


def before_login(request: Request, default: str) -> str:
    """The request's language before knowing who asks: the switcher's cookie, the browser's, `default`."""
    return (
        supported(request.cookies.get(COOKIE))
        or _negotiated(request.headers.get("accept-language", "")[:1000])
        or default
    )


async def of_user(runtime: Runtime, who: Principal | None) -> str | None:
    """The signed-in user's own language (None: none set, or no user), asking the database at most
    every few seconds; a database that does not answer leaves the choice to the browser."""
    if who is None or who.user_id is None:
        return None
    languages = runtime.auth.languages
    known, language = languages.cached(who.user_id)
    if known:
        return language
    try:
        return await run_in_threadpool(languages.of, who.user_id)
    except Exception:
        return None


def _back_to(request: Request, target: str) -> str:
    """Where the switcher came from: a path of this server, else its home page."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{request.scope.get('root_path', '')}/"


@router.post("/language")
def switch_language(request: Request, language: str = Form(""), target: str = Form("/", alias="next")) -> Response:
    """The switcher: saves a signed-in user's language, and the browser's in a cookie either way
    (the login page after logging out keeps it); back to the page it was on."""
    tag = checked(language)
    who: Principal | None = getattr(request.state, STATE_KEY, None)
    if who is not None and who.user_id is not None:
        runtime_of(request).auth.languages.set(who.name, tag)
    response = RedirectResponse(_back_to(request, target), status_code=303)
    path = str(request.scope.get("root_path", "")) or "/"
    if tag is None:
        response.delete_cookie(COOKIE, path=path)
    else:
        secure = request.url.scheme == "https"
        response.set_cookie(COOKIE, tag, max_age=COOKIE_AGE, path=path, samesite="lax", secure=secure)
    return response
