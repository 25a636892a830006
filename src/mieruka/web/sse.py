"""Server-Sent Events: job events from the bus, with resume (Last-Event-ID), heartbeats, and a
bounded queue per client (a client that falls behind gets a `resync` event, not unbounded memory)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Callable, Collection
from typing import Any

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ..bus.base import EventBus
from ..core.events import Event
from ..live.signal import Wake
from .metrics import Level

MAX_QUEUED = 10_000
HEADERS = {
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: do not buffer the stream
    "Connection": "keep-alive",
}
_RAW_HEADERS = [
    *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in HEADERS.items()),
    (b"content-type", b"text/event-stream; charset=utf-8"),
]  # encoded once


class Held:
    """One open stream, as `OpenStreams` holds it."""

    def __init__(self, owner: OpenStreams, loop: asyncio.AbstractEventLoop, wake: Callable[[], None]) -> None:
        self.owner, self.loop, self.wake = owner, loop, wake
        self.ended = False

    def end(self) -> None:
        """Ask the stream to end (from any thread, also from a signal handler)."""
        self.ended = True
        try:
            self.loop.call_soon_threadsafe(self.wake)
        except RuntimeError:
            pass  # its loop is closed: the stream is gone already

    def release(self) -> None:
        self.owner.release(self)


class OpenStreams:
    """The event streams a server holds open, counted in the `mieruka_sse_clients` gauge. A stream
    never ends by itself: at shutdown the server ends them all at once (`end_all`) rather than
    waiting out its graceful shutdown, and a stream opened after that ends at once."""

    def __init__(self, gauge: Level | None = None) -> None:
        self._gauge = gauge
        self._lock = threading.Lock()
        self._held: set[Held] = set()
        self._ending = False

    def hold(self, wake: Callable[[], None]) -> Held:
        """Count a stream of the running loop; `wake` (run on that loop) makes it look at `ended`."""
        held = Held(self, asyncio.get_running_loop(), wake)
        with self._lock:
            self._held.add(held)
            held.ended = self._ending
        if held.ended:
            wake()
        if self._gauge is not None:
            self._gauge.inc()
        return held

    def release(self, held: Held) -> None:
        with self._lock:
            if held not in self._held:
                return
            self._held.discard(held)
        if self._gauge is not None:
            self._gauge.dec()

    def end_all(self) -> None:
        with self._lock:
            self._ending = True
            held = list(self._held)
        for one in held:
            one.end()


class EventStream(Response):
    """An endless text/event-stream response, lean because a server holds hundreds of them: the
    frames are sent from the request's own task, and one small task per stream waits for the client
    to leave (Starlette's StreamingResponse adds a task group and a second task per stream)."""

    media_type = "text/event-stream"

    def __init__(self, frames: AsyncGenerator[str, None]) -> None:
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_RAW_HEADERS)  # a list of its own: the security headers are added to it

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        left = _Leaving(task)
        watcher = asyncio.ensure_future(_until_disconnect(receive))
        watcher.add_done_callback(left.on_done)
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for text in self.frames:
                await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not left.gone:
                raise
            task.uncancel()  # the client left: the stream is over, not the server
        finally:
            watcher.cancel()
            await self.frames.aclose()


class _Leaving:
    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task, self.gone = task, False

    def on_done(self, watcher: asyncio.Future[None]) -> None:
        if not watcher.cancelled():
            self.gone = True
            self.task.cancel()


async def _until_disconnect(receive: Receive) -> None:
    message: Message = {"type": ""}
    while message["type"] != "http.disconnect":
        message = await receive()


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
    streams: OpenStreams | None = None,
) -> EventStream:
    return EventStream(
        _stream(bus, topics, last_event_id, heartbeat, snapshot, accept, OpenStreams() if streams is None else streams)
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

    def __init__(self, wake: Wake, accept: Callable[[Event], bool]) -> None:
        self.wake, self.accept = wake, accept
        self.events: list[Event] = []
        self.overflowed = False

    def _put(self, event: Event) -> None:
        if len(self.events) >= MAX_QUEUED:
            self.overflowed = True
        else:
            self.events.append(event)
        self.wake.poke()

    def on_event(self, event: Event) -> None:  # called from the publisher's thread
        if self.accept(event):
            try:
                self.wake.loop.call_soon_threadsafe(self._put, event)
            except RuntimeError:
                pass  # the loop is closed: the server is stopping

    def take(self, sent: int) -> tuple[str, int]:
        """The frames of the events waiting, newer than `sent`, and the newest id."""
        events, self.events = self.events, []
        if self.overflowed:
            self.overflowed = False
            return frame("resync", {"reason": "this client fell behind; reload the state"}), sent
        chunk = []
        for event in events:
            if event.id > sent:
                sent = event.id
                chunk.append(frame(event.kind, event.to_dict(), event.id))
        return "".join(chunk), sent


def _everything(event: Event) -> bool:
    return True


async def _stream(
    bus: EventBus,
    topics: Collection[str] | None,
    last_event_id: int,
    heartbeat: float,
    snapshot: Callable[[], dict[str, Any]] | None,
    accept: Callable[[Event], bool] | None,
    streams: OpenStreams,
) -> AsyncGenerator[str, None]:
    accept = accept or _everything
    wake = Wake(heartbeat)
    inbox = _Inbox(wake, accept)
    unsubscribe = bus.subscribe(inbox.on_event, topics)
    held = streams.hold(wake.end)
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
        while not wake.ended:
            text, sent = inbox.take(sent)
            if text:
                yield text
                wake.sent()
            elif not await wake.wait():
                yield ": heartbeat\n\n"
    finally:
        unsubscribe()
        held.release()
        wake.close()
