"""The message that runs a job: Celery's own task message, on Redis (sent through Celery's message
layer) and on RabbitMQ (through send_task), read back from the broker as a worker would."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import datetime
from typing import Any

from mieruka.executors.celery import TASK_NAME, make_celery, send_run
from mieruka.settings import Settings
from tests.conftest import need_service

RABBITMQ_URL = os.environ.get("MIERUKA_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def check(message: dict[str, Any], job_id: int, delayed: bool) -> None:
    headers = message["headers"]
    assert headers["task"] == TASK_NAME and headers["argsrepr"] == f"[{job_id}, 'noop']"
    assert (headers["eta"] is not None) == delayed
    if delayed:
        assert datetime.fromisoformat(headers["eta"]).tzinfo is not None


def test_on_redis(broker_url: str) -> None:
    import redis

    url = broker_url.rsplit("/", 1)[0] + "/8"
    celery = make_celery(Settings(broker_url=url))
    direct = redis.Redis.from_url(url)
    try:
        send_run(celery, url, 11, "noop", "send-test", priority=0)
        send_run(celery, url, 12, "noop", "send-test", priority=3, delay=30.0)
        by_key = {key: [json.loads(m) for m in direct.lrange(key, 0, -1)] for key in direct.keys("send-test*")}
        # our priority 0 is Redis's 6, priority 3 is Redis's 3 (read first)
        assert sorted(by_key) == [b"send-test\x06\x163", b"send-test\x06\x166"]
        for key, job_id, delayed in ((b"send-test\x06\x166", 11, False), (b"send-test\x06\x163", 12, True)):
            (message,) = by_key[key]
            check(message, job_id, delayed)
            assert json.loads(base64.b64decode(message["body"]))[0] == [job_id, "noop"]
    finally:
        direct.flushdb()
        direct.close()
        celery.close()


def purge_rabbitmq_queue(queue: str) -> None:
    """Empty a queue on the test RabbitMQ (skip, or fail where services are required, without one)."""
    celery = make_celery(Settings(broker_url=RABBITMQ_URL))
    try:
        with celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:
                pass
    except Exception as exc:
        need_service(f"RabbitMQ is not reachable at {RABBITMQ_URL}: {exc}")
    finally:
        celery.close()


def test_on_rabbitmq() -> None:
    queue = f"send-test-{uuid.uuid4().hex[:8]}"
    purge_rabbitmq_queue(queue)
    celery = make_celery(Settings(broker_url=RABBITMQ_URL))
    try:
        send_run(celery, RABBITMQ_URL, 21, "noop", queue, priority=0)
        send_run(celery, RABBITMQ_URL, 22, "noop", queue, priority=0, delay=30.0)
        with celery.connection_for_write() as conn:
            channel = conn.default_channel
            got = [channel.basic_get(queue, no_ack=True) for _ in range(2)]
            channel.queue_delete(queue)
        celery.pool.force_close_all()  # the producers' connections
        for message, job_id, delayed in zip(got, (21, 22), (False, True), strict=True):
            assert message is not None
            check({"headers": message.headers}, job_id, delayed)
            assert json.loads(message.body)[0] == [job_id, "noop"]
    finally:
        celery.close()
