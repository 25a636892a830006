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


async def _stream(
    bus: EventBus,
    topics: Collection[str] | None,
    last_event_id: int,
    heartbeat: float,
    snapshot: Callable[[], dict[str, Any]] | None,
    accept: Callable[[Event], bool] | None,
    clients: Gauge | None,
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue()
    overflowed = False

    def put(event: Event) -> None:
        nonlocal overflowed
        if queue.qsize() >= MAX_QUEUED:
            overflowed = True
        else:
            queue.put_nowait(event)

    def on_event(event: Event) -> None:  # called from the publisher's thread
        if accept is None or accept(event):
            try:
                loop.call_soon_threadsafe(put, event)
            except RuntimeError:
                pass  # the loop is closed: the server is stopping

    unsubscribe = bus.subscribe(on_event, topics)
    if clients is not None:
        clients.inc()
    try:
        # A first event at once: a page that hears nothing within seconds knows a proxy is buffering.
        newest = bus.last_id()
        yield "retry: 2000\n" + frame("ready", {"last_event_id": newest})
        sent = last_event_id
        if last_event_id:
            missed = bus.replay(last_event_id, topics)
            if missed is None:
                # Missed, or an id of an earlier run of the server: the client loads the state afresh
                # (which holds every event up to `newest`), and its next reconnect starts from there.
                sent = newest
                yield frame("resync", {"reason": "events were missed; reload the state"}, newest)
                # And what this run of the server published, if it is all kept (it is in the state too).
                for event in bus.replay(0, topics) or ():
                    if event.id <= newest and (accept is None or accept(event)):
                        yield frame(event.kind, event.to_dict(), event.id)
            else:
                for event in missed:
                    if accept is None or accept(event):
                        yield frame(event.kind, event.to_dict(), event.id)
                        sent = event.id
        if snapshot is not None:
            yield frame("snapshot", await asyncio.to_thread(snapshot))
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), heartbeat)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if overflowed:
                while not queue.empty():
                    queue.get_nowait()
                overflowed = False
                yield frame("resync", {"reason": "this client fell behind; reload the state"})
                continue
            chunk = []
            while True:
                if event.id > sent:
                    sent = event.id
                    chunk.append(frame(event.kind, event.to_dict(), event.id))
                if queue.empty():
                    break
                event = queue.get_nowait()
            if chunk:
                yield "".join(chunk)
    finally:
        unsubscribe()
        if clients is not None:
            clients.dec()
