"""Server-Sent Events: job events from the bus, with resume (Last-Event-ID), heartbeats, and a
bounded queue per client (a client that falls behind gets a `resync` event, not unbounded memory)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any

from prometheus_client import Gauge
from starlette.responses import StreamingResponse

from ..bus.base import EventBus
from ..core.events import Event

MAX_QUEUED = 10_000
HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "Connection": "keep-alive",
}


def frame(kind: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_response(
    bus: EventBus,
    topics: Collection[str] | None,
    last_event_id: int,
    heartbeat: float,
    snapshot: Callable[[], dict[str, Any]] | None = None,
    accept: Callable[[Event], bool] | None = None,
    clients: Gauge | None = None,
) -> StreamingResponse:
    return StreamingResponse(
        _stream(bus, topics, last_event_id, heartbeat, snapshot, accept, clients),
        media_type="text/event-stream",
        headers=HEADERS,
    )


def _caught_up(
    bus: EventBus, topics: Collection[str] | None, after: int, newest: int, accept: Callable[[Event], bool]
) -> tuple[list[str], int]:
    """The frames a client reconnecting after event `after` missed, and the id it has then seen."""
    missed = bus.replay(after, topics)
    if missed is None:
        # Missed, or an id of an earlier run of the server: the client loads the state afresh (which
        # holds every event up to `newest`), and its next reconnect starts from there.
        frames = [frame("resync", {"reason": "events were missed; reload the state"}, newest)]
        # And what this run of the server published, if it is all kept (it is in the state too).
        for event in bus.replay(0, topics) or ():
            if event.id <= newest and accept(event):
                frames.append(frame(event.kind, event.to_dict(), event.id))
        return frames, newest
    frames, sent = [], after
    for event in missed:
        if accept(event):
            frames.append(frame(event.kind, event.to_dict(), event.id))
            sent = event.id
    return frames, sent


class _Inbox:
    """Events handed over from the publisher's thread to the client's loop, at most MAX_QUEUED."""

    def __init__(self, loop: asyncio.AbstractEventLoop, accept: Callable[[Event], bool]) -> None:
        self.loop, self.accept = loop, accept
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.overflowed = False

    def _put(self, event: Event) -> None:
        if self.queue.qsize() >= MAX_QUEUED:
            self.overflowed = True
        else:
            self.queue.put_nowait(event)

    def on_event(self, event: Event) -> None:  # called from the publisher's thread
        if self.accept(event):
            try:
                self.loop.call_soon_threadsafe(self._put, event)
            except RuntimeError:
                pass  # the loop is closed: the server is stopping

    def take(self, first: Event, sent: int) -> tuple[str, int]:
        """The frames of `first` and whatever else waits, newer than `sent`, and the newest id."""
        if self.overflowed:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.overflowed = False
            return frame("resync", {"reason": "this client fell behind; reload the state"}), sent
        chunk, event = [], first
        while True:
            if event.id > sent:
                sent = event.id
                chunk.append(frame(event.kind, event.to_dict(), event.id))
            if self.queue.empty():
                return "".join(chunk), sent
            event = self.queue.get_nowait()


def _everything(event: Event) -> bool:
    return True


async def _stream(
    bus: EventBus,
    topics: Collection[str] | None,
    last_event_id: int,
    heartbeat: float,
    snapshot: Callable[[], dict[str, Any]] | None,
    accept: Callable[[Event], bool] | None,
    clients: Gauge | None,
) -> AsyncIterator[str]:
    accept = accept or _everything
    inbox = _Inbox(asyncio.get_running_loop(), accept)
    unsubscribe = bus.subscribe(inbox.on_event, topics)
    if clients is not None:
        clients.inc()
    try:
        # A first event at once: a page that hears nothing within seconds knows a proxy is buffering.
        newest = bus.last_id()
        yield "retry: 2000\n" + frame("ready", {"last_event_id": newest})
        sent = last_event_id
        if last_event_id:
            frames, sent = _caught_up(bus, topics, last_event_id, newest, accept)
            for text in frames:
                yield text
        if snapshot is not None:
            yield frame("snapshot", await asyncio.to_thread(snapshot))
        while True:
            try:
                event = await asyncio.wait_for(inbox.queue.get(), heartbeat)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            text, sent = inbox.take(event, sent)
            if text:
                yield text
    finally:
        unsubscribe()
        if clients is not None:
            clients.dec()
