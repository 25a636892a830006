"""Presence as the web layer records it: each authenticated request marks its user as seen, on the
page it comes from (auth/presence.py keeps the records; policy.shown_page says who may be told)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..core.access import Principal
from .errors import outage
from .identity import address

if TYPE_CHECKING:
    from ..runtime import Runtime

HEARTBEAT = "/api/presence/heartbeat"  # records presence itself


async def mark_seen(runtime: Runtime, request: Request, who: Principal | None, template: str) -> None:
    """Note that `who` is here (a session, a token or a proxy's header; not the open mode); a database that does not
    answer is logged, and the request goes on."""
    if who is None or who.via not in ("session", "token", "proxy") or template == HEARTBEAT:
        return
    try:
        await run_in_threadpool(runtime.auth.presence.seen, who, address(request), page_of(request, template))
    except Exception as exc:
        outage(request, exc)


def page_of(request: Request, template: str) -> str:
    """The page a request comes from: the one an htmx request names, the page itself, none for the API."""
    current = request.headers.get("hx-current-url")
    if current:
        return urlparse(current).path
    return request.url.path if not template.startswith("/api/") else ""
