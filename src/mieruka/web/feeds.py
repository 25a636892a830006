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
import sys
from collections.abc import AsyncGenerator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..bus.base import EventBus
from ..core.events import Event
from ..live.hub import Live
from ..live.signal import Signal, Wake
from ..notes import json_of
from .sse import MAX_QUEUED, EventStream, OpenStreams, frame


def positions(text: str | None) -> dict[str, int]:
    """Stream positions from an event id: "load=42&beds=7", or a bare number for a single stream."""
    if not text:
        return {}
    text = text.strip()
    if text.isdigit():
        return {"": int(text)}
    return {k: int(v) for k, v in parse_qsl(text) if v.isdigit()}


NEVER = sys.maxsize  # a tile's position "seen" that no tile reaches: the tile is never sent


def feed_response(
    live: Live,
    dashboard: str | None,
    streams: list[str],
    after: dict[str, int],
    heartbeat: float,
    held_by: OpenStreams | None = None,
    unsent: frozenset[str] = frozenset(),
) -> EventStream:
    """`unsent`: the keys of tiles never sent (controls' states, to a reader without a login)."""
    held = OpenStreams() if held_by is None else held_by
    return EventStream(_feed(live, dashboard, streams, after, heartbeat, held, unsent))


async def _feed(
    live: Live,
    dashboard: str | None,
    streams: list[str],
    after: dict[str, int],
    heartbeat: float,
    held_by: OpenStreams,
    unsent: frozenset[str] = frozenset(),
) -> AsyncGenerator[str, None]:
    runners = [live.stream(name) for name in streams]
    signals = [r.signal for r in runners]
    if dashboard is not None:
        signals.append(live.signal(dashboard))
    sent = {r.spec.name: r.resume_from(after.get(r.spec.name, 0)) for r in runners}
    single = dashboard is None and len(streams) == 1
    seen: dict[str, int] = dict.fromkeys(unsent, NEVER)
    wake = _listening(signals, heartbeat)
    held = held_by.hold(wake.end)
    try:
        yield "retry: 2000\n" + frame("ready", {"streams": streams, "dashboard": dashboard})
        while not wake.ended:
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
                wake.sent()
            elif not await wake.wait():
                yield ": heartbeat\n\n"
    finally:
        _unlisten(signals, wake)
        held.release()


def _listening(signals: list[Signal], heartbeat: float) -> Wake:
    # Poked at each signal's fire; points that arrive before the first read are read by it.
    wake = Wake(heartbeat)
    for signal in signals:
        signal.listen(wake)
    return wake


def _unlisten(signals: list[Signal], wake: Wake) -> None:
    for signal in signals:
        signal.unlisten(wake)
    wake.close()


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
    unsent: frozenset[str] = frozenset()  # keys of tiles never sent (controls' states, without a login)

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

    def __init__(self, bus: EventBus, topics: Topics, wake: Wake) -> None:
        self.wake = wake
        self.accept = topics.accept
        self.events: list[Event] = []
        self.overflowed = False
        self.unsubscribe = bus.subscribe(self._on_event, topics.bus_topics)

    def _on_event(self, event: Event) -> None:  # called from the publisher's thread
        if self.accept(event):
            with suppress(RuntimeError):  # the loop is closed: the server is stopping
                self.wake.loop.call_soon_threadsafe(self._put, event)

    def _put(self, event: Event) -> None:
        if len(self.events) >= MAX_QUEUED:
            self.overflowed = True
        else:
            self.events.append(event)
        self.wake.poke()

    def take(self) -> list[Event] | None:
        """The events that arrived (None: some were lost, the client must resync)."""
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
    held_by: OpenStreams | None = None,
) -> EventStream:
    return EventStream(
        _mux(bus, live, topics, after, heartbeat, snapshot, OpenStreams() if held_by is None else held_by)
    )


def _with_dashboard(text: str, dashboard: str) -> str:
    # A tile's text is built once for every viewer; this stream says which dashboard it belongs to.
    return text.replace("data: {", "data: {" + json.dumps({"dashboard": dashboard})[1:-1] + ",", 1)


class _Mux:
    """One client's multiplexed stream: where it is in the bus and in each stream, and what it is owed."""

    def __init__(
        self, bus: EventBus, live: Live | None, topics: Topics, after: dict[str, int], heartbeat: float
    ) -> None:
        self.bus, self.live, self.topics = bus, live, topics
        self.runners = [live.stream(name) for name in topics.streams] if live is not None else []
        self.signals = [r.signal for r in self.runners]
        if live is not None:
            self.signals += [live.signal(name) for name in topics.dashboards]
        self.sent = {r.spec.name: r.resume_from(after.get(r.spec.name, 0)) for r in self.runners}
        self.seen: dict[str, dict[str, int]] = {name: dict.fromkeys(topics.unsent, NEVER) for name in topics.dashboards}
        self.wake = _listening(self.signals, heartbeat)
        self.feed = _BusFeed(bus, topics, self.wake) if topics.has_jobs else None
        self.bus_sent = after.get(BUS, 0)

    def event_id(self, bus_id: int | None = None) -> str:
        return urlencode({BUS: self.bus_sent if bus_id is None else bus_id, **self.sent})

    def _bus_frame(self, event: Event) -> str:
        return f"id: {self.event_id()}\n" + frame(event.kind, event.to_dict())

    def opening(self) -> str:
        position = self.bus_sent or self.bus.last_id()
        topics = self.topics
        ready = {
            "topics": list(topics.accepted),
            "refused": topics.refused,
            "refused_notes": {topic: json_of(why) for topic, why in topics.refused.items()},
            "dashboards": topics.dashboards,
            "last_event_id": position,
        }
        return f"retry: 2000\nid: {self.event_id(position)}\n" + frame("ready", ready)

    def missed(self) -> str:
        """The bus events after the client's last id, or a resync when they are gone."""
        if self.feed is None or not self.bus_sent:
            return ""
        bus_topics = self.topics.bus_topics
        missed = self.bus.replay(self.bus_sent, bus_topics)
        if missed is not None:
            chunk = []
            for event in missed:
                if self.topics.accept(event):
                    self.bus_sent = event.id
                    chunk.append(self._bus_frame(event))
            return "".join(chunk)
        # Missed, or an id of an earlier run of the server: the pages load the state afresh (which
        # holds every event up to the newest), and a reconnect starts from there.
        self.bus_sent = self.bus.last_id()
        chunk = [f"id: {self.event_id()}\n" + frame("resync", {"reason": "events were missed; reload the state"})]
        # And what this run of the server published, if it is all kept (it is in the state too).
        for event in self.bus.replay(0, bus_topics) or ():
            if event.id <= self.bus_sent and self.topics.accept(event):
                chunk.append(f"id: {self.event_id(event.id)}\n" + frame(event.kind, event.to_dict()))
        return "".join(chunk)

    def pending(self) -> list[str]:
        """Everything new since the last call: tiles, stream points, bus events."""
        chunk: list[str] = []
        if self.live is not None:
            for name, known in self.seen.items():
                chunk += [_with_dashboard(text, name) for text in self.live.tile_frames(name, known)]
        for runner in self.runners:
            body = runner.frame_body(self.sent[runner.spec.name])
            if body is not None:
                self.sent[runner.spec.name] = body[0]
                chunk.append(f"id: {self.event_id()}\n{body[1]}")
        if self.feed is not None:
            events = self.feed.take()
            if events is None:
                chunk.append(frame("resync", {"reason": "this client fell behind; reload the state"}))
            for event in events or ():
                if event.id > self.bus_sent:
                    self.bus_sent = event.id
                    chunk.append(self._bus_frame(event))
        return chunk

    def close(self) -> None:
        if self.feed is not None:
            self.feed.unsubscribe()
        _unlisten(self.signals, self.wake)


async def _mux(
    bus: EventBus,
    live: Live | None,
    topics: Topics,
    after: dict[str, int],
    heartbeat: float,
    snapshot: Callable[[int], dict[str, Any] | None],
    held_by: OpenStreams,
) -> AsyncGenerator[str, None]:
    mux = _Mux(bus, live, topics, after, heartbeat)
    wake = mux.wake
    held = held_by.hold(wake.end)
    try:
        yield mux.opening()
        missed = mux.missed()
        if missed:
            yield missed
        for job_id in sorted(topics.jobs):
            data = await asyncio.to_thread(snapshot, job_id)
            if data is not None:
                yield frame("snapshot", data)
        while not wake.ended:
            chunk = mux.pending()
            if chunk:
                yield "".join(chunk)
                wake.sent()
            elif not await wake.wait():
                yield ": heartbeat\n\n"
    finally:
        mux.close()
        held.release()
