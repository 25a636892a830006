"""Notifications survive the server: a real server is killed (SIGKILL) in the middle of a flood of
failing jobs and started again; every failure is told exactly once, in few messages, on SQLite and
PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mieruka.notify.notifier import LEASE
from tests.conftest import ServerProcess, wait_for
from tests.notify_receivers import HttpReceiver, http_receiver

FLOOD = 300


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as found:
        yield found


def test_a_killed_server_loses_and_repeats_nothing(tmp_path: Path, database_url: str, receiver: HttpReceiver) -> None:
    env = {
        "MIERUKA_TEST_NOTIFY_HOOK": receiver.url("/flood"),
        "MIERUKA_DATABASE_URL": database_url,
        "MIERUKA_NOTIFY_DIGEST_WINDOW": "2s",
        "MIERUKA_NOTIFY_POLL_INTERVAL": "0.2s",
        "MIERUKA_WORKERS": "2",
    }
    server = ServerProcess("tests.notify_app:app", tmp_path / "home", env=env)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            batch = http.post("/api/tasks/boom/jobs/batch", json={"jobs": [{"params": {"n": n}} for n in range(FLOOD)]})
            assert batch.status_code in (200, 202), batch.text
            jobs = sorted(job["id"] for job in batch.json()["jobs"])
            wait_for(lambda: receiver.got(), 60, "the first message")  # the flood has begun to be told
            server.kill()
            failed_before = _failed(database_url)
            told_before = len(receiver.got())
            server.restart()

            def all_finished() -> bool:
                listed = http.get("/api/jobs", params={"task": "boom", "limit": 500}).json()["jobs"]
                return len(listed) == FLOOD and all(job["status"] == "failed" for job in listed)

            wait_for(all_finished, 180, "every job to fail")
            # A message the killed server was sending is sent again once its lease is over.
            wait_for(lambda: len(_told(receiver)) >= FLOOD, LEASE + 60, f"{FLOOD} failures told")

            def statuses() -> set[str]:
                return {d["status"] for d in http.get("/api/notifications").json()["deliveries"]}

            # The receiver can hear a message before the server has written down that it was sent.
            wait_for(lambda: statuses() == {"sent"}, 60, "every delivery recorded as sent")
    except BaseException:
        print(server.output())
        raise
    finally:
        server.stop()
    by_job: dict[int, set[str]] = defaultdict(set)
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for request in receiver.got():
        key = request.headers["x-mieruka-delivery"]
        bodies[key].add(request.body)
        for event in request.json()["events"]:
            by_job[event["job_id"]].add(key)
    assert sorted(by_job) == jobs  # none lost
    assert all(len(keys) == 1 for keys in by_job.values())  # none told in two messages
    assert all(len(same) == 1 for same in bodies.values())  # a message sent again is the same message
    assert len(bodies) <= 12, f"{len(bodies)} messages for {FLOOD} failures"  # digests, not one each
    assert told_before >= 1
    assert failed_before < FLOOD, "the server was killed after the flood, not in its middle"
    print(
        f"{FLOOD} failures in {len(bodies)} messages ({len(receiver.got())} requests); "
        f"{failed_before} had failed when the server was killed"
    )


def _told(receiver: HttpReceiver) -> set[int]:
    return {event["job_id"] for request in receiver.got() for event in request.json()["events"]}


def _failed(database_url: str) -> int:
    """Jobs failed so far, read from the database itself (the server is down)."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM jobs WHERE status = 'failed'")).scalar_one())
    finally:
        engine.dispose()
