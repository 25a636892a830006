"""What a request without a login may read: the public dashboards, and the dashboard of the display
link whose cookie it carries (see web/displays.py), with their sources and streams. The security
middleware asks it for the routes policy.py marks `shown=`, and keeps the answer in the request's
state for the route (`viewing(request)`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..auth.displays import DisplayLink

if TYPE_CHECKING:
    from ..core.dashboards import Dashboard
    from ..runtime import Runtime

DISPLAY_COOKIE = "mieruka_display"
VIEWING_KEY = "mieruka_viewing"


@dataclass(frozen=True)
class Viewing:
    """What a request without a login may read: the public dashboards and its display link's one."""

    dashboards: frozenset[str]
    link: DisplayLink | None = None

    def shows(self, runtime: Runtime, kind: str, name: str) -> bool:
        """Whether `name` (a dashboard, or a source or stream one of them shows) is shown; kind
        "topics": whether there is anything at all (the route checks each topic)."""
        if kind == "topics":
            return bool(self.dashboards)
        if kind == "dashboard":
            return name in self.dashboards
        boards = [runtime.dashboards.get(board) for board in self.dashboards if board in runtime.dashboards]
        if kind == "source":
            return any(name in shown_sources(board) for board in boards)
        if kind == "stream":
            return any(name in shown_streams(board) for board in boards)
        return False


# Without a login a dashboard is its charts: its controls (and the states they read) are not shown.
def shown_sources(board: Dashboard) -> list[str]:
    return list(dict.fromkeys(chart.source for chart in board.charts if not chart.is_stream))


def shown_streams(board: Dashboard) -> list[str]:
    return list(dict.fromkeys(chart.source for chart in board.charts if chart.is_stream))


def unsent_tiles(board: Dashboard) -> frozenset[str]:
    """The tiles of `board` a reader without a login is never sent: its controls' states."""
    return frozenset(control.key for control in board.controls)


def public_dashboards(runtime: Runtime) -> frozenset[str]:
    return frozenset(board.name for board in runtime.dashboards if board.public)


def viewing_for(runtime: Runtime, secret: str | None) -> Viewing:
    """The public dashboards, and the one of the display link whose secret the request carries."""
    public = public_dashboards(runtime)
    link = runtime.auth.displays.check(secret) if secret else None
    if link is None or link.dashboard not in runtime.dashboards:
        return Viewing(public)
    return Viewing(public | {link.dashboard}, link)


async def viewing_of(runtime: Runtime, request: Request) -> Viewing:
    secret = request.cookies.get(DISPLAY_COOKIE)
    if not secret:
        return Viewing(public_dashboards(runtime))
    return await run_in_threadpool(viewing_for, runtime, secret)


def viewing(request: Request) -> Viewing | None:
    """What this request reads without a login (set by the security middleware on the routes that
    show dashboards to anyone); None for a signed-in user."""
    found: Viewing | None = getattr(request.state, VIEWING_KEY, None)
    return found
