"""kombu's Redis transport, with one Redis client per channel instead of one per command, and a
channel that can be closed after its broker went away.

kombu's Redis channel makes a new `redis.Redis` for every message it sends and every delivery it
records or acknowledges; redis-py builds some 200 response callbacks for each. That was a quarter
of the CPU of sending a job and a sixth of a Celery worker's main process (bench/README.md). A
client is only a handle on the channel's connection pool and is safe to share, so each channel
keeps one; it makes a new one when the pool changes (after a reconnect).

A broker outage killed the whole Celery worker (kombu 5.7) when it happened while the worker ran a
job and waited for another (a BRPOP in flight, an unacknowledged message). On the lost connection
Celery closes it twice: `collect()`, then `close()`. The first close of the channel fails reading
the BRPOP's reply, before it is marked closed; `collect()` then drops the transport's client (the
URL); the second close wants to give the unacknowledged message back, needs a new connection pool,
and builds it from that client: AttributeError, which no one expects, so the worker shut down.
The running job's acknowledgement, on the old channel, failed the same way. Here a BRPOP whose
connection is gone is given up, and a channel remembers where its broker is, so what it still has
to say reaches Redis (or fails with a connection error, which Celery expects) after its transport
was dropped.

The messages a lost channel held unacknowledged (a job waiting for its countdown, one running)
are to go back to their queue when it closes; with the broker away that fails, and Redis would
give them back only after the visibility timeout (an hour): a job held back by its task's
concurrency limit, or a retry, waited that long. They are given back by the next channel this
process connects. One that is still running comes back too, and its worker drops it (its job is
no longer queued).
"""

from __future__ import annotations

import logging
import threading
from queue import Empty
from typing import Any
from urllib.parse import urlparse

from kombu.transport import redis as kombu_redis

log = logging.getLogger("mieruka.celery")
_left_behind: list[QoS] = []  # of channels closed while the broker was away, in this process
_left_behind_lock = threading.Lock()


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client: Any = None) -> None:
        try:
            super().restore_unacked(client)  # type: ignore[no-untyped-call]
        except self.channel.connection_errors:
            with _left_behind_lock:
                _left_behind.append(self)  # for the next channel that connects
            raise


class Channel(kombu_redis.Channel):
    QoS = QoS
    _shared_client: Any = None
    _sync_params: dict[str, Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]  # connected when it returns
        self._give_back_left_behind()

    def _give_back_left_behind(self) -> None:
        with _left_behind_lock:
            pending = list(_left_behind)
            _left_behind.clear()
        for qos in pending:
            try:
                qos._flush()  # type: ignore[no-untyped-call]  # forget the acknowledged ones
                count = len(qos._delivered)
                qos.restore_unacked(self.client)
            except self.connection_errors:
                continue  # left behind again, for the next channel
            log.warning("gave back %d messages a lost broker connection left unacknowledged", count)

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if not asynchronous and self.connection.client is None and self._sync_params is not None:
            return dict(self._sync_params)  # the transport was collected: the broker is where it was
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
        if not asynchronous:
            self._sync_params = dict(params)
        return params

    def close(self) -> None:
        if self._in_poll:
            try:
                self._brpop_read()  # type: ignore[no-untyped-call]
            except Empty:
                pass
            except self.connection_errors:
                pass  # the broker is gone: the reply will never come, the close goes on
        super().close()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> type[Transport] | None:
    """The transport class for Celery's `broker_transport`: ours for plain redis:// brokers; None
    (kombu's choice) for the rest, rediss:// and sentinel:// included."""
    return Transport if urlparse(broker_url).scheme == "redis" else None
