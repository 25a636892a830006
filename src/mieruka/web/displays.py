"""Wall screens: the display links admins make, and what the routes give a reader without a login.

A dashboard declared `public=True` is shown to anyone, read-only; any other dashboard is shown to
the holder of one of its display links. Either way the reader gets that dashboard's page and its
live data (its tiles' sources and streams) and nothing else: the routes that show them say so with
`shown=` in policy.py, and `Viewing` (web/viewing.py) answers for one request.

A display link is `<server>/display#<secret>`: the secret sits in the URL's fragment, which browsers
never send, so it reaches no request line (proxy logs, the Referer, this server's logs). The
display page's script posts it once and gets a cookie (HttpOnly) that stands for the link from then
on; the link's open event streams ask every CHECK_EVERY seconds whether it still works, so a
revoked or expired link goes dark within seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ..auth.displays import DisplayLink
from ..core.clock import as_utc, utcnow
from ..errors import MierukaError, NotFoundError, ValidationError
from ..i18n import _
from ..notes import note
from .audit import audit
from .feeds import Topics
from .identity import STATE_KEY, principal
from .ids import DISPLAY_ID
from .routers import Router
from .serialize import iso
from .sse import Held, OpenStreams
from .state import RuntimeDep, open_streams_of, pages_of, runtime_of
from .viewing import DISPLAY_COOKIE, Viewing, shown_streams, unsent_tiles, viewing

if TYPE_CHECKING:
    from ..runtime import Runtime

CHECK_EVERY = 2.0  # seconds between the checks of an open display stream's link
COOKIE_MAX_AGE = 400 * 86400  # browsers keep a cookie 400 days at most
GONE = "no display link at this address: it was revoked, has expired, or never existed"
VALID_FOR = {"": None, "1": 1, "7": 7, "30": 30, "365": 365}  # the page's choices, in days


def display_topics(runtime: Runtime, seen: Viewing, names: list[str], live: bool) -> Topics:
    """The topics of a multiplexed stream as a reader without a login may have them: the shown
    dashboards and their charts' streams (no control's state). Every other topic is refused in the
    same words, so the refusals tell nothing of what exists."""
    dashboards: dict[str, list[str]] = {}
    streams: dict[str, None] = {}
    refused: dict[str, str] = {}
    accepted: list[str] = []
    unsent: set[str] = set()
    for name in dict.fromkeys(names):
        kind, _, value = name.partition(":")
        if live and kind == "dashboard" and seen.shows(runtime, "dashboard", value):
            board = runtime.dashboards.get(value)
            dashboards[board.name] = shown_streams(board)
            streams.update(dict.fromkeys(dashboards[board.name]))
            unsent.update(unsent_tiles(board))
            accepted.append(name)
        elif live and kind == "stream" and seen.shows(runtime, "stream", value):
            streams[value] = None
            accepted.append(name)
        else:
            refused[name] = note("topic.unknown", topic=repr(name[:100]))
    return Topics(
        hidden=frozenset(task.name for task in runtime.tasks),
        dashboards=dashboards,
        streams=tuple(streams),
        refused=refused,
        accepted=tuple(accepted),
        unsent=frozenset(unsent),
    )


class Revocable(OpenStreams):
    """The event streams of one display link's request: held by the server's registry like every
    stream (counted, ended at shutdown), and ended within `every` seconds once `valid()` says no."""

    def __init__(self, streams: OpenStreams, valid: Callable[[], bool], every: float = CHECK_EVERY) -> None:
        super().__init__()
        self.streams, self.valid, self.every = streams, valid, every
        self._watching: dict[Held, tuple[Held, asyncio.Task[None]]] = {}

    def hold(self, wake: Callable[[], None]) -> Held:
        held = super().hold(wake)
        outer = self.streams.hold(wake)
        self._watching[held] = (outer, asyncio.get_running_loop().create_task(self._watch(held)))
        return held

    def release(self, held: Held) -> None:
        super().release(held)
        outer, task = self._watching.pop(held, (None, None))
        if outer is not None:
            outer.release()
        if task is not None:
            task.cancel()

    async def _watch(self, held: Held) -> None:
        while not held.ended:
            await asyncio.sleep(self.every)
            try:
                valid = await asyncio.to_thread(self.valid)
            except Exception:
                valid = False  # a database that does not answer cannot vouch for the link
            if not valid:
                held.end()


def streams_of(request: Request) -> OpenStreams:
    """Where this request's event stream is held: a display link's ends when the link stops working."""
    seen = viewing(request)
    if seen is None or seen.link is None:
        return open_streams_of(request)
    displays, link_id = runtime_of(request).auth.displays, seen.link.id
    return Revocable(open_streams_of(request), lambda: bool(displays.is_active(link_id)))


# -- the API (admins) -------------------------------------------------------------------------------
class DisplayIn(BaseModel):
    dashboard: str = Field(min_length=1, max_length=100, description="The dashboard the link shows.")
    label: str = Field(min_length=1, max_length=200, description="Where the display is, e.g. 'Ward 3 corridor'.")
    expires_at: datetime | None = Field(None, description="When the link stops working (UTC unless zoned).")
    valid_for: float | None = Field(
        None, gt=0, le=3650 * 86400, description="Or: seconds from now the link works. Neither: until revoked."
    )


class DisplayOut(BaseModel):
    id: int
    dashboard: str
    label: str
    created_by: str
    created_at: str
    expires_at: str | None
    last_used_at: str | None = Field(description="Last time a display used it (to the minute).")
    revoked_at: str | None
    active: bool


class DisplayCreated(DisplayOut):
    url: str = Field(description="The display's address, with the secret: shown this once.")


def display_json(link: DisplayLink) -> dict[str, Any]:
    return {
        "id": link.id,
        "dashboard": link.dashboard,
        "label": link.label,
        "created_by": link.created_by,
        "created_at": iso(link.created_at),
        "expires_at": iso(link.expires_at),
        "last_used_at": iso(link.last_used_at),
        "revoked_at": iso(link.revoked_at),
        "active": link.active(utcnow()),
    }


def _create(
    runtime: Runtime, request: Request, dashboard: str, label: str, expires: datetime | None
) -> tuple[DisplayLink, str]:
    if dashboard not in runtime.dashboards:
        raise ValidationError(
            _("dashboard: no dashboard named %(name)s", name=repr(dashboard[:100])),
            [{"field": "dashboard", "message": "unknown"}],
        )
    link, secret = runtime.auth.displays.create(dashboard, label, principal(request).name, expires)
    audit(
        request, "display.create", f"display:{link.id}", dashboard=dashboard, label=link.label, expires_at=iso(expires)
    )
    root = str(request.scope.get("root_path", ""))
    return link, f"{request.url.scheme}://{request.url.netloc}{root}/display#{secret}"


def _revoke(runtime: Runtime, request: Request, display_id: int) -> DisplayLink:
    link = runtime.auth.displays.revoke(display_id)
    audit(request, "display.revoke", f"display:{link.id}", dashboard=link.dashboard, label=link.label)
    return link


router = Router()


@router.get("/api/displays", tags=["displays"], response_model=list[DisplayOut])
def list_displays(runtime: RuntimeDep) -> list[dict[str, Any]]:
    """Every display link (admins), newest first: revoked and expired ones say when they stopped."""
    return [display_json(link) for link in runtime.auth.displays.list()]


@router.post("/api/displays", tags=["displays"], status_code=201, response_model=DisplayCreated)
def create_display(runtime: RuntimeDep, request: Request, body: DisplayIn) -> dict[str, Any]:
    """Make a display link for one dashboard (admins): anyone with its URL sees that dashboard,
    read-only, without logging in, until it is revoked or expires. The URL (with the secret) is in
    this answer only: the secret is stored hashed."""
    if body.expires_at is not None and body.valid_for is not None:
        raise ValidationError("give expires_at or valid_for, not both", [{"field": "valid_for", "message": "both"}])
    expires = as_utc(body.expires_at, "expires_at")
    if body.valid_for is not None:
        expires = utcnow() + timedelta(seconds=body.valid_for)
    link, url = _create(runtime, request, body.dashboard, body.label, expires)
    return {**display_json(link), "url": url}


@router.delete(f"/api/displays/{DISPLAY_ID}", tags=["displays"], response_model=DisplayOut)
def revoke_display(runtime: RuntimeDep, request: Request, display_id: int) -> dict[str, Any]:
    """Revoke a display link (admins): it stops working at once, its open streams within seconds."""
    return display_json(_revoke(runtime, request, display_id))


# -- the pages -------------------------------------------------------------------------------------
pages = Router(include_in_schema=False)


def _displays_page(runtime: Runtime, request: Request, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("root", request.scope.get("root_path", ""))
    context.setdefault("last_event_id", 0)
    context.update(links=runtime.auth.displays.list(), dashboards=list(runtime.dashboards), now=utcnow())
    return pages_of(request).TemplateResponse(request, "displays.html", context, status_code=status)


@pages.get("/displays", response_class=HTMLResponse)
def displays_page(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    return _displays_page(runtime, request)


@pages.post("/displays", response_class=HTMLResponse)
async def create_display_form(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    form = await request.form()
    dashboard, label = str(form.get("dashboard") or ""), str(form.get("label") or "")
    days = str(form.get("valid_for") or "")
    if days not in VALID_FOR:
        return _displays_page(
            runtime, request, 422, error=_("valid for: one of %(choices)s days", choices=", ".join(VALID_FOR))
        )
    span = VALID_FOR[days]
    expires = utcnow() + timedelta(days=span) if span is not None else None
    try:
        link, url = await run_in_threadpool(_create, runtime, request, dashboard, label, expires)
    except MierukaError as exc:
        return _displays_page(runtime, request, exc.status_code, error=exc.message)
    notice = _(
        "Display link %(id)s for %(dashboard)s (%(label)s); open it on the display, it is shown this once:",
        id=link.id,
        dashboard=link.dashboard,
        label=link.label,
    )
    return _displays_page(runtime, request, 201, notice=notice, url=url)


@pages.post(f"/displays/{DISPLAY_ID}/revoke", response_class=HTMLResponse)
def revoke_display_form(runtime: RuntimeDep, request: Request, display_id: int) -> HTMLResponse:
    try:
        link = _revoke(runtime, request, display_id)
    except MierukaError as exc:
        return _displays_page(runtime, request, exc.status_code, error=exc.message)
    return _displays_page(
        runtime, request, notice=_("Revoked display link %(id)s (%(label)s).", id=link.id, label=link.label)
    )


@pages.get("/display", response_class=HTMLResponse)
def display_page(request: Request) -> HTMLResponse:
    """The display link's landing page: its script posts the secret from the URL's fragment."""
    context = {"root": request.scope.get("root_path", ""), "last_event_id": 0, "kiosk": True, "readonly": True}
    return pages_of(request).TemplateResponse(request, "display.html", context)


class DisplayKey(BaseModel):
    secret: str = Field("", max_length=200, description="The fragment of the display link (empty: the cookie's).")


@pages.post("/display")
def open_display(runtime: RuntimeDep, request: Request, body: DisplayKey) -> Response:
    """Trade a display link's secret for the display cookie; answers where the display goes."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ValidationError('send the secret as JSON: {"secret": "..."}')  # no cross-site form posts it
    secret = body.secret or request.cookies.get(DISPLAY_COOKIE, "")
    link = runtime.auth.displays.check(secret) if secret else None
    if link is None or link.dashboard not in runtime.dashboards:
        raise NotFoundError(GONE)
    root = str(request.scope.get("root_path", ""))
    response = JSONResponse({"url": f"{root}/dashboards/{link.dashboard}?kiosk=1", "label": link.label})
    age = COOKIE_MAX_AGE
    if link.expires_at is not None:
        age = max(1, min(age, int((link.expires_at - utcnow()).total_seconds())))
    response.set_cookie(
        DISPLAY_COOKIE,
        secret,
        max_age=age,
        path=root or "/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def page_mode(request: Request) -> dict[str, Any]:
    """How a dashboard page is laid out: `readonly` (no controls) for a reader without a login and
    in the kiosk layout; `kiosk` (full screen, large type, no navigation) for a display link, or
    asked for with ?kiosk=1."""
    seen = viewing(request)
    anonymous = getattr(request.state, STATE_KEY, None) is None
    link = seen.link if seen is not None and anonymous else None
    kiosk = link is not None or request.query_params.get("kiosk", "") in ("1", "true", "yes")
    return {"readonly": anonymous or kiosk, "kiosk": kiosk, "display_label": link.label if link else ""}
