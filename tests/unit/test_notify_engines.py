"""Notifications on every engine: whoever settles a job (the server's local worker processes, or a
Celery worker writing the job's end itself), its failure and its last retry are told, because the
database writes the event with the job's change."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mieruka import App
from mieruka.core.clock import utcnow
from tests.conftest import wait_for
from tests.notify_receivers import HttpReceiver, http_receiver

ENGINES = ("local", "celery")  # tests/conftest.py runs each test using `app` on both


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as found:
        yield found


def test_failures_and_last_retries_are_told_whoever_settles_the_job(
    app: App, receiver: HttpReceiver, tmp_path: Path
) -> None:
    # A rule each: a rule's first event goes at once, a second one would wait for the digest
    # window (a minute by default).
    for event in ("job.failed", "job.last_retry"):
        app.runtime.notifier.rulebook.add(
            name=f"engines-{uuid.uuid4().hex[:8]}",
            origin="admin",
            owner=None,
            events=[event],
            scope={"tasks": ["fail", "fail_then_succeed"]},
            target="webhook:" + receiver.url(),
            secret=None,
            longer_than=None,
            created_by="test",
            now=utcnow(),
        )
    failed = app.wait(app.submit("fail", message="told"), 60)
    retried = app.wait(app.submit("fail_then_succeed", marker=str(tmp_path / "count"), failures=2), 60)
    assert failed.status.value == "failed" and retried.status.value == "succeeded"
    wanted = {("job.failed", failed.id), ("job.last_retry", retried.id)}

    def told() -> set[tuple[str, int]]:
        return {(e["kind"], e["job_id"]) for r in receiver.got() for e in r.json()["events"]}

    wait_for(lambda: wanted <= told(), 60, f"{wanted}")
    time.sleep(1)
    assert told() == wanted  # the retried job's first failure is no failure: it was retried
