"""Notifications end to end in one process: jobs that fail, succeed, run long and retry tell a real
webhook receiver and a real SMTP server (aiosmtpd, STARTTLS and AUTH), signed, without secrets; a
flood becomes a digest; a receiver that answers 500 gets the message again after a backoff; two
servers on one database send each event once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import mieruka
from mieruka import App, charts
from mieruka.core.clock import utcnow
from mieruka.errors import ConfigError, NotFoundError, ValidationError
from mieruka.notify import deliveries, outbox
from mieruka.notify.messages import Event, compose
from mieruka.notify.notifier import Notifier
from mieruka.notify.rulebook import Rulebook, StoredRule
from mieruka.store import tables as t
from mieruka.store.codec import json_text
from mieruka.store.database import Database
from mieruka.store.pools import SqlPoolStore
from tests.conftest import wait_for
from tests.notify_receivers import HttpReceiver, http_receiver, mail_server, self_signed
from tests.unit.test_imports import loaded_after

SECRET_VALUE = "hunter2-very-secret"
HMAC_KEY = "the-webhook-key"


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with http_receiver() as found:
        yield found


def make_app(tmp_path: Path, database_url: str, hook: str, **settings: Any) -> App:
    app = App("notify test")
    options: dict[str, Any] = {
        "home": str(tmp_path / "home"),
        "database_url": database_url,
        "executor": "threads",
        "workers": 4,
        "poll_interval": 0.2,
        "prune_interval": 3600,
        "notify_poll_interval": 0.1,
        "notify_webhook_secret": HMAC_KEY,
        "public_url": "https://jobs.example.org/lab",
    }
    options.update(settings)
    app.configure(**options)

    @app.task(notify=mieruka.notify.on_failure(hook))
    def boom(password: str = "", n: int = 0) -> None:
        raise ValueError(f"cannot log in with {password}\nsecond line\nthird line")

    @app.task(notify={"succeeded": hook, "long": hook, "longer_than": "0.5s"})
    def fine(sleep: float = 0.0) -> int:
        time.sleep(sleep)
        return 1

    @app.task(
        retries=2, retry_backoff=0.1, notify=[mieruka.notify.on_last_retry(hook), mieruka.notify.on_failure(hook)]
    )
    def flaky() -> None:
        raise RuntimeError("always")

    return app


def events_sent(receiver: HttpReceiver) -> list[dict[str, Any]]:
    return [event for request in receiver.got() for event in request.json()["events"]]


def failed_jobs_rule(
    book: Rulebook,
    name: str,
    owner: str | None = None,
    origin: str = "admin",
    target: str = "mail:ops@example.org",
    created_by: str = "admin",
) -> StoredRule:
    """A rule about failed jobs, made as the API makes one."""
    return book.add(
        name=name,
        origin=origin,
        owner=owner,
        events=["job.failed"],
        scope={},
        target=target,
        secret=None,
        longer_than=None,
        created_by=created_by,
        now=utcnow(),
    )


def test_a_failed_job_tells_the_webhook_signed_without_its_secrets(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url())
    with app:
        job = app.wait(app.submit("boom", password=SECRET_VALUE), 30)
        assert job.status.value == "failed"
        request = wait_for(lambda: receiver.got(), what="the webhook")[0]
    assert request.signed_with(HMAC_KEY)
    assert not request.signed_with("another key")
    assert SECRET_VALUE not in request.body.decode()
    body = request.json()
    assert body["delivery"] == request.headers["x-mieruka-delivery"]
    (event,) = body["events"]
    assert event["kind"] == "job.failed" and event["job_id"] == job.id and event["task"] == "boom"
    assert event["url"] == f"https://jobs.example.org/lab/jobs/{job.id}"
    assert "cannot log in with (hidden)" in event["error"] and "third line" in event["error"]
    assert body["url"] == event["url"] and f"Job {job.id} (boom) failed" in body["title"]


def test_success_long_runs_and_the_last_retry(tmp_path: Path, database_url: str, receiver: HttpReceiver) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_digest_window=0.2)
    with app:
        slow = app.wait(app.submit("fine", sleep=1.5), 30)
        flaky = app.wait(app.submit("flaky"), 30)
        wanted = {
            ("job.long", slow.id),
            ("job.succeeded", slow.id),
            ("job.last_retry", flaky.id),
            ("job.failed", flaky.id),
        }
        wait_for(
            lambda: wanted <= {(e["kind"], e.get("job_id")) for e in events_sent(receiver)},
            what=f"{wanted} in {events_sent(receiver)}",
        )
        time.sleep(1)  # nothing more comes: a long job is told once, the first attempt's failure not at all
    kinds = sorted((e["kind"], e.get("job_id")) for e in events_sent(receiver))
    assert kinds == sorted(wanted)


def test_a_long_job_of_a_task_without_a_long_rule_is_passed_over(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    """Only `fine` has a 0.5 s limit: a `quiet` job running past it is no event and no failed round."""
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_poll_interval=3600)
    gate = threading.Event()

    @app.task
    def quiet() -> None:
        gate.wait(30)

    with app:
        job = app.submit("quiet")
        wait_for(lambda: app.get_job(job.id).status.value == "running", what="the job running")
        limits: dict[str | None, float] = {"fine": 0.5}
        later = utcnow() + timedelta(seconds=5)
        assert outbox.long_jobs(app.runtime.database, limits, later) == []
        app.runtime.notifier.run_once()
        gate.set()
        app.wait(job.id, 30)
    assert [e["kind"] for e in events_sent(receiver)] == []


@pytest.mark.parametrize("secure", [True, False], ids=["starttls-auth", "plain"])
def test_mail_over_smtp(tmp_path: Path, database_url: str, secure: bool) -> None:
    tls = self_signed(tmp_path) if secure else None
    login = ("mieruka", "mail-password") if secure else None
    with mail_server(tls, login) as box:
        settings: dict[str, Any] = {
            "notify_smtp_host": "127.0.0.1",
            "notify_smtp_port": box.port,
            "notify_smtp_starttls": secure,
            "notify_smtp_from": "mieruka@lab.example.org",
            "timezone": "Asia/Tokyo",
        }
        if secure and tls is not None:
            settings.update(
                notify_smtp_user="mieruka", notify_smtp_password="mail-password", notify_ca_file=str(tls[0])
            )
        app = make_app(tmp_path, database_url, "mail:ops@example.org,oncall@example.org", **settings)
        with app:
            job = app.wait(app.submit("boom", password=SECRET_VALUE), 30)
            wait_for(lambda: box.messages, what="the mail")
    (mail,) = box.messages
    assert mail["To"] == "ops@example.org, oncall@example.org"
    assert mail["From"] == "mieruka@lab.example.org"
    assert mail["Subject"] == f"[mieruka] Job {job.id} (boom) failed"
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    text = payload.decode()
    assert f"Job {job.id} (boom) failed at " in text and " JST." in text  # in the configured zone
    assert f"https://jobs.example.org/lab/jobs/{job.id}" in text and "second line" in text
    assert SECRET_VALUE not in mail.as_string()
    assert box.tls_sessions == [secure]
    assert box.logins == (["mieruka"] if secure else [])


def test_a_wrong_smtp_password_is_a_failed_attempt_that_says_why(tmp_path: Path, database_url: str) -> None:
    tls = self_signed(tmp_path)
    with mail_server(tls, ("mieruka", "right")) as box:
        app = make_app(
            tmp_path,
            database_url,
            "mail:ops@example.org",
            notify_smtp_host="127.0.0.1",
            notify_smtp_port=box.port,
            notify_smtp_user="mieruka",
            notify_smtp_password="wrong-password-xyz",
            notify_ca_file=str(tls[0]),
            notify_retry_after=3600,
            notify_webhook_timeout=2,
        )
        with app:
            app.wait(app.submit("boom"), 30)
            row = wait_for(lambda: _deliveries(app, "attempts > 0"), what="the failed attempt")[0]
    assert row["status"] == "pending" and row["attempts"] == 1
    # aiosmtpd refuses PLAIN, then lets smtplib's LOGIN attempt time out: either way an SMTP error
    assert row["last_error"].startswith("mail: SMTP") and "wrong-password-xyz" not in row["last_error"]
    assert box.messages == []


def test_a_receiver_that_fails_gets_the_message_again_after_a_backoff(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    receiver.answers = [500, 503]
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_retry_after=0.5)
    with app:
        app.wait(app.submit("boom"), 30)
        wait_for(lambda: len(receiver.got()) == 3, what="three tries")
        sent = wait_for(lambda: _deliveries(app, "status = 'sent'"), what="the message marked sent")[0]
        time.sleep(1.5)
        states = {r["status"] for r in _deliveries(app, "1 = 1")}
    tries = receiver.got()
    assert len(tries) == 3 and len({r.headers["x-mieruka-delivery"] for r in tries}) == 1  # one message, tried 3 times
    assert len({r.body for r in tries}) == 1
    assert sent["attempts"] == 3
    assert states == {"sent"}


def test_a_flood_is_one_digest_per_rule(tmp_path: Path, database_url: str, receiver: HttpReceiver) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_digest_window=5)
    with app:
        started = time.monotonic()
        jobs = [app.submit("boom", n=i).id for i in range(200)]
        for job in jobs:
            app.wait(job, 60)
        wait_for(lambda: len(events_sent(receiver)) >= 200, 60, "every failure told")
        lasted = time.monotonic() - started
        time.sleep(1)
    messages = [r.json() for r in receiver.got()]
    told = [e["job_id"] for m in messages for e in m["events"]]
    assert sorted(told) == sorted(jobs), [len(m["events"]) for m in messages]  # each once
    # The first at once, then one digest per window the flood lasted (one, on a machine not busy).
    assert len(messages) <= 2 + int(lasted // 5), (lasted, [len(m["events"]) for m in messages])
    digest = max(messages, key=lambda m: len(m["events"]))
    assert digest["digest"] and "events" in digest["title"] and "... and" in digest["text"]


def test_five_hundred_failures_in_a_minute_are_one_digest_per_rule(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    """The issue's flood with the default digest window (a minute), on a clock the test moves: each
    rule tells the first failures at once and the others in one digest when the minute is over."""
    from mieruka.core.task import TaskRegistry
    from mieruka.notify import outbox
    from mieruka.settings import Settings
    from mieruka.store.database import Database

    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    try:
        settings = Settings().with_overrides(home=str(tmp_path / "home"), notify_webhook_secret=HMAC_KEY)
        assert settings.notify_digest_window == 60
        rules = {
            "ops": mieruka.notify.rule(["failed"], "webhook:" + receiver.url("/ops")),
            "chat": mieruka.notify.rule(["failed"], "slack:" + receiver.url("/chat")),
        }
        start = utcnow()
        notifier = Notifier(db, settings, TaskRegistry(), rules, lambda user: None)
        notifier.rulebook.sync_code(rules, start)
        for second in range(0, 60, 3):  # 25 failures every 3 seconds, the delivery loop going round
            at = start + timedelta(seconds=second)
            failures = [outbox.NewEvent("job.failed", f"job.failed:{second}:{n}", "boom", "failed") for n in range(25)]
            outbox.record(db, failures, at)
            assert all(sent.ok for sent in notifier.run_once(at))
        assert len(receiver.got("/ops")) == 1 and len(receiver.got("/chat")) == 1  # the first, at once
        assert notifier.run_once(start + timedelta(seconds=59.9)) == []  # the window is not over yet
        done = notifier.run_once(start + timedelta(seconds=61))
        assert len(done) == 2 and all(sent.ok for sent in done)
        ops = [r.json() for r in receiver.got("/ops")]
        assert [len(m["events"]) for m in ops] == [25, 475] and ops[1]["digest"]
        assert "475 events" in ops[1]["title"] and "... and 455 more" in ops[1]["text"]
        assert len(receiver.got("/chat")) == 2  # one digest per rule, not 500 messages
        assert notifier.run_once(start + timedelta(minutes=5)) == []  # nothing more, nothing twice
    finally:
        db.close()


def test_a_subscriber_who_cannot_be_looked_up_holds_up_nobody_else(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    from mieruka.core.access import Principal, Role
    from mieruka.notify import outbox
    from mieruka.settings import Settings
    from mieruka.store.database import Database

    app = App("lookups")
    app.task(name="boom")(lambda: None)
    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    try:

        def listener(owner: str) -> Principal | None:
            if owner == "broken":
                raise RuntimeError("the directory library fell over")
            return Principal(owner, Role.VIEWER, "notify")

        notifier = Notifier(db, Settings().with_overrides(home=str(tmp_path / "home")), app.tasks, {}, listener)
        for owner in ("broken", "fine"):
            notifier.rulebook.add(
                name=f"{owner}:sub",
                origin="user",
                owner=owner,
                events=["job.failed"],
                scope={},
                target="webhook:" + receiver.url(f"/{owner}"),
                secret=None,
                longer_than=None,
                created_by=owner,
                now=utcnow(),
            )
        outbox.record(db, [outbox.NewEvent("job.failed", "job.failed:1", "boom", "failed", task="boom")], utcnow())
        assert [sent.ok for sent in notifier.run_once()] == [True]
        assert len(receiver.got("/fine")) == 1 and receiver.got("/broken") == []
    finally:
        db.close()


def test_a_rule_has_one_test_message_waiting_at_most(tmp_path: Path, database_url: str) -> None:
    """Pressing "Send a test message" again before the first was tried queues nothing (a script
    pressing it in a loop would otherwise queue mail without end); once tried, a new test may go."""
    from mieruka.errors import ConflictError
    from mieruka.store.database import Database

    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    try:
        rule = Rulebook(db).add(
            name="r",
            origin="user",
            owner="val",
            events=["job.failed"],
            scope={},
            target="mail:val@example.org",
            secret=None,
            longer_than=None,
            created_by="val",
            now=utcnow(),
        )
        first = deliveries.add_test(db, rule.id, utcnow())
        with pytest.raises(ConflictError, match=f"test message {first} of this rule is on its way"):
            deliveries.add_test(db, rule.id, utcnow())
        (claimed,) = deliveries.claim(db, utcnow(), 60)
        deliveries.failed(db, claimed, utcnow(), "the relay refused", 3600, 8)  # tried: pending again, later
        assert deliveries.add_test(db, rule.id, utcnow()) > first
    finally:
        db.close()


def test_two_servers_on_one_database_send_each_event_once(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_digest_window=0.3)
    with app:
        ours = app.runtime.notifier
        other = Notifier(app.runtime.database, app.runtime.settings, app.tasks, app.notifications, lambda user: None)
        stop = threading.Event()

        def second_server() -> None:
            while not stop.is_set():
                other.run_once()
                time.sleep(0.02)

        thread = threading.Thread(target=second_server)
        thread.start()
        try:
            jobs = [app.submit("boom", n=i).id for i in range(60)]
            for job in jobs:
                app.wait(job, 60)
            wait_for(lambda: len(events_sent(receiver)) >= 60, 60, "every failure told")
            time.sleep(1)
        finally:
            stop.set()
            thread.join()
        assert ours is not other
    keys = [r.headers["x-mieruka-delivery"] for r in receiver.got()]
    assert len(keys) == len(set(keys))
    assert sorted(e["job_id"] for e in events_sent(receiver)) == sorted(jobs)


def test_pools_nodes_and_missed_runs(tmp_path: Path, database_url: str, receiver: HttpReceiver) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_digest_window=0.1)
    hook = "webhook:" + receiver.url()
    app.notify(mieruka.notify.on_pool_change(hook), pools=["gpu"])
    app.notify(mieruka.notify.on_node_down(hook))
    app.notify(mieruka.notify.on_missed_run(hook))
    with app:
        now = utcnow()
        pools = SqlPoolStore(app.runtime.database)
        for name in ("gpu", "cpu"):
            pools.ensure(name, "stopped", now)  # declared: no event
            pools.move(name, {"stopped"}, "starting", "a job waits", now)
            pools.move(name, {"starting"}, "running", "workers up", now)
        app.engine.store.heartbeat("dead-engine", "node7", 4242, now - timedelta(hours=1), {"kind": "celery"})
        due = now - timedelta(hours=2)
        app.engine.store.schedule_due("nightly", due)
        app.engine.store.fire_schedule("nightly", due, now + timedelta(days=1), None)  # another server's: no job
        app.engine.store.schedule_due("hourly", due)
        from mieruka.store.base import NewJob

        app.engine.store.fire_schedule("hourly", due, now + timedelta(hours=1), NewJob("fine", {}), "2 h late")
        wanted = {("pool.started", "gpu"), ("node.down", "node7"), ("schedule.missed", "hourly")}
        wait_for(
            lambda: wanted <= {(e["kind"], e["subject"]) for e in events_sent(receiver)},
            what=str(wanted),
        )
        time.sleep(0.5)
    seen = {(e["kind"], e["subject"]) for e in events_sent(receiver)}
    assert ("pool.started", "cpu") not in seen  # the rule is about the gpu pool
    assert {found for found in seen if not found[0].startswith("job.")} == wanted


def test_nothing_is_written_for_events_no_rule_asks_for(tmp_path: Path, database_url: str) -> None:
    app = App("quiet")
    app.configure(home=str(tmp_path / "home"), database_url=database_url, executor="threads", poll_interval=0.2)

    @app.task
    def fails() -> None:
        raise ValueError("no")

    with app:
        app.wait(app.submit("fails"), 30)
        with app.runtime.database.read() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(t.notify_events)).scalar_one() == 0


def test_rules_declared_in_code_are_checked_and_kept_in_step(tmp_path: Path, database_url: str) -> None:
    with pytest.raises(ConfigError, match="e-mail address"):
        mieruka.notify.on_failure("mail:not-an-address")
    with pytest.raises(ConfigError, match="must be one of"):
        mieruka.notify.on_failure("sms:+331234")
    with pytest.raises(ConfigError, match="longer_than"):
        App("x").task(name="x", notify={"long": "mail:a@b.org"})(lambda: None)
    with pytest.raises(ConfigError, match="unknown key"):
        App("x").task(name="x", notify={"explode": "mail:a@b.org"})(lambda: None)
    app = make_app(tmp_path, database_url, "webhook:http://127.0.0.1:9/hook")
    with app:
        names = {r.name: r for r in app.runtime.notifier.rulebook.all()}
    assert set(names) == {"task:boom", "task:fine:1", "task:fine:2", "task:flaky:1", "task:flaky:2"}
    assert names["task:boom"].origin == "code" and names["task:boom"].scope == {"tasks": ["boom"]}
    assert names["task:boom"].shown_target() == "webhook:http://127.0.0.1:9/\u2026"
    smaller = App("notify test")  # the same app, one rule fewer: the rule goes at the next start
    smaller.configure(home=str(tmp_path / "home"), database_url=database_url, executor="threads")
    smaller.task(name="boom", notify=mieruka.notify.on_failure("mail:ops@example.org"))(lambda: None)
    with smaller:
        (only,) = smaller.runtime.notifier.rulebook.all()
    assert only.name == "task:boom" and only.id == names["task:boom"].id and only.target == "mail:ops@example.org"


def _deliveries(app: App, where: str) -> list[dict[str, Any]]:
    with app.runtime.database.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM notify_deliveries WHERE {where}"))]


def test_backoff_doubles_up_to_a_ceiling() -> None:
    assert [deliveries.backoff(n, 10) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert deliveries.backoff(30, 10) == 3600


def test_a_data_source_failing_and_recovering(tmp_path: Path, database_url: str, receiver: HttpReceiver) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_digest_window=0.1)
    app.notify(mieruka.notify.on_source_change("webhook:" + receiver.url("/sources")), sources=["beds"])
    broken = threading.Event()
    broken.set()

    @app.source(every="0.3s")
    def beds() -> list[dict[str, int]]:
        if broken.is_set():
            raise ConnectionError("the ward database does not answer")
        return [{"ward": 1, "beds": 4}]

    # The message links the dashboard that shows the source; the first is for admins only, and a
    # rule's readers (mail addresses, a webhook) are not known to be admins: the open one.
    app.dashboard("board_room", [charts.table(beds)], allow=["admin"])
    app.dashboard("ward", [charts.kpi(beds, value="beds")])

    with app:
        wait_for(lambda: receiver.got("/sources"), what="the failing source told")
        time.sleep(1)  # it goes on failing: told once
        broken.clear()
        wait_for(lambda: len(receiver.got("/sources")) >= 2, what="the recovery told")
    bodies = [r.json() for r in receiver.got("/sources")]
    events = [e for body in bodies for e in body["events"]]
    assert [(e["kind"], e["subject"]) for e in events] == [("source.failing", "beds"), ("source.recovered", "beds")]
    assert "does not answer" in events[0]["message"]
    ward = "https://jobs.example.org/lab/dashboards/ward"
    assert [e["url"] for e in events] == [ward, ward] and [body["url"] for body in bodies] == [ward, ward]


def test_a_messages_error_lines_keep_what_closes_a_hidden_password() -> None:
    error = (
        "OperationalError: connect(host='db', password=hunter2) failed\n"
        "while reading 'DRIVER={x};UID=lab;PWD=s3cret;DATABASE=beds', pwd='it s', [password=abc]\n"
        "url (postgresql://bob:pa55@db/beds)"
    )
    failed = Event(1, "job.failed", utcnow(), "boom", job_id=7, task="boom", message=error)
    message = compose([failed], "https://x.org", "k", "rule", {}, lambda _id: None)
    assert message.events[0]["error"] == (
        "OperationalError: connect(host='db', password=(hidden)) failed\n"
        "while reading 'DRIVER={x};UID=lab;PWD=(hidden);DATABASE=beds', pwd='(hidden)', [password=(hidden)]\n"
        "url (postgresql://bob:(hidden)@db/beds)"
    )
    assert not any(secret in message.text for secret in ("hunter2", "s3cret", "it s", "abc", "pa55"))


def test_a_data_sources_message_links_the_first_dashboard_its_reader_may_see() -> None:
    from mieruka.core.access import Principal, Role
    from mieruka.core.dashboards import Dashboard

    def board(name: str, source: str, allow: tuple[str, ...] | None = None) -> Dashboard:
        return Dashboard(name, name, (charts.table(source),), allow=allow)

    boards = [board("sales", "orders"), board("lab", "beds", ("group:lab",)), board("ward", "beds")]
    failing = Event(1, "source.failing", utcnow(), "beds", message="ConnectionError: no answer")
    recovered = Event(2, "source.recovered", utcnow(), "beds")

    def link(events: list[Event], reader: Principal | None = None, shown: list[Dashboard] = boards) -> str:
        return compose(events, "https://x.org", "k", "rule", {}, lambda _id: None, UTC, shown, reader).link

    assert link([failing]) == "https://x.org/dashboards/ward"  # a rule's unknown readers: the open one
    labmate = Principal("lee", Role.VIEWER, "notify", groups=frozenset({"lab"}))
    assert link([failing], labmate) == "https://x.org/dashboards/lab"
    assert link([failing], Principal("val", Role.VIEWER, "notify")) == "https://x.org/dashboards/ward"
    assert link([failing], shown=boards[:2]) == "https://x.org/dashboards/lab"  # none open: the one there is
    assert link([failing, recovered]) == "https://x.org/dashboards/ward"  # a digest of one source's events
    assert link([failing], shown=boards[:1]) == "https://x.org/dashboards#source-beds"  # no dashboard shows it
    assert link([failing, Event(3, "source.failing", utcnow(), "orders")]) == "https://x.org/notifications"


def test_rules_scoped_by_tag_or_source_hear_of_theirs_only(
    tmp_path: Path, database_url: str, receiver: HttpReceiver
) -> None:
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_digest_window=0.1)
    app.notify(mieruka.notify.on_failure("webhook:" + receiver.url("/imaging")), tags=["imaging"], name="imaging")
    app.notify(mieruka.notify.on_source_change("webhook:" + receiver.url("/beds")), sources=["beds"], name="beds")

    @app.task(tags=["imaging", "nightly"])
    def segment() -> None:
        raise RuntimeError("the scanner is off")

    @app.source(every="0.3s")
    def beds() -> list[dict[str, int]]:
        raise ConnectionError("the ward database does not answer")

    @app.source(every="0.3s")
    def staff() -> list[dict[str, int]]:
        raise ConnectionError("the rota does not answer")

    def heard_by(rule: str) -> list[tuple[str, str]]:
        """What the rule's messages hold, read from the database: routing is over for an event once
        it is marked routed, whether or not its message has gone yet."""
        e, i, r = t.notify_events.c, t.notify_items.c, t.notify_rules.c
        with app.runtime.database.read() as conn:
            rows = conn.execute(
                sa.select(e.kind, e.subject)
                .join(t.notify_items, i.event_id == e.id)
                .join(t.notify_rules, r.id == i.rule_id)
                .where(r.name == rule)
                .order_by(e.id)
            )
            return [(row.kind, row.subject) for row in rows]

    def routed(kind: str, subject: str) -> bool:
        e = t.notify_events.c
        with app.runtime.database.read() as conn:
            found = conn.execute(sa.select(e.routed).where(e.kind == kind, e.subject == subject)).scalars().all()
        return bool(found) and all(found)

    with app:
        untagged = app.wait(app.submit("boom"), 30)
        tagged = app.wait(app.submit("segment"), 30)
        wait_for(lambda: routed("job.failed", "boom") and routed("job.failed", "segment"), what="both failures routed")
        wait_for(lambda: routed("source.failing", "beds") and routed("source.failing", "staff"), what="both sources")
        told = wait_for(lambda: receiver.got("/imaging"), what="the imaging rule's message")
        assert heard_by("imaging") == [("job.failed", "segment")]  # read while the app still has its database
        assert heard_by("beds") == [("source.failing", "beds")]
    assert [e["job_id"] for e in told[0].json()["events"]] == [tagged.id] and untagged.id != tagged.id


@pytest.mark.parametrize("channel", ["slack", "teams", "mattermost"])
def test_chat_webhooks_get_the_body_they_read(
    tmp_path: Path, database_url: str, receiver: HttpReceiver, channel: str
) -> None:
    app = make_app(tmp_path, database_url, f"{channel}:" + receiver.url(f"/{channel}"))
    with app:
        job = app.wait(app.submit("boom", password=SECRET_VALUE), 30)
        (request,) = wait_for(lambda: receiver.got(f"/{channel}"), what=f"the {channel} message")
    body, link = request.json(), f"https://jobs.example.org/lab/jobs/{job.id}"
    assert SECRET_VALUE not in request.body.decode() and "x-mieruka-signature" not in request.headers
    if channel == "slack":
        assert f"Job {job.id} (boom) failed" in body["text"]
        assert body["blocks"][0]["type"] == "header" and f"<{link}|Open in mieruka>" in str(body["blocks"])
    elif channel == "teams":
        card = body["attachments"][0]
        assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert card["content"]["actions"][0]["url"] == link and "second line" in str(card["content"]["body"])
    else:
        assert body["text"].startswith("#### [mieruka] Job") and f"[Open in mieruka]({link})" in body["text"]


def test_the_docs_example_declares_what_it_says() -> None:
    page = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text(encoding="utf-8")
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    space: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(example, "docs/notifications.md", "exec"), space)
    rules = space["app"].notifications
    assert set(rules) == {
        "task:align",
        "task:nightly_backup:1",
        "task:nightly_backup:2",
        "app:1",
        "app:2",
        "app:3",
        "ops-webhook",
    }
    assert rules["task:nightly_backup:2"].on == {"job.long"} and rules["task:nightly_backup:2"].longer_than == 600
    assert rules["app:1"].pools == ("gpu",) and rules["app:3"].tags == ("imaging",)
    assert rules["ops-webhook"].on == {"job.failed", "job.last_retry"}


def test_old_messages_and_their_events_are_pruned(tmp_path: Path, database_url: str, receiver: HttpReceiver) -> None:
    receiver.answers = [500] * 100  # the second rule's receiver refuses: its message stays pending
    app = make_app(tmp_path, database_url, "webhook:" + receiver.url(), notify_retry_after=3600)
    with app:
        app.wait(app.submit("boom"), 30)
        app.wait(app.submit("fine"), 30)
        wait_for(lambda: len(_deliveries(app, "attempts > 0")) == 2, what="both tried")
        db = app.runtime.database
        sent = _deliveries(app, "1 = 1")
        with db.write() as conn:  # one of them was sent long ago
            conn.execute(
                sa.update(t.notify_deliveries).where(t.notify_deliveries.c.id == sent[0]["id"]).values(status="sent")
            )
        assert deliveries.prune(db, utcnow() - timedelta(days=1)) == 0  # nothing is old yet
        assert deliveries.prune(db, utcnow() + timedelta(days=1)) == 1
        assert [d["id"] for d in _deliveries(app, "1 = 1")] == [sent[1]["id"]]  # the pending one stays
        with db.read() as conn:
            left = conn.execute(sa.select(t.notify_events.c.id)).scalars().all()
        assert len(left) == 1  # the pruned message's event went with it


def test_the_docs_settings_example_is_read(tmp_path: Path) -> None:
    from mieruka.settings import Settings

    page = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text(encoding="utf-8")
    config = tmp_path / "mieruka.toml"
    config.write_text(page.split("```toml\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    settings = Settings.load(environ={}, config_file=config)
    assert settings.notify_smtp_host == "smtp.lab.example.org" and settings.notify_digest_window == 60


def test_servers_starting_together_write_the_code_rules_once(tmp_path: Path, database_url: str) -> None:
    app = make_app(tmp_path, database_url, "mail:ops@example.org")
    with app:
        db, declared = app.runtime.database, app.notifications
        with db.write() as conn:
            conn.execute(sa.delete(t.notify_rules))
        books = [Rulebook(db) for _ in range(4)]
        threads = [threading.Thread(target=book.sync_code, args=(declared, utcnow())) for book in books]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.name for r in books[0].all()) == sorted(declared)
        # A viewer's subscription named like a rule the code declares later (app:9) cannot keep the
        # server from starting: the code's rule takes its name, the subscription is renamed.
        squatter = books[0].add(
            name="app:9",
            origin="user",
            owner="val",
            events=["job.failed"],
            scope={},
            target="mail:val@example.org",
            secret=None,
            longer_than=None,
            created_by="val",
            now=utcnow(),
        )
        books[0].sync_code({**declared, "app:9": mieruka.notify.on_failure("mail:b@example.org")}, utcnow())
        by_name = {r.name: r for r in books[0].all()}
        assert by_name["app:9"].origin == "code" and by_name["app:9"].target == "mail:b@example.org"
        renamed = books[0].get(squatter.id)
        assert renamed.name == f"app:9 (renamed: rule {squatter.id})" and renamed.owner == "val"


@contextmanager
def through_sqlalchemy(db: Database) -> Iterator[list[str]]:
    """The statements run meanwhile through the database's SQLAlchemy engines (writer and reader)."""
    seen: list[str] = []

    def heard(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    engines = list({id(engine): engine for engine in (db.engine, db._reader)}.values())
    for engine in engines:
        sa.event.listen(engine, "before_cursor_execute", heard)
    try:
        yield seen
    finally:
        for engine in engines:
            sa.event.remove(engine, "before_cursor_execute", heard)


def test_an_idle_notifier_runs_nothing_through_sqlalchemy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server on SQLite with nothing to tell starts its notifier and goes round without SQLAlchemy
    (the lean runtime never imports it): the rules, the outbox, the due messages and the first
    round's pruning are read in plain SQL."""
    from mieruka.core.task import TaskRegistry
    from mieruka.settings import Settings

    (tmp_path / "home").mkdir()
    db = Database(f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}")
    db.migrate()
    pruned: list[datetime] = []
    prune = deliveries.prune

    def pruning(db: Database, before: datetime) -> int:
        pruned.append(before)
        return prune(db, before)

    monkeypatch.setattr(deliveries, "prune", pruning)
    try:
        settings = Settings().with_overrides(home=str(tmp_path / "home"))
        notifier = Notifier(db, settings, TaskRegistry(), {}, lambda user: None)
        with through_sqlalchemy(db) as statements:
            notifier.rulebook.sync_code({}, utcnow())  # as start() does
            assert notifier.run_once() == [] and notifier.run_once() == []
        assert statements == [] and len(pruned) == 1
        failed_jobs_rule(
            Rulebook(db), "ops", owner="val"
        )  # a rule about something that does not happen: still nothing to do
        with through_sqlalchemy(db) as statements:
            notifier.rulebook.sync_code({}, utcnow())
            assert notifier.run_once() == []
        assert statements == []
    finally:
        db.close()


def _sqlalchemys_rules(db: Database, owner: str | None = None) -> list[StoredRule]:
    """The rules as Rulebook.all read them through SQLAlchemy, before it read them in plain SQL."""
    r = t.notify_rules.c
    stmt = sa.select(t.notify_rules).order_by(r.id)
    if owner is not None:
        stmt = stmt.where(r.owner == owner)
    with db.read() as conn:
        rows = [row._mapping for row in conn.execute(stmt)]
    return [
        StoredRule(
            id=m["id"],
            name=m["name"],
            origin=m["origin"],
            owner=m["owner"],
            events=frozenset(k for k in m["events"].split(",") if k),
            scope=dict(m["scope"] or {}),
            target=m["target"],
            secret=m["secret"],
            longer_than=m["longer_than"],
            enabled=bool(m["enabled"]),
            created_by=m["created_by"],
            created_at=m["created_at"],
        )
        for m in rows
    ]


def test_the_rulebook_reads_its_rules_as_sqlalchemy_did(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    try:
        book = Rulebook(db)
        assert book.all() == [] and book.all(owner="val") == []
        slow = mieruka.notify.on_long_run(90.5, "mail:ops@example.org", "webhook:https://hooks.example.org/x")
        book.sync_code({"task:align": slow.scoped(tasks=["align"], tags=["imaging", "nightly"])}, utcnow())
        failed_jobs_rule(book, "val:sub", owner="val", origin="user", target="mail:v@example.org", created_by="val")
        tokyo = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=9)))
        for name, owner in (("ops", None), ("lee:sub", "lee")):
            book.add(
                name=name,
                origin="admin" if owner is None else "user",
                owner=owner,
                events=["pool.started", "source.failing", "job.long"],
                scope={"pools": ["gpu"], "sources": ["beds é"]},
                target="webhook:https://example.org/hook",
                secret="k3y",
                longer_than=2,
                created_by="admin",
                now=tokyo,
            )
        with db.write() as conn:
            conn.execute(sa.update(t.notify_rules).where(t.notify_rules.c.name == "ops").values(enabled=False))
        rules = book.all()
        assert [r.name for r in rules] == ["task:align#0", "task:align#1", "val:sub", "ops", "lee:sub"]
        assert rules == _sqlalchemys_rules(db)
        assert book.all(owner="val") == _sqlalchemys_rules(db, "val") == [rules[2]]
        assert [book.get(r.id) for r in rules] == rules
        for rule in rules:
            assert rule.created_at.tzinfo is UTC and type(rule.enabled) is bool
            assert rule.longer_than is None or type(rule.longer_than) is float
        assert rules[0].scope == {"tasks": ["align"], "tags": ["imaging", "nightly"]} and rules[0].longer_than == 90.5
        assert rules[3].created_at == tokyo and not rules[3].enabled and rules[3].scope["sources"] == ["beds é"]
        with pytest.raises(NotFoundError):
            book.get(rules[-1].id + 1)
        book.sync_code({}, utcnow())  # the code declares no rule any more: its rules go, the others stay
        assert [r.name for r in book.all()] == ["val:sub", "ops", "lee:sub"]
        book.sync_code({}, utcnow())
        assert book.all() == rules[2:]
    finally:
        db.close()


def test_the_outbox_and_the_due_messages_are_seen_as_sqlalchemy_saw_them(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    d = t.notify_deliveries.c

    def sqlalchemys_due(now: datetime) -> bool:
        due = sa.and_(d.status == "pending", d.due_at <= now, sa.or_(d.lease_until.is_(None), d.lease_until < now))
        with db.read() as conn:
            return conn.execute(sa.select(d.id).where(due).limit(1)).first() is not None

    try:
        book = Rulebook(db)
        rule = failed_jobs_rule(book, "ops")
        assert not deliveries.unrouted(db)
        outbox.record(db, [outbox.NewEvent("job.failed", "job.failed:1", "boom", "failed")], utcnow())
        assert deliveries.unrouted(db)
        assert deliveries.route(db, book.all(), lambda rule, event: True, utcnow(), 60) == 1
        assert not deliveries.unrouted(db)
        base = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
        states: list[dict[str, Any]] = [
            {"status": "pending", "due_at": base, "lease_until": None},
            {"status": "pending", "due_at": base, "lease_until": base + timedelta(seconds=30)},
            {"status": "failed", "due_at": base - timedelta(days=1), "lease_until": None},
            {"status": "sent", "due_at": base - timedelta(days=1), "lease_until": None},
        ]
        moments = [base + timedelta(microseconds=n) for n in (-1, 0, 1)] + [
            base + timedelta(seconds=30, microseconds=n) for n in (0, 1)
        ]
        moments.append(moments[1].astimezone(timezone(timedelta(hours=9))))
        seen: set[bool] = set()
        for state in states:
            with db.write() as conn:
                conn.execute(sa.delete(t.notify_deliveries))
                conn.execute(
                    sa.insert(t.notify_deliveries).values(
                        rule_id=rule.id, key=f"k{state['status']}", test=False, created_at=base, **state
                    )
                )
            for now in moments:
                due = sqlalchemys_due(now)
                assert deliveries._any_due(db, now) == due, (state, now)
                seen.add(due)
                if not due:
                    assert deliveries.claim(db, now, 60) == []
        assert seen == {True, False}
    finally:
        db.close()


def test_pruning_deletes_the_old_messages_and_the_events_they_held(tmp_path: Path, database_url: str) -> None:
    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    d, e, i = t.notify_deliveries.c, t.notify_events.c, t.notify_items.c
    try:
        rule = failed_jobs_rule(Rulebook(db), "ops")
        cut = datetime(2030, 1, 1, 0, 0, 0, 500, tzinfo=UTC)
        old, new = cut - timedelta(microseconds=1), cut
        messages = {  # name: status, created
            "sent old": ("sent", old),
            "failed old": ("failed", old),
            "pending old": ("pending", old),
            "sent new": ("sent", new),
        }
        events = {  # name: routed, at, the message holding it
            "held by a pruned one": (True, old, "sent old"),
            "held by a kept one": (True, old, "pending old"),
            "held by none": (True, old, None),
            "not old": (True, new, None),
            "not routed": (False, old, None),
        }
        ids: dict[str, int] = {}
        with db.write() as conn:
            for name, (status, created) in messages.items():
                ids[name] = conn.execute(
                    sa.insert(t.notify_deliveries)
                    .values(rule_id=rule.id, key=name, status=status, test=False, created_at=created, due_at=created)
                    .returning(d.id)
                ).scalar_one()
            for name, (routed, at, holder) in events.items():
                ids[name] = conn.execute(
                    sa.insert(t.notify_events)
                    .values(kind="job.failed", key=name, at=at, subject="boom", routed=routed)
                    .returning(e.id)
                ).scalar_one()
                if holder is not None:
                    conn.execute(
                        sa.insert(t.notify_items).values(rule_id=rule.id, event_id=ids[name], delivery_id=ids[holder])
                    )

        def left() -> tuple[set[int], set[int], set[int]]:
            with db.read() as conn:
                return (
                    set(conn.execute(sa.select(d.id)).scalars()),
                    set(conn.execute(sa.select(e.id)).scalars()),
                    set(conn.execute(sa.select(i.event_id)).scalars()),
                )

        everything = left()
        assert deliveries.prune(db, old) == 0 and left() == everything  # nothing is older than that
        assert deliveries.prune(db, cut) == 2
        kept = {ids["pending old"], ids["sent new"]}
        assert left() == (
            kept,
            {ids[n] for n in ("held by a kept one", "not old", "not routed")},
            {ids["held by a kept one"]},
        )
        assert deliveries.prune(db, cut) == 0
    finally:
        db.close()


def _job(db: Database, task: str, params: dict[str, Any], started: datetime) -> int:
    """A running job, written as the store writes one (plain SQL)."""
    ((job_id,),) = db.run_returning(
        "INSERT INTO jobs (task, status, params, created_at, started_at, attempts) VALUES (?, ?, ?, ?, ?, ?) "
        "RETURNING id",
        (task, "running", json_text(params), db.codec.time(started), db.codec.time(started), 1),
    )
    return int(job_id)


def test_a_users_day_runs_nothing_through_sqlalchemy(tmp_path: Path, receiver: HttpReceiver) -> None:
    """On SQLite, what a day asks of notifications (rules, the outbox, messages), display links and
    languages is plain SQL: each call below fails if one of its statements goes through SQLAlchemy."""
    from mieruka.auth.displays import Displays
    from mieruka.auth.languages import UserLanguages
    from mieruka.core.task import TaskRegistry
    from mieruka.errors import ConflictError
    from mieruka.settings import Settings

    (tmp_path / "home").mkdir()
    db = Database(f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}")
    db.migrate()

    def plain(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with through_sqlalchemy(db) as statements:
            found = call(*args, **kwargs)
        assert statements == [], (call.__qualname__, statements)
        return found

    @contextmanager
    def plain_refusal(error: type[Exception]) -> Iterator[None]:
        with through_sqlalchemy(db) as statements, pytest.raises(error):
            yield
        assert statements == []

    hook = "webhook:" + receiver.url()
    try:
        now = utcnow()
        book = Rulebook(db)
        # Rules: the admin's and a user's, the code's (added, rewritten, renaming a squatter, deleted).
        rule = plain(failed_jobs_rule, book, "ops", target=hook)
        squatter = plain(failed_jobs_rule, book, "task:long", owner="val", origin="user", target=hook)
        with plain_refusal(ValidationError):
            failed_jobs_rule(book, "ops")
        plain(book.sync_code, {"task:boom": mieruka.notify.on_failure("mail:ops@example.org")}, now)
        (boom,) = book.all(owner=None)[2:]
        longer = mieruka.notify.on_long_run(1, hook)
        declared = {"task:boom": mieruka.notify.on_failure(hook), "task:long": longer}
        plain(book.sync_code, {**declared, "task:gone": mieruka.notify.on_failure(hook)}, now)
        plain(book.sync_code, declared, now)
        rules = plain(book.all)
        assert [r.name for r in rules] == ["ops", f"task:long (renamed: rule {squatter.id})", "task:boom", "task:long"]
        assert rules[2].id == boom.id and rules[2].target == hook
        plain(book.delete, squatter.id)
        assert plain(book.get, rule.id) == rule
        # The outbox: a long job, a silent node, an event some rule asks for and one none does.
        job_id = _job(db, "boom", {"n": 1, "name": "é"}, now - timedelta(hours=1))
        db.run(
            "INSERT INTO engines (id, host, pid, heartbeat_at, info) VALUES (?, ?, ?, ?, ?)",
            ("e1", "node7", 1, db.codec.time(now - timedelta(hours=1)), json_text({"kind": "celery"})),
        )
        assert [e.job_id for e in plain(outbox.long_jobs, db, {None: 1.0}, now)] == [job_id]
        assert [e.job_id for e in plain(outbox.long_jobs, db, {"boom": 1.0, "other": 2.0}, now)] == [job_id]
        assert [e.subject for e in plain(outbox.silent_nodes, db, 60, now)] == ["node7"]
        failure = outbox.NewEvent("job.failed", "job.failed:1", "boom", "failed", job_id=job_id, task="boom")
        unheard = outbox.NewEvent("pool.stopped", "pool:1", "gpu")
        assert plain(outbox.record, db, [failure, unheard], now) == 1
        # Messages: routed, claimed, told (the round), retried, sent; a test message; the lists.
        settings = Settings().with_overrides(home=str(tmp_path / "home"))
        notifier = Notifier(db, settings, TaskRegistry(), {}, lambda user: None)
        assert plain(notifier._params, job_id) == {"n": 1, "name": "é"}
        receiver.answers = [500]  # the first message (the failure, to "ops") is tried again
        assert [o.ok for o in plain(notifier.run_once, now)] == [False, True, True]  # and the long job's
        assert [o.ok for o in plain(notifier.run_once, now + timedelta(hours=2))] == [True]
        assert plain(deliveries.add_test, db, rule.id, now) > 0
        with plain_refusal(ConflictError):
            deliveries.add_test(db, rule.id, now)
        (claimed,) = plain(deliveries.claim, db, now + timedelta(hours=2), 60)
        assert claimed.test and plain(deliveries.events_of, db, claimed.id) == []
        assert plain(deliveries.failed, db, claimed, now, "refused", 0, 1) is False
        assert plain(outbox.record, db, [replace(failure, key="job.failed:2")], now) == 1
        assert plain(deliveries.route, db, plain(book.all), lambda rule, event: True, now, 60) == 1  # to 3 rules
        listed = plain(deliveries.listing, db, None)
        assert [m["status"] for m in listed] == ["pending"] * 3 + ["failed"] + ["sent"] * 3
        assert len(plain(deliveries.listing, db, [rule.id])) == 3
        assert plain(deliveries.counts, db) == {"sent": 3, "pending": 3, "failed": 1, "retrying": 0, "events": 3}
        assert plain(deliveries.prune, db, now + timedelta(days=1)) == 4
        # A display link, made, listed, used, revoked.
        displays = Displays(db)
        link, secret = plain(displays.create, "wards", "Ward 3", "ada", now + timedelta(days=1))
        assert plain(displays.list) == [link] and plain(displays.get, link.id) == link
        assert plain(displays.check, secret) == link and plain(displays.is_active, link.id)
        assert plain(displays.revoke, link.id).revoked_at is not None
        assert plain(displays.check, secret) is None and not plain(displays.is_active, link.id)
        # A user's language.
        ((user_id,),) = db.run_returning(
            "INSERT INTO users (name, role, created_at) VALUES (?, ?, ?) RETURNING id",
            ("val", "viewer", db.codec.time(now)),
        )
        languages = UserLanguages(db)
        assert plain(languages.set, "val", "ja") == "ja"
        with plain_refusal(NotFoundError):
            languages.set("nobody", "ja")
        assert plain(UserLanguages(db).of, user_id) == "ja" and plain(languages.all) == {"val": "ja"}
    finally:
        db.close()


# What test_a_users_day_runs_nothing_through_sqlalchemy asks, in short, in a fresh interpreter.
_A_DAY = """
import json
import sys
from datetime import timedelta

from mieruka.auth.displays import Displays
from mieruka.auth.languages import UserLanguages
from mieruka.core.clock import utcnow
from mieruka.notify import deliveries, outbox
from mieruka.notify.rulebook import Rulebook
from mieruka.store.database import Database

db = Database(URL)
db.migrate()
now = utcnow()
book = Rulebook(db)
rule = book.add(name="ops", origin="admin", owner=None, events=["job.failed"], scope={},
                target="mail:ops@example.org", secret=None, longer_than=None, created_by="admin", now=now)
book.sync_code({}, now)
outbox.long_jobs(db, {None: 1.0}, now)
outbox.silent_nodes(db, 60, now)
assert outbox.record(db, [outbox.NewEvent("job.failed", "job.failed:1", "boom", "failed")], now) == 1
assert deliveries.route(db, book.all(), lambda rule, event: True, now, 60) == 1
(claimed,) = deliveries.claim(db, now, 60)
assert len(deliveries.events_of(db, claimed.id)) == 1
deliveries.failed(db, claimed, now, "refused", 0, 8)
(claimed,) = deliveries.claim(db, now + timedelta(seconds=1), 60)
deliveries.sent(db, claimed, now)
deliveries.add_test(db, rule.id, now)
assert len(deliveries.listing(db, [rule.id])) == 2 and deliveries.counts(db)["sent"] == 1
deliveries.prune(db, now)
book.delete(rule.id)
displays = Displays(db)
link, secret = displays.create("wards", "Ward 3", "ada")
assert displays.list() == [link] and displays.check(secret) == link and displays.is_active(link.id)
displays.revoke(link.id)
db.run("INSERT INTO users (name, role, created_at) VALUES (?, ?, ?)", ("val", "viewer", db.codec.time(now)))
assert UserLanguages(db).set("val", "ja") == "ja" and UserLanguages(db).all() == {"val": "ja"}
"""


def test_a_users_day_on_sqlite_never_imports_sqlalchemy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'mieruka.db'}"
    assert loaded_after(f"URL = {url!r}\n{_A_DAY}", tmp_path) & {"sqlalchemy", "alembic"} == set()


TOKYO = timezone(timedelta(hours=9))


def _opened(tmp_path: Path, database_url: str) -> Database:
    (tmp_path / "home").mkdir(exist_ok=True)
    db = Database(database_url)
    db.migrate()
    return db


def _message(db: Database, rule_id: int, key: str, **values: Any) -> int:
    """A message written through SQLAlchemy (its defaults: pending, due now, never tried)."""
    now = utcnow()
    row = {"status": "pending", "test": False, "created_at": now, "due_at": now, **values}
    with db.write() as conn:
        return int(
            conn.execute(
                sa.insert(t.notify_deliveries)
                .values(rule_id=rule_id, key=key, **row)
                .returning(t.notify_deliveries.c.id)
            ).scalar_one()
        )


def _sqlalchemys_message(db: Database, delivery_id: int) -> dict[str, Any]:
    with db.read() as conn:
        row = conn.execute(sa.select(t.notify_deliveries).where(t.notify_deliveries.c.id == delivery_id)).one()
    return dict(row._mapping)


def test_the_listing_and_the_counts_are_what_sqlalchemy_read(tmp_path: Path, database_url: str) -> None:
    d, r = t.notify_deliveries.c, t.notify_rules.c

    def sqlalchemys_listing(rule_ids: list[int] | None, limit: int = 100) -> list[dict[str, Any]]:
        stmt = (
            sa.select(
                d.id,
                d.rule_id,
                r.name.label("rule"),
                d.key,
                d.status,
                d.test,
                d.created_at,
                d.due_at,
                d.sent_at,
                d.attempts,
                d.events,
                d.last_error,
            )  # fmt: skip
            .join(t.notify_rules, r.id == d.rule_id)
            .order_by(d.id.desc())
            .limit(limit)
        )
        if rule_ids is not None:
            stmt = stmt.where(d.rule_id.in_(rule_ids))
        with db.read() as conn:
            return [dict(row._mapping) for row in conn.execute(stmt)]

    db = _opened(tmp_path, database_url)
    try:
        book = Rulebook(db)
        ops, val = failed_jobs_rule(book, "ops"), failed_jobs_rule(book, "val:é", owner="val", origin="user")
        assert deliveries.listing(db, None) == [] and deliveries.counts(db) == {
            "sent": 0, "pending": 0, "failed": 0, "retrying": 0, "events": 0,
        }  # fmt: skip
        at = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=TOKYO)
        _message(db, ops.id, "sent", status="sent", created_at=at, due_at=at, sent_at=at, attempts=1, events=3)
        _message(db, val.id, "retrying", attempts=2, last_error="refused: é", events=1, created_at=at)
        _message(db, ops.id, "failed", status="failed", attempts=8, last_error="gone", created_at=at)
        _message(db, val.id, "test", test=True, created_at=at + timedelta(microseconds=1))
        _message(db, ops.id, "new", due_at=at + timedelta(days=1))
        outbox.record(db, [outbox.NewEvent("job.failed", f"job.failed:{n}", "boom") for n in range(4)], utcnow())
        for rule_ids, limit in ((None, 100), ([val.id], 100), ([ops.id, val.id], 2), ([], 100), ([val.id + 9], 9)):
            listed = deliveries.listing(db, rule_ids, limit)
            assert listed == sqlalchemys_listing(rule_ids, limit), (rule_ids, limit)
            assert [list(m) for m in listed] == [list(m) for m in sqlalchemys_listing(rule_ids, limit)]
        listed = deliveries.listing(db, None)
        assert [m["key"] for m in listed] == ["new", "test", "failed", "retrying", "sent"]
        assert [m["rule"] for m in listed] == ["ops", "val:é", "ops", "val:é", "ops"]
        assert [type(m["test"]) for m in listed] == [bool] * 5 and listed[1]["test"]
        assert [m["sent_at"] for m in listed] == [None] * 4 + [at]
        assert listed[4]["sent_at"].tzinfo is UTC and listed[4]["created_at"].tzinfo is UTC
        assert listed[3]["last_error"] == "refused: é" and listed[0]["last_error"] is None
        assert listed[0]["due_at"] == at + timedelta(days=1) and listed[1]["created_at"] == at + timedelta(
            microseconds=1
        )
        assert deliveries.counts(db) == {"sent": 1, "pending": 3, "failed": 1, "retrying": 1, "events": 4}
    finally:
        db.close()


def test_a_due_message_is_claimed_once_whoever_asks(tmp_path: Path, database_url: str) -> None:
    db = _opened(tmp_path, database_url)
    d = t.notify_deliveries.c
    try:
        rule = failed_jobs_rule(Rulebook(db), "ops")
        base = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
        due = [_message(db, rule.id, f"due{n}", due_at=base - timedelta(seconds=n % 7)) for n in range(40)]
        leased = _message(db, rule.id, "leased", due_at=base, lease_until=base + timedelta(seconds=10))
        later = _message(db, rule.id, "later", due_at=base + timedelta(microseconds=1))
        _message(db, rule.id, "sent", status="sent", due_at=base)
        _message(db, rule.id, "failed", status="failed", due_at=base)
        with db.read() as conn:  # the order SQLAlchemy claimed them in: the longest due first
            first = conn.execute(
                sa.select(d.id).where(d.id.in_(due)).order_by(d.due_at, d.id).limit(5)
            ).scalars().all()  # fmt: skip
        claimed = deliveries.claim(db, base.astimezone(TOKYO), 60, limit=5)
        assert [c.id for c in claimed] == first and claimed[0].key == "due6" and not claimed[0].test
        assert _sqlalchemys_message(db, first[0])["lease_until"] == base + timedelta(seconds=60)
        # Two servers at once: each due message goes to one of them.
        taken: list[list[int]] = [[], []]
        start = threading.Barrier(2)

        def server(mine: list[int]) -> None:
            start.wait()
            while found := deliveries.claim(db, base, 60, limit=3):
                mine += [c.id for c in found]

        threads = [threading.Thread(target=server, args=(mine,)) for mine in taken]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(first + taken[0] + taken[1]) == sorted(due)
        # A lease ends at its time: then the message is due again.
        lease_end = base + timedelta(seconds=60)
        assert {c.id for c in deliveries.claim(db, lease_end, 60, limit=100)} == {leased, later}
        assert deliveries.claim(db, lease_end, 60) == []
        again = deliveries.claim(db, lease_end + timedelta(microseconds=1), 60, limit=100)
        assert sorted(c.id for c in again) == sorted(due)
    finally:
        db.close()


def test_sent_and_failed_attempts_are_written_as_sqlalchemy_wrote_them(tmp_path: Path, database_url: str) -> None:
    db = _opened(tmp_path, database_url)
    try:
        rule = failed_jobs_rule(Rulebook(db), "ops")
        base = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=TOKYO)
        message = _message(db, rule.id, "k", due_at=base)
        (claimed,) = deliveries.claim(db, base, 60)
        assert deliveries.failed(db, claimed, base, "é" * 1500, 90.5, 3)
        row = _sqlalchemys_message(db, message)
        assert (row["status"], row["attempts"], row["lease_until"], row["last_error"]) == (
            "pending",
            1,
            None,
            "é" * 1000,
        )
        assert row["due_at"] == base + timedelta(seconds=90.5) and row["sent_at"] is None
        assert deliveries.claim(db, base + timedelta(seconds=90), 60) == []
        (claimed,) = deliveries.claim(db, base + timedelta(seconds=91), 60)
        assert claimed.attempts == 1
        deliveries.sent(db, claimed, base + timedelta(hours=1))
        row = _sqlalchemys_message(db, message)
        assert (row["status"], row["attempts"], row["lease_until"], row["last_error"]) == ("sent", 2, None, None)
        assert row["sent_at"] == base + timedelta(hours=1) and row["sent_at"].tzinfo is UTC
        other = _message(db, rule.id, "k2", due_at=base, attempts=2)
        (claimed,) = deliveries.claim(db, base, 60)
        assert not deliveries.failed(db, claimed, base, "the last straw", 60, 3)  # attempt 3 of 3: failed
        row = _sqlalchemys_message(db, other)
        assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "the last straw")
    finally:
        db.close()


def test_events_are_routed_into_digests_as_before(tmp_path: Path, database_url: str) -> None:
    """The first event of a quiet rule is due at once; the next join its message until it is
    claimed, then wait for the end of its window; test messages are neither open nor a window."""
    db = _opened(tmp_path, database_url)
    try:
        book = Rulebook(db)
        ops, quiet = failed_jobs_rule(book, "ops"), failed_jobs_rule(book, "quiet")
        off = failed_jobs_rule(book, "off")
        with db.write() as conn:
            conn.execute(sa.update(t.notify_rules).where(t.notify_rules.c.id == off.id).values(enabled=False))
        t0 = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=TOKYO)
        n = iter(range(100))

        def event(at: datetime, to: StoredRule) -> int:
            """An event about `to` only, recorded and routed at `at`: how many were routed."""
            told = outbox.NewEvent("job.failed", f"job.failed:{next(n)}", "boom", "no\nway", job_id=7, task="boom")
            assert outbox.record(db, [told], at) == 1
            return deliveries.route(db, book.all(), lambda rule, event: rule.id in (to.id, off.id), at, 60)

        assert event(t0, ops) == 1
        (first,) = deliveries.listing(db, None)
        assert (first["due_at"], first["created_at"], first["events"], first["attempts"]) == (t0, t0, 1, 0)
        assert event(t0 + timedelta(seconds=5), ops) == 1
        assert deliveries.listing(db, None)[0]["events"] == 2  # joined it
        (claimed,) = deliveries.claim(db, t0 + timedelta(seconds=5), 60)
        test = deliveries.add_test(db, ops.id, t0 + timedelta(seconds=6))
        assert event(t0 + timedelta(seconds=10), ops) == 1
        window = deliveries.listing(db, None)[0]
        assert window["id"] > test and window["due_at"] == t0 + timedelta(seconds=60) and window["events"] == 1
        deliveries.add_test(db, quiet.id, t0)
        assert event(t0 + timedelta(seconds=30), quiet) == 1
        (digest,) = deliveries.listing(db, [quiet.id])[:1]
        assert digest["due_at"] == t0 + timedelta(seconds=30) and not digest["test"]
        assert deliveries.listing(db, [off.id]) == [] and not deliveries.unrouted(db)
        events = deliveries.events_of(db, claimed.id)
        assert [(e.kind, e.subject, e.job_id, e.task, e.message) for e in events] == [
            ("job.failed", "boom", 7, "boom", "no\nway")
        ] * 2
        assert [e.at for e in events] == [t0, t0 + timedelta(seconds=5)] and events[0].at.tzinfo is UTC
        assert events[0].id < events[1].id and deliveries.events_of(db, test) == []
    finally:
        db.close()


def test_the_outbox_writes_and_observes_as_sqlalchemy_did(tmp_path: Path, database_url: str) -> None:
    db = _opened(tmp_path, database_url)
    e = t.notify_events.c
    try:
        book = Rulebook(db)
        failed_jobs_rule(book, "ops")
        pools = book.add(
            name="pools", origin="admin", owner=None, events=["pool.started"], scope={}, target="mail:a@example.org",
            secret=None, longer_than=None, created_by="admin", now=utcnow(),
        )  # fmt: skip
        retries = failed_jobs_rule(book, "retries")
        with db.write() as conn:  # one rule off; one asks for a kind whose name LIKE would match with its _
            conn.execute(sa.update(t.notify_rules).where(t.notify_rules.c.id == pools.id).values(enabled=False))
            conn.execute(
                sa.update(t.notify_rules).where(t.notify_rules.c.id == retries.id).values(events=",job.lastXretry,")
            )
        at = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=TOKYO)
        long = outbox.NewEvent("job.failed", "k" * 400, "s" * 300, "m" * 3000, job_id=5, task="boom")
        unasked = [outbox.NewEvent("pool.started", "pool:1", "gpu"), outbox.NewEvent("job.last_retry", "r:1", "boom")]
        assert outbox.record(db, [long, *unasked], at) == 1
        assert outbox.record(db, [long, outbox.NewEvent("job.failed", "k2", "boom")], at) == 1  # k... is written
        with db.read() as conn:
            rows = [dict(row._mapping) for row in conn.execute(sa.select(t.notify_events).order_by(e.id))]
        assert [row["key"] for row in rows] == ["k" * 300, "k2"]
        assert rows[0] == {
            "id": rows[0]["id"], "kind": "job.failed", "key": "k" * 300, "at": at, "job_id": 5, "task": "boom",
            "subject": "s" * 200, "message": "m" * 2000, "routed": False,
        }  # fmt: skip
        assert rows[1]["message"] is None and rows[1]["job_id"] is None and rows[1]["at"].tzinfo is UTC
    finally:
        db.close()


def test_long_jobs_silent_nodes_and_a_jobs_parameters_are_read_as_before(tmp_path: Path, database_url: str) -> None:
    from mieruka.core.task import TaskRegistry
    from mieruka.settings import Settings

    db = _opened(tmp_path, database_url)
    try:
        now = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
        hour_ago = (now - timedelta(hours=1)).astimezone(TOKYO)
        jobs = {name: _job(db, name, {"name": "é", "n": [1, 2]}, hour_ago) for name in ("a", "b")}
        jobs["recent"] = _job(db, "recent", {}, now - timedelta(seconds=30))
        queued = _job(db, "a", {}, hour_ago)  # long since, but not running (any more)
        db.run("UPDATE jobs SET status = ? WHERE id = ?", ("queued", queued))

        def long_ones(limits: dict[str | None, float]) -> list[outbox.NewEvent]:
            return sorted(outbox.long_jobs(db, limits, now), key=lambda event: event.key)

        assert long_ones({}) == [] and long_ones({"a": 3601}) == [] and long_ones({"c": 1}) == []

        def told(name: str, since: datetime, limit: str) -> outbox.NewEvent:
            said = f"running since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC (over {limit}s)"
            return outbox.NewEvent("job.long", f"job.long:{jobs[name]}:1", name, said, jobs[name], name)

        just_long = now - timedelta(seconds=30)  # a limit of 30s: long just now
        assert long_ones({"a": 3600, "recent": 30}) == [told("a", hour_ago, "3600"), told("recent", just_long, "30")]
        assert [event.task for event in long_ones({"a": 600, "b": 7200})] == ["a"]
        assert [event.task for event in long_ones({None: 600, "b": 7200})] == ["a", "b"]  # None: every task
        assert [event.task for event in long_ones({None: 60.5})] == ["a", "b"]
        beat = (now - timedelta(minutes=10)).astimezone(TOKYO)
        with db.write() as conn:  # as the stores wrote them: info as JSON, or none (JSON's null)
            conn.execute(sa.insert(t.engines).values(id="e1", host="h1", pid=1, heartbeat_at=beat, info=None))
            conn.execute(
                sa.insert(t.engines).values(
                    id="e2", host="h2", pid=2, heartbeat_at=beat, info={"name": "gpu é", "kind": "celery"}
                )
            )
            conn.execute(sa.insert(t.engines).values(id="e3", host="h3", pid=3, heartbeat_at=now, info={}))
        stamp = (now - timedelta(minutes=10)).isoformat()
        assert stamp.endswith("+00:00")
        heard = f"last heard from at {now - timedelta(minutes=10):%Y-%m-%d %H:%M:%S} UTC"
        assert sorted(outbox.silent_nodes(db, 60, now), key=lambda event: event.key) == [
            outbox.NewEvent("node.down", f"node.down:e1:{stamp}", "h1", f"{heard} (node on h1)"),
            outbox.NewEvent("node.down", f"node.down:e2:{stamp}", "gpu é", f"{heard} (celery on h2)"),
        ]
        assert outbox.silent_nodes(db, 600, now) == []
        notifier = Notifier(db, Settings(), TaskRegistry(), {}, lambda user: None)
        assert notifier._params(jobs["a"]) == {"name": "é", "n": [1, 2]} and notifier._params(jobs["recent"]) == {}
        assert notifier._params(jobs["a"] + 100) is None
    finally:
        db.close()


def test_rule_changes_are_written_as_sqlalchemy_wrote_them(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _opened(tmp_path, database_url)
    try:
        book = Rulebook(db)
        failed_jobs_rule(book, "ops")
        with pytest.raises(ValidationError, match="a rule named 'ops' exists"):
            failed_jobs_rule(book, "ops")  # the database's unique name, on either driver
        slow = mieruka.notify.on_long_run(90, "mail:ops@example.org")
        book.sync_code(
            {"task:a": slow.scoped(tasks=["a"]), "task:b": mieruka.notify.on_failure("mail:b@x.org")}, utcnow()
        )
        before = {r.name: r for r in book.all()}
        faster = mieruka.notify.on_long_run(30.5, "mail:ops@example.org").scoped(tasks=["a", "é"], tags=["t"])
        book.sync_code({"task:a": faster, "task:b": mieruka.notify.on_failure("mail:b@x.org")}, utcnow())
        after = {r.name: r for r in book.all()}
        assert after["task:b"] == before["task:b"] and after["task:a"].id == before["task:a"].id
        assert after["task:a"].longer_than == 30.5 and after["task:a"].scope == {"tasks": ["a", "é"], "tags": ["t"]}
        assert after["task:a"] == replace(before["task:a"], longer_than=30.5, scope=after["task:a"].scope)
        said: list[str] = []
        sql = db.sql

        def saying(text: str) -> str:
            said.append(text)
            return sql(text)

        monkeypatch.setattr(db, "sql", saying)
        book.sync_code({"task:a": faster, "task:b": mieruka.notify.on_failure("mail:b@x.org")}, utcnow())
        assert [text.split()[0] for text in said] == ["SELECT", "SELECT"]  # as declared: nothing written
        monkeypatch.undo()
        with db.write() as conn:  # a code rule turned off by hand is turned on at the next start
            conn.execute(sa.update(t.notify_rules).values(enabled=False))
        book.sync_code({"task:a": faster, "task:b": mieruka.notify.on_failure("mail:b@x.org")}, utcnow())
        assert [r.enabled for r in book.all()] == [False, True, True]
        book.delete(after["task:a"].id)
        book.delete(after["task:a"].id)  # gone already: nothing happens
        assert [r.name for r in book.all()] == ["ops", "task:b"]
    finally:
        db.close()
