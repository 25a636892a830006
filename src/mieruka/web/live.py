"""REST routes of sources, dashboards and streams. Every answer comes from what the refresher and
the stream producers keep in memory: no request runs a query (POST .../refresh asks for one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..core.access import allowed
from ..core.clock import utcnow
from ..core.dashboards import Dashboard
from ..errors import ConfigError, ConflictError, NotFoundError, ValidationError
from ..live.hub import Live
from ..live.tiles import translations_of
from ..notes import json_of, note
from ..runtime import Runtime
from ..sources.refresher import SourceState
from ..sources.source import Source
from .displays import display_topics, streams_of
from .feeds import MAX_TOPICS, Topics, feed_response, mux_response, positions
from .identity import hidden, principal
from .ids import parse_id
from .policy import ALLOW_LISTS
from .routers import Router
from .serialize import iso, job_json
from .state import RuntimeDep, open_streams_of
from .viewing import shown_sources, shown_streams, unsent_tiles, viewing

if TYPE_CHECKING:
    from prometheus_client.core import Metric

CSV_CHUNK = 50_000  # rows per piece of a CSV download: a big table is never one string in memory


def _csv_chunks(frame: Any) -> Iterator[str]:
    for start in range(0, max(len(frame), 1), CSV_CHUNK):
        yield frame.iloc[start : start + CSV_CHUNK].to_csv(index=False, header=start == 0)


SSE: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}}}


def live_or_none(runtime: Runtime) -> Live | None:
    """The app's live side, or None when it declares no sources or streams."""
    try:
        return runtime.live
    except ConfigError:
        return None


def live_of(runtime: Runtime) -> Live:
    live = live_or_none(runtime)
    if live is None:
        raise NotFoundError("this app declares no sources or streams")
    return live


def source_json(source: Source, state: SourceState, live: Live) -> dict[str, Any]:
    limits = live.refresher.limits(source)
    return {
        "name": source.name,
        "title": source.title,
        "titles": translations_of(source.title),
        "description": source.description,
        "descriptions": translations_of(source.description),
        "kind": source.adapter.kind,
        "reads": source.adapter.describe(),
        "schedule": source.schedule.describe() if source.schedule else "on demand",
        "interval": source.interval,
        "timeout": limits.timeout,
        "max_rows": limits.max_rows,
        "version": state.version,
        "refreshes": state.attempts,
        "running": state.running,
        "refreshed_at": iso(state.refreshed_at),
        "attempted_at": iso(state.attempted_at),
        "next_refresh_at": iso(state.next_at),
        "duration": state.duration,
        "rows": state.rows,
        "truncated": state.truncated,
        "error": state.error,
        "error_note": json_of(state.error),
        "error_at": iso(state.error_at),
        "warning": source.adapter.warning(),
        "columns": [str(c) for c in state.frame.columns] if state.frame is not None else [],
    }


def dashboard_json(board: Dashboard, root: str) -> dict[str, Any]:
    return {
        "name": board.name,
        "title": board.title,
        "titles": translations_of(board.title),
        "description": board.description,
        "descriptions": translations_of(board.description),
        "columns": board.columns,
        "url": f"{root}/dashboards/{board.name}",
        "sources": board.sources,
        "streams": board.streams,
        "charts": [
            {
                "name": c.name,
                "kind": c.kind,
                "title": c.title,
                "titles": translations_of(c.title),
                "source": c.source,
                "x": c.x,
                "y": list(c.y),
                "span": c.span,
            }
            for c in board.charts
        ],
        "controls": [c.summary() for c in board.controls],
    }


class LiveMetrics:
    """Sources and streams at scrape time: refreshes, failures, age of the data, rows, points."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        live = live_or_none(self.runtime)
        if live is None:
            return
        refreshes = CounterMetricFamily("mieruka_source_refreshes", "Refreshes tried, by source.", labels=["source"])
        failing = GaugeMetricFamily("mieruka_source_failing", "1 when the last refresh failed.", labels=["source"])
        age = GaugeMetricFamily(
            "mieruka_source_age_seconds", "Age of the data shown (since the last good refresh).", labels=["source"]
        )
        duration = GaugeMetricFamily(
            "mieruka_source_refresh_seconds", "Duration of the last refresh.", labels=["source"]
        )
        rows = GaugeMetricFamily("mieruka_source_rows", "Rows of the data shown.", labels=["source"])
        now = utcnow()
        for source in live.sources:
            state = live.refresher.state(source.name)
            refreshes.add_metric([source.name], state.attempts)
            failing.add_metric([source.name], 1 if state.error else 0)
            if state.refreshed_at is not None:
                age.add_metric([source.name], (now - state.refreshed_at).total_seconds())
            if state.duration is not None:
                duration.add_metric([source.name], state.duration)
            rows.add_metric([source.name], state.rows)
        points = CounterMetricFamily("mieruka_stream_points", "Points produced, by stream.", labels=["stream"])
        for name, runner in live.streams.items():
            points.add_metric([name], runner.buffer.last)
        yield from (refreshes, failing, age, duration, rows, points)


router = Router()


# -- sources ---------------------------------------------------------------------------------
@router.get("/api/sources", tags=["sources"])
def list_sources(runtime: RuntimeDep, request: Request) -> list[dict[str, Any]]:
    """Every data source (that you may read) with its status: last refresh, duration, rows, error."""
    live = live_or_none(runtime)
    if live is None:
        return []
    who = principal(request)
    return [
        source_json(s, live.refresher.state(s.name), live)
        for s in live.sources
        if allowed(who, runtime.dashboards.source_allow(s.name))
    ]


@router.get("/api/sources/{name}", tags=["sources"])
def get_source(runtime: RuntimeDep, name: str) -> dict[str, Any]:
    """One source: status, last refresh (UTC), the last error and its time, the columns."""
    live = live_of(runtime)
    source = live.sources.get(name)
    return source_json(source, live.refresher.state(source.name), live)


@router.get(
    "/api/sources/{name}/data",
    tags=["sources"],
    response_model=None,
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
def source_data(
    runtime: RuntimeDep,
    name: str,
    format: str = Query("json", pattern="^(json|csv)$"),
    offset: int = Query(0, ge=0),
    limit: int = Query(1000, ge=1, le=100_000),
) -> Response:
    """The last good table: JSON (`offset`/`limit` pages) or, with `?format=csv`, all of it."""
    live = live_of(runtime)
    source = live.sources.get(name)
    state = live.refresher.state(source.name)
    if state.frame is None and state.attempts == 0:  # just started: its first read ends soon
        state = live.refresher.first_read(source.name)
    if state.frame is None:
        why = f"its last refresh failed: {state.error}" if state.error else "the first refresh has not finished"
        raise ConflictError(f"source {name!r} has no data yet: {why}")
    frame = state.frame
    if format == "csv":
        return StreamingResponse(
            _csv_chunks(frame),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{source.name}.csv"'},
        )
    part = frame.iloc[offset : offset + limit]
    table = json.loads(part.to_json(orient="split", index=False, date_format="iso", date_unit="s"))
    return JSONResponse(
        {
            "source": source.name,
            "version": state.version,
            "refreshed_at": iso(state.refreshed_at),
            "total": len(frame),
            "offset": offset,
            "limit": limit,
            "columns": table["columns"],
            "rows": table["data"],
        }
    )


@router.post("/api/sources/{name}/refresh", tags=["sources"])
def refresh_source(
    runtime: RuntimeDep,
    name: str,
    wait: float = Query(
        0, ge=0, le=300, description="Seconds to wait for the refresh to end (0: answer at once with 202)."
    ),
) -> JSONResponse:
    """Refresh now, or right after the refresh already running (requests coalesce; never two at once)."""
    live = live_of(runtime)
    source = live.sources.get(name)
    before = live.refresher.state(source.name).attempts
    state = live.refresher.refresh(source.name, wait=wait or None)
    done = state.attempts > before
    return JSONResponse(source_json(source, state, live), status_code=200 if done else 202)


# -- dashboards ------------------------------------------------------------------------------
@router.get("/api/dashboards", tags=["dashboards"])
def list_dashboards(runtime: RuntimeDep, request: Request) -> list[dict[str, Any]]:
    """The dashboards you may see."""
    who = principal(request)
    return [dashboard_json(b, runtime.settings.root_path) for b in runtime.dashboards if allowed(who, b.allow)]


@router.get("/api/dashboards/{name}", tags=["dashboards"])
def get_dashboard(runtime: RuntimeDep, request: Request, name: str) -> dict[str, Any]:
    """A dashboard with every tile as last computed (what the page's polling fallback reads)."""
    board = runtime.dashboards.get(name)
    live = live_of(runtime)
    answer = {**dashboard_json(board, runtime.settings.root_path), "tiles": live.tiles(board.name)}
    if viewing(request) is not None:  # read without a login: its charts; controls are not shown
        answer.update(sources=shown_sources(board), streams=shown_streams(board), controls=[])
        answer["tiles"] = [tile for tile in answer["tiles"] if tile["kind"] != "state"]
    return answer


@router.get("/api/dashboards/{name}/events", tags=["dashboards"], response_class=Response, responses=SSE)
def dashboard_events(
    runtime: RuntimeDep, request: Request, name: str, last_event_id: str | None = Header(None, alias="Last-Event-ID")
) -> Response:
    """Server-Sent Events of one dashboard: every tile at once, then `tile` when a source refreshed
    and `points` for its streams."""
    board = runtime.dashboards.get(name)
    live = live_of(runtime)
    anyone = viewing(request) is not None  # without a login: the charts, not the controls' states
    return feed_response(
        live,
        board.name,
        shown_streams(board) if anyone else board.streams,
        positions(last_event_id),
        runtime.settings.heartbeat_interval,
        streams_of(request),
        unsent_tiles(board) if anyone else frozenset(),
    )


# -- streams ---------------------------------------------------------------------------------
def _stream_json(runtime: Runtime, name: str) -> dict[str, Any]:
    runner = live_of(runtime).stream(name)
    spec = runner.spec
    return {
        "name": spec.name,
        "title": spec.title,
        "titles": translations_of(spec.title),
        "description": spec.description,
        "descriptions": translations_of(spec.description),
        "every": spec.every,
        "window": spec.window,
        "keep": spec.capacity,
        "last": runner.buffer.last,
        "error": runner.error,
        "url": f"{runtime.settings.root_path}/streams/{spec.name}",
    }


@router.get("/api/streams", tags=["streams"])
def list_streams(runtime: RuntimeDep, request: Request) -> list[dict[str, Any]]:
    """The streams you may read."""
    who = principal(request)
    if live_or_none(runtime) is None:
        return []
    return [
        _stream_json(runtime, name) for name in runtime.streams if allowed(who, runtime.dashboards.stream_allow(name))
    ]


@router.get("/api/streams/{name}", tags=["streams"])
def get_stream(runtime: RuntimeDep, name: str) -> dict[str, Any]:
    return _stream_json(runtime, name)


@router.get("/api/streams/{name}/points", tags=["streams"])
def stream_points(
    runtime: RuntimeDep, name: str, after: int = Query(0, ge=0), limit: int | None = Query(None, ge=1)
) -> dict[str, Any]:
    """Points after sequence `after` as arrays per series (the polling twin of the event stream)."""
    runner = live_of(runtime).stream(name)
    batch = runner.batch(after, limit)
    if batch is None:
        last = runner.buffer.last
        return {
            "stream": name,
            "first": last + 1,
            "last": last,
            "gap": False,
            "t": [],
            "series": {},
            "error": runner.error,
            "boot": runner.boot,
        }
    return {**batch.to_dict(name), "error": runner.error, "boot": runner.boot}


@router.get("/api/streams/{name}/events", tags=["streams"], response_class=Response, responses=SSE)
def stream_events(
    runtime: RuntimeDep,
    request: Request,
    name: str,
    after: int | None = Query(None, ge=0, description="Resume after this point."),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
) -> Response:
    """Server-Sent Events of one stream: `points` frames (arrays per series, in order). The first
    frame has the recent window; after a reconnect (Last-Event-ID) the points missed, then new ones."""
    runner = live_of(runtime).stream(name)
    known = positions(last_event_id)
    start = runner.resume_from(known.get("", known.get(name, after or 0)))  # 0 after a server restart
    return feed_response(
        live_of(runtime),
        None,
        [runner.spec.name],
        {runner.spec.name: start},
        runtime.settings.heartbeat_interval,
        open_streams_of(request),
    )


# -- one stream for every tab of a browser ------------------------------------------------------
@router.get("/api/live/events", tags=["events"], response_class=Response, responses=SSE)
def live_events(
    runtime: RuntimeDep,
    request: Request,
    topic: list[str] = Query(
        ...,
        description="What to carry: `jobs` (every job you may see), `jobs:TASK`, "
        "`job:ID` (with a snapshot first), `dashboard:NAME`, `stream:NAME`; repeat it.",
    ),
    last_event_id: str | None = Query(None, description="Resume from this event id (as Last-Event-ID does)."),
    last_event_id_header: str | None = Header(None, alias="Last-Event-ID"),
) -> Response:
    """Server-Sent Events of several topics at once: what the pages of one browser share (browsers
    open about six connections per host). A topic you may not see is named in `ready.refused`; the
    others go on. The event id holds every position, so a reconnect resumes all of them."""
    if len(topic) > MAX_TOPICS:
        raise ValidationError(f"at most {MAX_TOPICS} topics")
    seen = viewing(request)  # without a login: the dashboards it is shown, nothing else
    has_live = live_or_none(runtime) is not None
    topics = display_topics(runtime, seen, topic, has_live) if seen is not None else _topics(runtime, request, topic)
    known = positions(last_event_id_header or last_event_id)
    after = {k: v for k, v in known.items() if k}
    root = request.scope.get("root_path", "")

    def snapshot(job_id: int) -> dict[str, Any] | None:
        record = runtime.store.get_job(job_id)
        return job_json(record, root=root) if record is not None else None

    return mux_response(
        runtime.engine.bus,
        live_or_none(runtime),
        topics,
        after,
        runtime.settings.heartbeat_interval,
        snapshot,
        streams_of(request),
    )


def _topics(runtime: Runtime, request: Request, names: list[str]) -> Topics:
    who, unseen, live = principal(request), hidden(request), live_or_none(runtime)
    all_jobs, tasks, jobs = False, set(), set()
    dashboards: dict[str, list[str]] = {}
    streams: dict[str, None] = {}
    refused: dict[str, str] = {}
    accepted: list[str] = []
    for name in dict.fromkeys(names):
        kind, _, value = name.partition(":")
        why: str | None = None
        if kind == "jobs" and not value:
            all_jobs = True
        elif kind == "jobs":
            if value in unseen or value not in runtime.tasks:  # one it may not see is one it cannot name
                why = note("topic.no_task", task=repr(value))
            else:
                tasks.add(value)
        elif kind == "job":
            job_id = parse_id(value)
            record = runtime.store.get_job(job_id) if job_id is not None and job_id > 0 else None
            if record is None or record.task in unseen:
                why = note("topic.no_job", id=value)
            else:
                jobs.add(record.id)
        elif kind == "dashboard" and live is not None and value in runtime.dashboards:
            board = runtime.dashboards.get(value)
            if allowed(who, ALLOW_LISTS["dashboard"](runtime, board.name)):
                dashboards[board.name] = list(board.streams)
                streams.update(dict.fromkeys(board.streams))
            else:
                why = note("topic.dashboard_denied", user=who.name, name=repr(value))
        elif kind == "stream" and live is not None and value in live.streams:
            if allowed(who, ALLOW_LISTS["stream"](runtime, value)):
                streams[value] = None
            else:
                why = note("topic.stream_denied", user=who.name, name=repr(value))
        else:
            why = note("topic.unknown", topic=repr(name))
        if why is None:
            accepted.append(name)
        else:
            refused[name] = why
    return Topics(
        all_jobs=all_jobs,
        tasks=frozenset(tasks),
        jobs=frozenset(jobs),
        hidden=unseen,
        dashboards=dashboards,
        streams=tuple(streams),
        refused=refused,
        accepted=tuple(accepted),
    )
