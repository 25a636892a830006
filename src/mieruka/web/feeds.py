"""The event streams of dashboards and streams (Server-Sent Events).

A dashboard page opens one stream: `tile` events (a chart's whole tile, sent when its source
refreshed) and `points` events (new points of the streams on the page). A client costs one
sequence number per tile and per stream, never a queue: when it falls behind, the next frame
carries every point it missed as one batch (coalesced), up to the stream's ring buffer. The
event id names each stream's last point sent, so a reconnecting browser continues in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode

from prometheus_client import Gauge
from starlette.responses import StreamingResponse

from ..live.hub import Live
from .sse import HEADERS, frame


def positions(text: str | None) -> dict[str, int]:
    """Stream positions from an event id: "load=42&beds=7", or a bare number for a single stream."""
    if not text:
        return {}
    text = text.strip()
    if text.isdigit():
        return {"": int(text)}
    return {k: int(v) for k, v in parse_qsl(text) if v.isdigit()}


def feed_response(live: Live, dashboard: str | None, streams: list[str], after: dict[str, int], heartbeat: float,
                  clients: Gauge | None = None) -> StreamingResponse:
    return StreamingResponse(_feed(live, dashboard, streams, after, heartbeat, clients),
                             media_type="text/event-stream", headers=HEADERS)


async def _feed(live: Live, dashboard: str | None, streams: list[str], after: dict[str, int], heartbeat: float,
                clients: Gauge | None) -> AsyncIterator[str]:
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
