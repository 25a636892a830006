"""The event streams of dashboards and streams (Server-Sent Events).

A dashboard page opens one stream: `tile` events (a chart's whole tile, sent when its source
refreshed) and `points` events (new points of the streams on the page). A client costs one
sequence number per tile and per stream, never a queue: when it falls behind, the next frame
carries every point it missed as one batch (coalesced), up to the stream's ring buffer. The
event id names each stream's last point sent, so a reconnecting browser continues in order.

The pages themselves share one multiplexed stream per browser (`/api/live/events`, below), which
carries job events, dashboards and streams together.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from prometheus_client import Gauge
from starlette.responses import StreamingResponse

from ..bus.base import EventBus
from ..core.events import Event
from ..live.hub import Live
from .sse import HEADERS, MAX_QUEUED, frame


def positions(text: str | None) -> dict[str, int]:
    """Stream positions from an event id: "load=42&beds=7", or a bare number for a single stream."""
    if not text:
        return {}
    text = text.strip()
    if text.isdigit():
        return {"": int(text)}
    return {k: int(v) for k, v in parse_qsl(text) if v.isdigit()}


def feed_response(
    live: Live,
    dashboard: str | None,
    streams: list[str],
    after: dict[str, int],
    heartbeat: float,
    clients: Gauge | None = None,
) -> StreamingResponse:
    return StreamingResponse(
        _feed(live, dashboard, streams, after, heartbeat, clients), media_type="text/event-stream", headers=HEADERS
    )


async def _feed(
    live: Live,
    dashboard: str | None,
    streams: list[str],
    after: dict[str, int],
    heartbeat: float,
    clients: Gauge | None,
) -> AsyncIterator[str]:
    runners = [live.stream(name) for name in streams]
    signals = [r.signal for r in runners]
    if dashboard is not None:
        signals.append(live.signal(dashboard))
    sent = {r.spec.name: r.resume_from(after.get(r.spec.name, 0)) for r in runners}
    single = dashboard is None and len(streams) == 1
    seen: dict[str, int] = {}
    if clients is not None:
        clients.inc()
    try:
        yield "retry: 2000\n" + frame("ready", {"streams": streams, "dashboard": dashboard})
        while True:
            waiters = [s.waiter() for s in signals]
            chunk = live.tile_frames(dashboard, seen) if dashboard is not None else []
            for runner in runners:
                name = runner.spec.name
                body = runner.frame_body(sent[name])
                if body is None:
                    continue
                sent[name] = body[0]
                event_id = str(body[0]) if single else urlencode(sent)
                chunk.append(f"id: {event_id}\n{body[1]}")
            if chunk:
                yield "".join(chunk)
                continue
            done, _ = await asyncio.wait(waiters, timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                yield ": heartbeat\n\n"
    finally:
        if clients is not None:
            clients.dec()


# -- one stream for every tab of a browser ----------------------------------------------------------
# Browsers allow about six connections per host: a browser's tabs share one stream (the pages' script
# holds it in a SharedWorker), which carries the union of what they show. Each topic is checked for
# the viewer when the stream opens; one it may not see is refused by name in the `ready` event (the
# others go on). Job events carry their bus id; the event id is every position at once
# ("@=<bus id>&<stream>=<point>"), so a reconnect resumes all of them.
MAX_TOPICS = 200
BUS = "@"


@dataclass(frozen=True)
class Topics:
    """What a multiplexed stream carries, as its viewer may see it."""

    all_jobs: bool = False
    tasks: frozenset[str] = frozenset()  # every job of these tasks
    jobs: frozenset[int] = frozenset()  # these jobs, each with a snapshot at the start
    hidden: frozenset[str] = frozenset()  # tasks whose jobs are never shown
    dashboards: dict[str, list[str]] = field(default_factory=dict)  # dashboard -> its streams
    streams: tuple[str, ...] = ()  # every stream carried (those of the dashboards too)
    refused: dict[str, str] = field(default_factory=dict)  # topic -> why
    accepted: tuple[str, ...] = ()

    @property
    def bus_topics(self) -> list[str] | None:
        return None if self.all_jobs or self.tasks else [f"job:{i}" for i in sorted(self.jobs)]

    @property
    def has_jobs(self) -> bool:
        return bool(self.all_jobs or self.tasks or self.jobs)

    def accept(self, event: Event) -> bool:
        return event.task not in self.hidden and (
            self.all_jobs or event.task in self.tasks or event.job_id in self.jobs
        )


class _BusFeed:
    """A client's bus events, waiting for the stream's loop; past MAX_QUEUED the client must resync."""

    def __init__(self, bus: EventBus, topics: Topics) -> None:
        self.loop = asyncio.get_running_loop()
        self.accept = topics.accept
        self.events: list[Event] = []
        self.overflowed = False
        self.arrived = asyncio.Event()
        self.unsubscribe = bus.subscribe(self._on_event, topics.bus_topics)

    def _on_event(self, event: Event) -> None:  # called from the publisher's thread
        if self.accept(event):
            with suppress(RuntimeError):  # the loop is closed: the server is stopping
                self.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Event) -> None:
        if len(self.events) >= MAX_QUEUED:
            self.overflowed = True
        else:
            self.events.append(event)
        self.arrived.set()

    def take(self) -> list[Event] | None:
        """The events that arrived (None: some were lost, the client must resync)."""
        self.arrived.clear()
        events, self.events = self.events, []
        if self.overflowed:
            self.overflowed = False
            return None
        return events


def mux_response(
    bus: EventBus,
    live: Live | None,
    topics: Topics,
    after: dict[str, int],
    heartbeat: float,
    snapshot: Callable[[int], dict[str, Any] | None],
    clients: Gauge | None = None,
) -> StreamingResponse:
    return StreamingResponse(
        _mux(bus, live, topics, after, heartbeat, snapshot, clients), media_type="text/event-stream", headers=HEADERS
    )


def _with_dashboard(text: str, dashboard: str) -> str:
    # A tile's text is built once for every viewer; this stream says which dashboard it belongs to.
    return text.replace("data: {", "data: {" + json.dumps({"dashboard": dashboard})[1:-1] + ",", 1)


async def _mux(
    bus: EventBus,
    live: Live | None,
    topics: Topics,
    after: dict[str, int],
    heartbeat: float,
    snapshot: Callable[[int], dict[str, Any] | None],
    clients: Gauge | None,
) -> AsyncIterator[str]:
    runners = [live.stream(name) for name in topics.streams] if live is not None else []
    signals = [r.signal for r in runners]
    if live is not None:
        signals += [live.signal(name) for name in topics.dashboards]
    sent = {r.spec.name: r.resume_from(after.get(r.spec.name, 0)) for r in runners}
    seen: dict[str, dict[str, int]] = {name: {} for name in topics.dashboards}
    feed = _BusFeed(bus, topics) if topics.has_jobs else None
    bus_sent = after.get(BUS, 0)

    def event_id() -> str:
        return urlencode({BUS: bus_sent, **sent})

    if clients is not None:
        clients.inc()
    try:
        position = bus_sent or bus.last_id()
        yield (
            "retry: 2000\n"
            + f"id: {urlencode({BUS: position, **sent})}\n"
            + frame(
                "ready",
                {
                    "topics": list(topics.accepted),
                    "refused": topics.refused,
                    "dashboards": topics.dashboards,
                    "last_event_id": position,
                },
            )
        )
        if feed is not None and bus_sent:
            missed = bus.replay(bus_sent, topics.bus_topics)
            if missed is None:
                # Missed, or an id of an earlier run of the server: the pages load the state afresh
                # (which holds every event up to the newest), and a reconnect starts from there.
                bus_sent = bus.last_id()
                chunk = [f"id: {event_id()}\n" + frame("resync", {"reason": "events were missed; reload the state"})]
                # And what this run of the server published, if it is all kept (it is in the state too).
                for event in bus.replay(0, topics.bus_topics) or ():
                    if event.id <= bus_sent and topics.accept(event):
                        chunk.append(f"id: {urlencode({BUS: event.id, **sent})}\n" + frame(event.kind, event.to_dict()))
                yield "".join(chunk)
            else:
                chunk = []
                for event in missed:
                    if topics.accept(event):
                        bus_sent = event.id
                        chunk.append(f"id: {event_id()}\n" + frame(event.kind, event.to_dict()))
                if chunk:
                    yield "".join(chunk)
        for job_id in sorted(topics.jobs):
            data = await asyncio.to_thread(snapshot, job_id)
            if data is not None:
                yield frame("snapshot", data)
        while True:
            waiters: list[asyncio.Future[Any]] = [s.waiter() for s in signals]  # shared: never cancelled
            arrival = asyncio.ensure_future(feed.arrived.wait()) if feed is not None else None
            chunk = []
            if live is not None:
                for name, known in seen.items():
                    chunk += [_with_dashboard(text, name) for text in live.tile_frames(name, known)]
            for runner in runners:
                body = runner.frame_body(sent[runner.spec.name])
                if body is not None:
                    sent[runner.spec.name] = body[0]
                    chunk.append(f"id: {event_id()}\n{body[1]}")
            if feed is not None:
                events = feed.take()
                if events is None:
                    chunk.append(frame("resync", {"reason": "this client fell behind; reload the state"}))
                for event in events or ():
                    if event.id > bus_sent:
                        bus_sent = event.id
                        chunk.append(f"id: {event_id()}\n" + frame(event.kind, event.to_dict()))
            if not chunk:
                done, _ = await asyncio.wait(
                    waiters + ([arrival] if arrival else []), timeout=heartbeat, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    chunk.append(": heartbeat\n\n")
            if arrival is not None:
                arrival.cancel()
            if chunk:
                yield "".join(chunk)
    finally:
        if feed is not None:
            feed.unsubscribe()
        if clients is not None:
            clients.dec()
