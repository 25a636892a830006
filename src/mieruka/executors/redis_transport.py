"""kombu's Redis transport, with one Redis client per channel instead of one per command.

kombu's Redis channel makes a new `redis.Redis` for every message it sends and every delivery it
records or acknowledges; redis-py builds some 200 response callbacks for each. That was a quarter
of the CPU of sending a job and a sixth of a Celery worker's main process (bench/README.md). A
client is only a handle on the channel's connection pool and is safe to share, so each channel
keeps one; it makes a new one when the pool changes (after a reconnect).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()  # type: ignore[no-untyped-call]
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


def transport_for(broker_url: str) -> type[Transport] | None:
    """The transport class for Celery's `broker_transport`: ours for plain redis:// brokers; None
    (kombu's choice) for the rest, rediss:// and sentinel:// included."""
    return Transport if urlparse(broker_url).scheme == "redis" else None
