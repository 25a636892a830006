"""The pages of dashboards and streams. A page carries the tiles as last computed, so it draws at
once; then it listens to its one event stream (or polls the JSON API where streaming cannot work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ...core.access import allowed
from ...core.dashboards import Chart
from ..identity import principal
from ..displays import page_mode
from ..live import live_of, live_or_none, source_json
from ..state import RuntimeDep, pages_of
from . import render

TEMPLATES = Path(__file__).parent.parent / "templates"


router = APIRouter(include_in_schema=False)


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    context.setdefault("root", request.scope.get("root_path", ""))
    context.setdefault("last_event_id", 0)
    return pages_of(request).TemplateResponse(request, name, context)


@router.get("/dashboards", response_class=HTMLResponse)
def index(runtime: RuntimeDep, request: Request) -> HTMLResponse:
    sources: list[dict[str, Any]] = []
    streams: list[Any] = []
    live = live_or_none(runtime)
    if live is not None:
        for source in live.sources:
            if not allowed(principal(request), runtime.dashboards.source_allow(source.name)):
                continue
            state = live.refresher.state(source.name)
            info = source_json(source, state, live)
            info["refreshed_local"] = render.local_time(state.refreshed_at, runtime.settings.zone)
            sources.append(info)
        streams = [
            runner.spec
            for runner in live.streams.values()
            if allowed(principal(request), runtime.dashboards.stream_allow(runner.spec.name))
        ]
    who = principal(request)
    return _page(
        request,
        "dashboards.html",
        dashboards=[b for b in runtime.dashboards if allowed(who, b.allow)],
        streams=streams,
        sources=sources,
    )


@router.get("/dashboards/{name}", response_class=HTMLResponse)
def dashboard(runtime: RuntimeDep, request: Request, name: str) -> HTMLResponse:
    board = runtime.dashboards.get(name)
    tiles = live_of(runtime).tiles(board.name)
    return _page(
        request,
        "dashboard.html",
        board=board,
        tiles=tiles,
        tiles_by_name={t["chart"]: t for t in tiles},
        **page_mode(request),
    )


@router.get("/streams/{name}", response_class=HTMLResponse)
def stream(runtime: RuntimeDep, request: Request, name: str) -> HTMLResponse:
    spec = live_of(runtime).stream(name).spec
    chart = Chart("stream", spec.name, title=spec.title, window=spec.window, height=360, name=spec.name)
    return _page(request, "stream.html", stream=spec, chart=chart)
