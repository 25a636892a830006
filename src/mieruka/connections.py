"""Limits on client connections: time to send a request head, body stalls, connections per address.

uvicorn stops its keep-alive timer at a request's first byte and limits neither the time a request
head or body may take nor one address's connections: a client that trickles its request (slowloris)
or stalls an upload would hold a connection and its memory for ever. Here:

- `protocol_class(limits)`, uvicorn's HTTP/1.1 protocol (httptools, or h11) that closes a
  connection whose request head is not complete `header_timeout` after it opened or went idle, and
  closes new connections of an address that has `per_address` open (trusted proxies excepted);
- `BodyTimeout`, ASGI middleware that answers 408 when the app waits `body_timeout` for body bytes
  that do not come.

Only reading a request is timed: a slow response (an event stream, a long poll) is never cut.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .networks import Network, is_trusted, trusted_networks

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from .settings import Settings

logger = logging.getLogger("mieruka.connections")


@dataclass
class Limits:
    """One server's limits, and the open connections per address shared by all its connections."""

    header_timeout: float
    body_timeout: float
    per_address: int  # 0: no limit
    trusted: tuple[Network, ...] = ()
    open: Counter[str] = field(default_factory=Counter)
    _full: set[str] = field(default_factory=set)  # addresses already warned about

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            settings.header_timeout,
            settings.body_timeout,
            settings.max_connections_per_address,
            trusted_networks(settings.trusted_proxies),
        )

    def admit(self, host: str) -> bool:
        """Count a new connection from `host`; False (not counted) when the address has its fill."""
        if self.per_address and self.open[host] >= self.per_address and not is_trusted(host, self.trusted):
            if host not in self._full:
                self._full.add(host)
                logger.warning(
                    "%s has %d open connections (max_connections_per_address): closing new ones", host, self.open[host]
                )
            return False
        self.open[host] += 1
        return True

    def release(self, host: str) -> None:
        self.open[host] -= 1
        if self.open[host] <= 0:
            del self.open[host]
        if self.open[host] < self.per_address:
            self._full.discard(host)


class _Limited:
    """What both HTTP/1.1 protocols add. A connection waits for a request head from its start and
    from each time uvicorn arms its keep-alive timer (a response done, no other request queued); the
    head clock runs from then until a head is complete. uvicorn's own timer stops at the first byte."""

    # Slots, not the instance's dict: uvicorn's protocol has about 30 attributes already, and two
    # more made every connection's dict a larger one of its own (1.5 KB per open event stream).
    __slots__ = ("_head_clock", "_counted")
    limits: ClassVar[Limits]
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    client: tuple[str, int] | None
    timeout_keep_alive_task: asyncio.TimerHandle | None
    _head_clock: asyncio.TimerHandle | None
    _counted: str | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._head_clock = None
        self._counted = None
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[misc]  # the protocol class comes next in the MRO
        self._admit()

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        super().connection_lost(exc)  # type: ignore[misc]

    def _admit(self) -> None:
        host = self.client[0] if self.client else ""
        if not self.limits.admit(host):
            self.transport.close()
            return
        self._counted = host
        self._start_head_clock()

    def _release(self) -> None:
        self._stop_head_clock()
        if self._counted is not None:
            self.limits.release(self._counted)
            self._counted = None

    def _start_head_clock(self) -> None:
        self._stop_head_clock()
        self._head_clock = self.loop.call_later(self.limits.header_timeout, self._head_too_late)

    def _stop_head_clock(self) -> None:
        if self._head_clock is not None:
            self._head_clock.cancel()
            self._head_clock = None

    def _head_too_late(self) -> None:
        self._head_clock = None
        if not self.transport.is_closing():
            self.transport.close()


class LimitedHttpToolsProtocol(_Limited, HttpToolsProtocol):
    def on_headers_complete(self) -> None:
        self._stop_head_clock()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:
            self._start_head_clock()


@functools.cache
def _limited_h11() -> type[_Limited]:
    """uvicorn's h11 protocol under the limits, defined when first asked for: the server parses with
    httptools, and importing h11 cost every start-up time and memory."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(_Limited, H11Protocol):
        def handle_events(self) -> None:
            super().handle_events()
            if self.conn.their_state is not h11.IDLE:  # a request head has arrived
                self._stop_head_clock()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.timeout_keep_alive_task is not None:
                self._start_head_clock()

    return LimitedH11Protocol


def protocol_class(limits: Limits, parser: Literal["httptools", "h11"] = "httptools") -> type[asyncio.Protocol]:
    """uvicorn's `http=`: its httptools (or h11) protocol under these limits."""
    base = _limited_h11() if parser == "h11" else LimitedHttpToolsProtocol
    made: type[asyncio.Protocol] = type(base.__name__, (base,), {"limits": limits})
    return made


class _BodyStalled(BaseException):
    """Raised through the app from `receive`. Not an Exception, like a cancellation: the app's
    handlers of Exception would log it as its own failure and try to answer 500."""


def _has_body(scope: Scope) -> bool:
    """Whether the request says a body follows (a length above 0, or chunks)."""
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False


class BodyTimeout:
    """ASGI middleware: a request whose body stalls, no bytes for `seconds` while the app waits for
    them, is answered 408 with `Connection: close`, which closes the connection. The app's wait ends
    in an exception that unwinds it quietly. (A response already begun cannot become a 408: uvicorn
    closes the connection of a response the app left unfinished.)"""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            # Nothing to stall: no wrappers kept alive for as long as, say, an event stream stays.
            await self.app(scope, receive, send)
            return
        body_pending = True
        response_started = False

        async def timed_receive() -> Message:
            nonlocal body_pending
            if not body_pending:
                return await receive()
            try:
                # Not wait_for: that makes a task of every wait, a tenth of a small request's time.
                async with asyncio.timeout(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise _BodyStalled from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_pending = False
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal response_started
            response_started = True
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except _BodyStalled:
            if not response_started:
                await self._answer_408(send)

    async def _answer_408(self, send: Send) -> None:
        body = json.dumps(
            {"error": {"code": "request_timeout", "message": f"the request body stalled for {self.seconds:g} s"}}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
