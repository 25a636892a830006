"""The pages of dashboards and streams. A page carries the tiles as last computed, so it draws at
once; then it listens to its one event stream (or polls the JSON API where streaming cannot work)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from ...core.access import Principal, allowed
from ...core.dashboards import Chart, Dashboard
from ...i18n import _
from ...live.hub import Live
from ...runtime import Runtime
from ..controls import why_not
from ..displays import page_mode
from ..identity import STATE_KEY, principal
from ..live import live_of, live_or_none, source_json
from ..routers import Router
from ..state import RuntimeDep, pages_of
from ..viewing import viewing
from . import formats
from .forms import form_fields

TEMPLATES = Path(__file__).parent.parent / "templates"


router = Router(include_in_schema=False)


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
            info["refreshed_local"] = formats.local_time(state.refreshed_at, runtime.settings.zone)
            info["schedule_shown"] = source.schedule.label() if source.schedule else _("on demand")
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
    live = live_of(runtime)
    tiles = live.tiles(board.name)
    charts = [t for t in tiles if t["kind"] != "state"]
    mode = page_mode(request)
    return _page(
        request,
        "dashboard.html",
        board=board,
        tiles=tiles if viewing(request) is None else charts,  # without a login: no control's state
        tiles_by_name={t["chart"]: t for t in charts},
        controls=control_views(runtime, live, board, [t for t in tiles if t["kind"] == "state"], request),
        spans=spans_without_controls(board) if mode["readonly"] and board.controls else {},
        **mode,
    )


def spans_without_controls(board: Dashboard) -> dict[str, int]:
    """Each chart's columns on a page that leaves the controls out (a wall screen, a kiosk): where a
    chart ends a row short because the next one no longer fits, it runs to the row's end, so the
    places the controls held leave no holes. The last row stays as declared."""
    spans: dict[str, int] = {}
    used, last = 0, ""
    for chart in board.charts:
        if used + chart.span > board.columns and last:
            spans[last] += board.columns - used
            used = 0
        spans[chart.name] = chart.span
        used, last = used + chart.span, chart.name
    return spans


def control_views(
    runtime: Runtime, live: Live, board: Dashboard, states: list[dict[str, Any]], request: Request
) -> dict[str, dict[str, Any]]:
    """What each control shows: its state now, why the reader may not use it, a form's fields."""
    who: Principal | None = getattr(request.state, STATE_KEY, None)  # None: anonymous (a wall screen)
    by_control = {t["control"]: t for t in states}
    views: dict[str, dict[str, Any]] = {}
    for control in board.controls:
        task = runtime.tasks.get(control.task)
        state = by_control.get(control.name, {})
        value, error = state.get("value"), state.get("error")
        if control.is_stream:
            value, error = _stream_value(live, control.source, control.column)
        # A task the reader may not see keeps its parameters to itself: a disabled form shows none.
        shown = who is not None and allowed(who, task.allow)
        views[control.name] = {
            "value": value,
            "on": is_on(value),
            "chosen": chosen(control.options or (), value),
            "has_state": bool(control.state) and (value is not None),
            "state_error": error,
            "why": why_not(who, task),
            "fields": [f for f in form_fields(task) if f.name in control.fields]
            if control.kind == "form" and shown
            else [],
        }
    return views


def is_on(value: Any) -> bool:
    """Whether a toggle's state reads as on: as dashboards.js reads it ("off", "0", "no" are off)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "off", "no")
    return bool(value)


def chosen(options: tuple[Any, ...], value: Any) -> int | None:
    """Which option a select's state is (its index), as dashboards.js matches it: equal, or equal
    as text (a stream's 50.0 is the option 50, a source's "50" too)."""
    if value is None:
        return None
    for i, option in enumerate(options):
        if option == value or str(option) == str(value):
            return i
    return None


def _stream_value(live: Live, stream: str, series: str) -> tuple[Any, str | None]:
    runner = live.stream(stream)
    batch = runner.buffer.since(max(0, runner.buffer.last - 1))
    values = batch.series.get(series) if batch is not None else None
    return (values[-1] if values else None), runner.error


@router.get("/streams/{name}", response_class=HTMLResponse)
def stream(runtime: RuntimeDep, request: Request, name: str) -> HTMLResponse:
    spec = live_of(runtime).stream(name).spec
    chart = Chart("stream", spec.name, title=spec.title, window=spec.window, height=360, name=spec.name)
    return _page(request, "stream.html", stream=spec, chart=chart)
