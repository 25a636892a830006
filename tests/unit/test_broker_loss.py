"""A Redis broker that loses its data (restarted without persistence): the servers notice, exactly
one of them sends the queued jobs again, and a broker that kept its data and never went away is left
alone. One that went away and came back with its data may have lost a message on its way: a server
that saw it away sends the queued jobs again too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mieruka import JobStatus
from mieruka.executors.broker_epoch import BrokerEpoch
from tests.celery_worker import CeleryWorker, RedisServer, on_celery, private_redis
from tests.conftest import free_port, fresh_postgres_database


def _check(epoch: BrokerEpoch) -> str | None:
    epoch.next_check = 0.0  # check now, whatever the interval
    return epoch.lost()


def _waiting(client: object) -> int:
    """Messages in the default queue's lists (one list per priority level)."""
    keys = [k for k in client.keys("default*") if client.type(k) == b"list"]  # type: ignore[attr-defined]
    return sum(client.llen(k) for k in keys)  # type: ignore[attr-defined]


def test_exactly_one_server_claims_a_broker_that_lost_its_data() -> None:
    import redis

    with private_redis() as url:
        servers = [BrokerEpoch(url, 60.0) for _ in range(3)]
        try:
            assert [_check(s) for s in servers] == ["new", None, None]  # a new broker: one re-sends
            assert [_check(s) for s in servers] == [None, None, None]  # kept its data: nothing
            assert servers[0].lost() is None  # and between checks, no command at all
            client = redis.Redis.from_url(url)
            client.flushdb()
            client.close()
            assert sorted(str(_check(s)) for s in servers) == ["None", "None", "new"]
        finally:
            for server in servers:
                server.close()


def test_the_check_is_off_for_other_brokers_and_survives_a_broker_that_is_down() -> None:
    assert not BrokerEpoch("amqp://guest:guest@127.0.0.1:5672//", 5.0).active
    assert not BrokerEpoch("redis://127.0.0.1:6379/0", 0).active
    down = BrokerEpoch(f"redis://127.0.0.1:{free_port()}/0", 5.0)
    assert down.active and _check(down) is None


def test_jobs_whose_messages_the_broker_lost_still_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sent, then Redis restarts empty before any worker took them: the server sends them again."""
    import redis

    from tests.jobs import app

    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    with (
        fresh_postgres_database("mieruka_brokerloss") as database_url,
        on_celery(app, tmp_path / "home", database_url, broker, broker_check_interval=0.2) as workers,
    ):
        with private_redis(port):
            app.start()
            jobs = [app.submit("add", a=a) for a in range(3)]
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 30
            while _waiting(client) < 3:  # all three messages reached the broker
                assert time.monotonic() < deadline, "the jobs were never sent"
                time.sleep(0.05)
            client.close()
        with private_redis(port):  # back, empty
            workers.append(CeleryWorker(tmp_path / "worker-home", database_url, broker, "--concurrency", "1"))
            for job, a in zip(jobs, range(3), strict=True):
                done = app.wait(job, 60)
                assert done.status is JobStatus.SUCCEEDED and done.result == a + 2, done


def test_a_broker_back_with_its_data_is_news_to_each_server_that_saw_it_away(tmp_path: Path) -> None:
    redis_server = RedisServer(keep_in=tmp_path)
    redis_server.start()
    servers = [BrokerEpoch(redis_server.url, 60.0) for _ in range(2)]
    try:
        assert [_check(s) for s in servers] == ["new", None]
        redis_server.stop()
        assert _check(servers[0]) is None  # away (the other server did not look meanwhile)
        redis_server.start()
        assert [_check(s) for s in servers] == ["back", None]
        assert _check(servers[0]) is None  # once
    finally:
        redis_server.stop()
        for server in servers:
            server.close()


def test_jobs_whose_messages_were_lost_on_their_way_run_once_the_broker_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis keeps its data, but a message on its way when the connection broke is gone: taken off
    its queue by a worker that had not yet recorded it (here the queue is emptied by hand, then
    Redis goes away and comes back). The server saw it away: it sends the queued jobs again."""
    import logging

    import redis

    from tests.jobs import app

    caplog.set_level(logging.DEBUG, logger="mieruka.celery")
    redis_server = RedisServer(keep_in=tmp_path)
    broker = redis_server.url
    redis_server.start()
    try:
        with (
            fresh_postgres_database("mieruka_brokerback") as database_url,
            on_celery(app, tmp_path / "home", database_url, broker, broker_check_interval=0.2) as workers,
        ):
            app.start()
            jobs = [app.submit("add", a=a) for a in range(3)]
            client = redis.Redis.from_url(broker)
            deadline = time.monotonic() + 30
            while _waiting(client) < 3:
                assert time.monotonic() < deadline, "the jobs were never sent"
                time.sleep(0.05)
            client.delete(*[k for k in client.keys("default*") if client.type(k) == b"list"])
            client.close()
            redis_server.stop()
            deadline = time.monotonic() + 30
            while not any("broker check failed" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline, "the server never looked at the broker while it was away"
                time.sleep(0.05)
            redis_server.start()
            workers.append(CeleryWorker(tmp_path / "worker-home", database_url, broker, "--concurrency", "1"))
            for job, a in zip(jobs, range(3), strict=True):
                done = app.wait(job, 60)
                assert done.status is JobStatus.SUCCEEDED and done.result == a + 2, done
            assert any("the broker is back: sending 3 queued jobs again" in r.getMessage() for r in caplog.records)
    finally:
        redis_server.stop()
