"""The Redis event bus: one event stream shared by several server processes.

Every process publishes into, and listens to, the same Redis keys (named by `channel_prefix`):

- `<prefix>:events:id` a counter (INCR): event ids are one increasing sequence across processes, so a
  browser's Last-Event-ID can resume on any server behind a load balancer; it starts at
  `bus.base.first_id()`, and again above it should Redis lose it;
- `<prefix>:events` a capped Redis Stream, the replay ring; entry `<id>-0` holds the event as JSON;
- `<prefix>:events:live` a pub/sub channel carrying the same JSON to every listening process;
- `<prefix>:events:epoch` a random token, new whenever Redis lost these keys (restart without
  persistence, flush), so listeners notice that ids began again.

`publish` and `publish_many` do all three in one Lua script (one round trip, atomic: channel order is
id order).
Each RedisBus has one listener thread (started by the first `subscribe`) that hands received events
to this process's callbacks, filtered by topic. A process's own events reach its own subscribers
through Redis too, exactly once. If the listener loses its connection it retries with a backoff and,
once subscribed again, delivers from the stream what it missed meanwhile, so subscribers see no gap
(unless the ring was trimmed past it, which is logged).

Redis being down never raises into the caller: events are notifications (the job store is the
truth). `publish` then logs and drops the event (returned with id 0), `replay` answers None (the
client resyncs), `last_id` answers the newest id this process has seen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..core.events import Event
from ..errors import ConfigError, MissingExtraError
from .base import Unsubscribe, first_id
from .subscribers import Callback, Subscribers

if TYPE_CHECKING:
    from redis import Redis
    from redis.client import PubSub

log = logging.getLogger(__name__)


# KEYS: counter, stream, epoch. ARGV: ring size, channel, floor, token, start, then each event's JSON
# without its id, then for each event what only the live channel carries (',"record":{...}' or '').
# Several events go out on the channel as one message, a JSON array. Returns the first event's id; the
# others follow it. Ids never go back below the floor (the
# newest id the publishing process knows) nor, should Redis have lost the counter (restart without
# persistence, flush, eviction, or never had it: INCRBY gives just the batch's size), below the ring's
# newest entry or `start` (bus.base.first_id: above the ids of an earlier life of these keys).
# The epoch is a random token set by whoever first writes after such a loss: a listener that sees it
# change knows that the ids it remembers are from before.
_PUBLISH = """
local n = (#ARGV - 5) / 2
local last = redis.call('INCRBY', KEYS[1], n)
local floor = tonumber(ARGV[3])
if last == n then
  floor = math.max(floor, tonumber(ARGV[5]))
  local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if newest[1] then
    floor = math.max(floor, tonumber(string.match(newest[1][1], '^%d+')))
  end
end
local first = last - n + 1
if first <= floor then
  first = floor + 1
  redis.call('SET', KEYS[1], string.format('%d', first + n - 1))
end
redis.call('SET', KEYS[3], ARGV[4], 'NX')
local live = {}
for i = 1, n do
  local sid = string.format('%d', first + i - 1)
  local event = '{"id":' .. sid .. ',' .. string.sub(ARGV[5 + i], 2)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], sid .. '-0', 'e', event)
  local only_live = ARGV[5 + n + i]
  if only_live ~= '' then
    event = string.sub(event, 1, -2) .. only_live .. '}'
  end
  live[i] = event
end
if n == 1 then
  redis.call('PUBLISH', ARGV[2], live[1])
else
  redis.call('PUBLISH', ARGV[2], '[' .. table.concat(live, ',') .. ']')
end
return first
"""

_MAX_STREAM_ID = 2**64 - 1
# A job's record larger than this (in JSON characters) is left out of its end event: waiters read it
# from the store instead, and every server process is spared decoding a large result.
RECORD_LIMIT = 64 * 1024


class _Ring(NamedTuple):
    """What Redis holds, read at one moment."""

    last: int  # the newest id given out
    epoch: bytes | None  # changes when Redis lost the bus's keys
    oldest: int  # the oldest id kept for replay; last + 1 when none is
    events: list[Event]  # kept events after the id asked for, in id order


class RedisBus:
    """An EventBus over Redis; `url` like redis://host:6379/0. `keep` events are kept for replay."""

    def __init__(
        self,
        url: str,
        channel_prefix: str = "mieruka",
        keep: int = 20_000,
        *,
        poll_interval: float = 0.25,
        liveness_interval: float = 15.0,
        reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
        ready_timeout: float = 5.0,
    ) -> None:
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise MissingExtraError("Redis event bus", "redis") from None
        if keep < 1:
            raise ConfigError(f"the Redis event bus must keep at least 1 event, not {keep}")
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._no_script: type[Exception] = redis.exceptions.NoScriptError
        self._client: Redis = redis.Redis.from_url(
            url,
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
            health_check_interval=15,
            client_name=f"mieruka-bus:{channel_prefix}",
            # one quick retry: enough to replace a pooled connection that died with a Redis restart
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 1),
        )
        self._script = self._client.register_script(_PUBLISH)
        self._counter_key = f"{channel_prefix}:events:id"
        self._epoch_key = f"{channel_prefix}:events:epoch"
        self._stream_key = f"{channel_prefix}:events"
        self._channel = f"{channel_prefix}:events:live"
        self._keys = [self._counter_key, self._stream_key, self._epoch_key]  # the publish script's KEYS
        self._keep = keep
        self._poll = poll_interval
        self._liveness = liveness_interval
        self._min_delay = self._delay = reconnect_delay
        self._max_delay = max_reconnect_delay
        self._ready_timeout = ready_timeout

        self._lock = threading.Lock()
        self._subscribers = Subscribers()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()  # the listener is subscribed: published events will arrive
        self._closed = False
        self._last_seen: int | None = None  # newest id dispatched (listener thread only)
        self._epoch: bytes | None = None  # the epoch of _last_seen (listener thread only)
        self._newest_known = 0  # newest id this process published or received
        self._publish_paused_until = 0.0

    # -- publishing ----------------------------------------------------------------------------
    def publish(self, event: Event) -> Event:
        return self.publish_many([event])[0]

    def publish_many(self, events: Sequence[Event]) -> list[Event]:
        """One script call for the lot: one round trip, consecutive ids."""
        return self.start_publish(events)()

    def start_publish(self, events: Sequence[Event]) -> Callable[[], list[Event]]:
        """Send the script call now and read its answer in the returned function: whatever the
        caller does in between (the engine sends the job to the broker) overlaps the round trip.
        Redis runs the call before anything the caller does afterwards can lead to.
        The call goes straight onto a pooled connection: redis-py's command layers cost a fifth of
        a worker's publishing. Should that fail, redis-py's own way (which retries once) takes over."""
        if not self._publishing(events):
            return lambda: list(events)
        args = self._args(events)
        pool = self._client.connection_pool
        try:
            conn = pool.get_connection()
        except self._errors:
            published = self._call(events, args)
            return lambda: published
        try:
            conn.send_command("EVALSHA", self._script.sha, len(self._keys), *self._keys, *args)  # type: ignore[no-untyped-call]
        except self._errors:
            conn.disconnect()  # type: ignore[no-untyped-call]
            pool.release(conn)
            published = self._call(events, args)
            return lambda: published

        def finish() -> list[Event]:
            try:
                first = int(conn.read_response())
            except self._no_script:  # Redis restarted since the script was loaded: it is loaded again
                pool.release(conn)
                return self._call(events, args)
            except self._errors as exc:
                conn.disconnect()  # type: ignore[no-untyped-call]
                pool.release(conn)
                return self._failed(events, exc)
            pool.release(conn)
            return self._published(events, first)

        return finish

    def _call(self, events: Sequence[Event], args: list[Any]) -> list[Event]:
        try:
            first = int(self._script(keys=self._keys, args=args))
        except self._errors as exc:
            return self._failed(events, exc)
        return self._published(events, first)

    def _publishing(self, events: Sequence[Event]) -> bool:
        if not events:
            return False
        if self._closed:
            log.debug("event bus closed: dropped %d events", len(events))
            return False
        return time.monotonic() >= self._publish_paused_until  # else Redis failed a moment ago: do not stall

    def _args(self, events: Sequence[Event]) -> list[Any]:
        payloads = [
            json.dumps(
                {
                    "kind": e.kind,
                    "job_id": e.job_id,
                    "task": e.task,
                    "data": e.data,
                    "extra_topics": list(e.extra_topics),
                },
                separators=(",", ":"),
                default=str,
            )
            for e in events
        ]
        return [
            self._keep,
            self._channel,
            self._newest_known,
            _token(),
            first_id(),
            *payloads,
            *map(_live_only, events),
        ]

    def _published(self, events: Sequence[Event], first: int) -> list[Event]:
        self._saw(first + len(events) - 1)
        return [e.numbered(first + i) for i, e in enumerate(events)]

    def _failed(self, events: Sequence[Event], exc: Exception) -> list[Event]:
        self._publish_paused_until = time.monotonic() + 1.0
        log.warning(
            "Redis event bus: could not publish %d events, the first a %s event of job %d (%s); "
            "events are dropped until Redis answers again",
            len(events),
            events[0].kind,
            events[0].job_id,
            exc,
        )
        return list(events)

    # -- subscribing ---------------------------------------------------------------------------
    def subscribe(self, callback: Callback, topics: Collection[str] | None = None) -> Unsubscribe:
        with self._lock:
            if self._closed:
                return _nothing
            unsubscribe = self._subscribers.add(callback, topics)
            started = self._start_listener()
        if started and not self._ready.wait(self._ready_timeout):
            log.warning(
                "Redis event bus: not subscribed after %gs; events will arrive once Redis answers", self._ready_timeout
            )
        return unsubscribe

    def _start_listener(self) -> bool:
        """Start the listener thread unless it runs (call with the lock held); True if started now."""
        if self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._listen, name="mieruka-redis-bus", daemon=True)
        self._thread.start()
        return True

    def _listen(self) -> None:
        self._delay = self._min_delay
        while not self._stop.is_set():
            pubsub: PubSub | None = None
            try:
                if self._last_seen is None:
                    # Before subscribing: events published in between are then delivered, not skipped.
                    ring = self._read(None, claim_epoch=True)
                    self._last_seen, self._epoch = ring.last, ring.epoch
                pubsub = self._client.pubsub()  # type: ignore[no-untyped-call,unused-ignore]  # older redis-py leaves it bare
                pubsub.subscribe(self._channel)
                self._hear(pubsub)
            except Exception as exc:
                self._ready.clear()
                if self._stop.is_set():
                    break
                if isinstance(exc, self._errors):
                    log.warning("Redis event bus: listener lost Redis (%s); retrying in %.1fs", exc, self._delay)
                else:
                    log.exception("Redis event bus: listener failed; retrying in %.1fs", self._delay)
                self._stop.wait(self._delay)
                self._delay = min(self._delay * 2, self._max_delay)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()
        self._ready.clear()

    def _hear(self, pubsub: PubSub) -> None:
        """Read the channel until stopped; raises when the connection is lost."""
        heard = time.monotonic()  # a PING now and then: a silent connection is a dead one
        next_ping = heard + self._liveness
        while not self._stop.is_set():
            message: dict[str, Any] | None = pubsub.get_message(timeout=self._poll)
            now = time.monotonic()
            if message is not None:
                heard = now
            elif now - heard > 2 * self._liveness:
                raise TimeoutError(f"no answer from Redis for {now - heard:.1f}s")
            if now >= next_ping:
                pubsub.ping()
                next_ping = now + self._liveness
            if message is not None:
                self._on_message(message)

    def _on_message(self, message: dict[str, Any]) -> None:
        if message["type"] == "subscribe":
            # First subscription, or redis-py reconnected by itself: fill the gap.
            self._catch_up()
            self._ready.set()
            self._delay = self._min_delay
        elif message["type"] == "message":
            try:
                events = _decode_live(message["data"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("Redis event bus: ignored a malformed message on %s (%r)", self._channel, exc)
                return
            for event in events:
                self._dispatch(event)

    def _catch_up(self) -> None:
        """Dispatch what was published while this listener was not subscribed (after a reconnect)."""
        after = self._last_seen or 0
        ring = self._read(after, claim_epoch=True)
        if ring.last < after or ring.epoch != self._epoch:
            # Redis lost its data (restarted without persistence, flushed): ids began again.
            log.warning(
                "Redis event bus: Redis lost the event ids (last seen %d, now %d); catching up on all it holds",
                after,
                ring.last,
            )
            after = self._last_seen = 0
            ring = self._read(after, claim_epoch=True)
        self._epoch = ring.epoch
        if ring.events and ring.oldest > after + 1:
            log.warning(
                "Redis event bus: events %d to %d were trimmed from the ring while disconnected; "
                "subscribers missed them",
                after + 1,
                ring.oldest - 1,
            )
        for event in ring.events:
            self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        """Hand one event to matching callbacks (listener thread); ids at or below the last seen are
        duplicates of a catch-up and skipped."""
        if self._last_seen is not None and event.id <= self._last_seen:
            return
        self._last_seen = event.id
        self._saw(event.id)
        for callback in self._subscribers.matching(event):
            try:
                callback(event)
            except Exception:
                log.exception("event bus subscriber %r failed on event %d", callback, event.id)

    # -- replay --------------------------------------------------------------------------------
    def replay(self, after_id: int, topics: Collection[str] | None = None) -> list[Event] | None:
        try:
            ring = self._read(after_id)
        except self._errors as exc:
            log.warning("Redis event bus: cannot replay events after %d (%s)", after_id, exc)
            return None
        if after_id == ring.last:
            return []
        if after_id > ring.last:
            return None  # not an id Redis gave out since it last lost the bus's keys
        if ring.oldest > after_id + 1:
            return None
        wanted = None if topics is None else set(topics)
        return [e for e in ring.events if wanted is None or e.topic in wanted or wanted.intersection(e.extra_topics)]

    def _read(self, after_id: int | None, claim_epoch: bool = False) -> _Ring:
        """The ring, with its events after `after_id` (none when None), in one transaction.
        A listener claims the epoch: sets one unless there is one, so it can tell a change later."""
        pipe = self._client.pipeline(transaction=True)
        if claim_epoch:
            pipe.set(self._epoch_key, _token(), nx=True)
        pipe.get(self._counter_key)
        pipe.get(self._epoch_key)
        pipe.xrange(self._stream_key, "-", "+", count=1)
        if after_id is not None:
            pipe.xrange(self._stream_key, str(min(max(after_id + 1, 0), _MAX_STREAM_ID)), "+")
        results: list[Any] = pipe.execute()[1 if claim_epoch else 0 :]
        last = int(results[0] or 0)
        epoch: bytes | None = results[1]
        first: list[tuple[bytes, dict[bytes, bytes]]] = results[2]
        entries: list[tuple[bytes, dict[bytes, bytes]]] = results[3] if after_id is not None else []
        return _Ring(
            last,
            epoch,
            _stream_id(first[0][0]) if first else last + 1,
            [_decode(fields[b"e"]) for _, fields in entries],
        )

    # -- the rest ------------------------------------------------------------------------------
    def last_id(self) -> int:
        try:
            newest = self._read_last_id()
        except self._errors as exc:
            log.warning("Redis event bus: cannot read the last event id (%s)", exc)
            return self._newest_known
        self._saw(newest)
        return newest

    def _read_last_id(self) -> int:
        value: bytes | str | None = self._client.get(self._counter_key)
        return int(value or 0)

    def _saw(self, event_id: int) -> None:
        if event_id > self._newest_known:
            self._newest_known = event_id  # racy, harmless: a hint (and a floor) for when Redis lost data

    def problem(self) -> str | None:
        try:
            self._client.ping()
        except self._errors as exc:
            return f"Redis does not answer: {exc}"
        return None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._subscribers.clear()
            thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._poll + 15.0)
            if thread.is_alive():
                log.warning("Redis event bus: the listener thread did not stop")
        self._client.close()


def _nothing() -> None:
    pass


def _token() -> str:
    return uuid.uuid4().hex


def _stream_id(raw: bytes | str) -> int:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return int(text.partition("-")[0])


def _live_only(event: Event) -> str:
    """What the live channel carries beyond the ring's copy: the job's record, unless it is large."""
    if event.record is None:
        return ""
    text = json.dumps(event.record, separators=(",", ":"), default=str)
    return f',"record":{text}' if len(text) <= RECORD_LIMIT else ""


def _decode_live(raw: bytes | str) -> list[Event]:
    """A message of the live channel: one event, or a JSON array of several."""
    body = json.loads(raw)
    return [_event(item) for item in body] if isinstance(body, list) else [_event(body)]


def _decode(raw: bytes | str) -> Event:
    return _event(json.loads(raw))


def _event(body: dict[str, Any]) -> Event:
    record = body.get("record")
    return Event(
        str(body["kind"]),
        int(body["job_id"]),
        str(body["task"]),
        dict(body["data"]),
        int(body["id"]),
        tuple(str(t) for t in body.get("extra_topics", ())),
        dict(record) if isinstance(record, dict) else None,
    )
