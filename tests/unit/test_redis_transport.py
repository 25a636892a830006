"""Our kombu Redis transport: the broker messages are kombu's own; only the Redis clients are reused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from mieruka.executors.celery import TASK_NAME, make_celery
from mieruka.executors.redis_transport import Transport, transport_for
from mieruka.settings import Settings


@pytest.fixture
def clients_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    import redis

    made: list[Any] = []
    real_init = redis.Redis.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting_init)
    yield made


def test_only_plain_redis_urls_get_it() -> None:
    assert transport_for("redis://127.0.0.1:6379/0") is Transport
    assert transport_for("rediss://127.0.0.1:6380/0") is None  # kombu's own TLS handling stays
    assert transport_for("sentinel://127.0.0.1:26379") is None
    assert transport_for("amqp://guest@127.0.0.1//") is None


def test_sending_reuses_one_client_and_the_message_is_celerys(broker_url: str, clients_made: list[Any]) -> None:
    import redis

    url = broker_url.rsplit("/", 1)[0] + "/9"
    celery = make_celery(Settings(broker_url=url))
    queue = "transport-test"
    direct = redis.Redis.from_url(url)
    try:
        with celery.connection_for_write() as conn:
            assert isinstance(conn.transport, Transport)
        celery.send_task(TASK_NAME, args=[0, "warm-up"], queue=queue)
        before = len(clients_made)
        for job_id in range(1, 51):
            celery.send_task(TASK_NAME, args=[job_id, "noop"], queue=queue, priority=3)
        assert len(clients_made) - before <= 1  # kombu alone makes one per message
        raw = direct.lrange(f"{queue}\x06\x163", 0, -1)  # kombu's key for priority 3 on Redis
        bodies = [json.loads(m) for m in raw]
        assert len(bodies) == 50
        assert {b["headers"]["task"] for b in bodies} == {TASK_NAME}
        args = sorted(json.loads(base64.b64decode(b["body"]))[0][0] for b in bodies)
        assert args == list(range(1, 51))
    finally:
        direct.flushdb()
        direct.close()
        celery.close()
