"""The pages of dashboards and streams. A page carries the tiles as last computed, so it draws at
once; then it listens to its one event stream (or polls the JSON API where streaming cannot work)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ...app import App
from ...core.dashboards import Chart
from ..live import live_of, live_or_none, source_json
from . import render

TEMPLATES = Path(__file__).parent.parent / "templates"


def dashboards_ui_router(app: App) -> APIRouter:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    zone = app.settings.zone
    env.filters["duration"] = render.human_duration
    env.filters["iso_local"] = lambda text: render.local_time(datetime.fromisoformat(text.replace("Z", "+00:00")),
                                                              zone)
    env.globals["app_title"] = app.title
    env.globals["timezone"] = app.settings.timezone
    router = APIRouter(include_in_schema=False)

    def page(request: Request, name: str, **context: Any) -> HTMLResponse:
        context.setdefault("root", request.scope.get("root_path", ""))
        context.setdefault("last_event_id", 0)
        return templates.TemplateResponse(request, name, context)

    @router.get("/dashboards", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        sources: list[dict[str, Any]] = []
        streams: list[Any] = []
        live = live_or_none(app)
        if live is not None:
            for source in live.sources:
                state = live.refresher.state(source.name)
                info = source_json(source, state, live)
                info["refreshed_local"] = render.local_time(state.refreshed_at, zone)
                sources.append(info)
            streams = [runner.spec for runner in live.streams.values()]
        return page(request, "dashboards.html", dashboards=list(app.dashboards), streams=streams, sources=sources)

    @router.get("/dashboards/{name}", response_class=HTMLResponse)
    def dashboard(request: Request, name: str) -> HTMLResponse:
        board = app.dashboards.get(name)
        tiles = live_of(app).tiles(board.name)
        return page(request, "dashboard.html", board=board, tiles=tiles,
                    tiles_by_name={t["chart"]: t for t in tiles})

    @router.get("/streams/{name}", response_class=HTMLResponse)
    def stream(request: Request, name: str) -> HTMLResponse:
        spec = live_of(app).stream(name).spec
        chart = Chart("stream", spec.name, title=spec.title, window=spec.window, height=360, name=spec.name)
        return page(request, "stream.html", stream=spec, chart=chart)

    return router
