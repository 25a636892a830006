"""Notifications in the web, in process: who sees and changes which rules (admins all, a user their
own subscriptions), subscriptions limited to the tasks a user may see, bad input answered 422, the
test-message button, secrets never shown, /metrics counting messages."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

import mieruka
from mieruka import App
from mieruka.core.clock import utcnow
from mieruka.notify import outbox
from mieruka.store import tables as t
from tests.conftest import BACKENDS, fresh_postgres_database, wait_for
from tests.notify_receivers import http_receiver

SIGNING_KEY = "a-signing-key-never-shown"


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    postgres = fresh_postgres_database("mieruka_notify_web") if request.param == "postgres" else nullcontext("")
    with http_receiver() as receiver, postgres as database_url:
        app = App("notify web")
        app.configure(
            database_url=database_url,
            home=str(tmp_path_factory.mktemp("notify") / "home"),
            executor="threads",
            poll_interval=0.2,
            notify_poll_interval=0.1,
            notify_digest_window=0.1,
            notify_user_webhook_hosts="127.0.0.1, localhost",
        )

        @app.task(notify=mieruka.notify.on_failure("webhook:" + receiver.url("/code")))
        def open_task(fail: bool = False) -> None:
            if fail:
                raise RuntimeError("open task failed")

        @app.task(allow=["admin"])
        def vault(fail: bool = False) -> None:
            if fail:
                raise RuntimeError("the vault failed")

        with TestClient(app.asgi()) as client:
            accounts = app.auth.accounts
            tokens = {}
            for name, role in (("val", "viewer"), ("otto", "operator"), ("ada", "admin")):
                accounts.add_user(name, role, "password-" + name)
                tokens[name] = accounts.create_token(name, "notify")[1]
            yield {"app": app, "client": client, "tokens": tokens, "receiver": receiver}


def as_(site: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {site['tokens'][who]}"}


def make(site: dict[str, Any], who: str, **body: Any) -> Any:
    return site["client"].post("/api/notifications/rules", json=body, headers=as_(site, who))


def test_each_sees_the_rules_they_may(site: dict[str, Any]) -> None:
    client, receiver = site["client"], site["receiver"]
    admin_rule = make(
        site,
        "ada",
        name="ops",
        events=["pool.started", "job.failed"],
        target="webhook:" + receiver.url("/ops/secret-path"),
        secret=SIGNING_KEY,
    )
    assert admin_rule.status_code == 201, admin_rule.text
    mine = make(site, "val", events=["job.failed"], tasks=["open_task"], target="webhook:" + receiver.url("/val"))
    assert mine.status_code == 201, mine.text
    assert mine.json()["owner"] == "val" and mine.json()["origin"] == "user"
    theirs = make(site, "otto", events=["job.succeeded"], target="mail:otto@example.org")
    assert theirs.status_code == 201, theirs.text

    everything = client.get("/api/notifications", headers=as_(site, "ada")).json()
    names = {r["name"] for r in everything["rules"]}
    assert {"task:open_task", "ops", mine.json()["name"], theirs.json()["name"]} <= names
    assert "counts" in everything
    shown = client.get("/api/notifications", headers=as_(site, "val")).json()
    assert [r["id"] for r in shown["rules"]] == [mine.json()["id"]] and "counts" not in shown
    for who in ("ada", "val"):
        text = client.get("/api/notifications", headers=as_(site, who)).text
        text += client.get("/notifications", headers=as_(site, who)).text
        assert SIGNING_KEY not in text and "secret-path" not in text
    ops = next(r for r in everything["rules"] if r["name"] == "ops")
    assert ops["signed"] and ops["target"] == f"webhook:http://127.0.0.1:{receiver.port}/\u2026"

    # Another's rule is no rule at all to a user; an admin may act on any, but not delete code's.
    other = theirs.json()["id"]
    for method, url in (
        ("DELETE", f"/api/notifications/rules/{other}"),
        ("POST", f"/api/notifications/rules/{other}/test"),
    ):
        assert client.request(method, url, headers=as_(site, "val")).status_code == 404
    for url in (f"/notifications/{other}/test", f"/notifications/{other}/delete"):
        assert client.post(url, headers=as_(site, "val")).status_code == 404
    code = next(r for r in everything["rules"] if r["origin"] == "code")
    refused = client.delete(f"/api/notifications/rules/{code['id']}", headers=as_(site, "ada"))
    assert refused.status_code == 409 and "declared in the app's code" in refused.text
    assert client.delete(f"/api/notifications/rules/{other}", headers=as_(site, "ada")).status_code == 200
    gone = client.delete(f"/api/notifications/rules/{mine.json()['id']}", headers=as_(site, "val"))
    assert gone.status_code == 200
    assert client.get("/api/notifications", headers=as_(site, "val")).json()["rules"] == []
    audit = client.get("/api/audit", params={"limit": 50}, headers=as_(site, "ada")).json()["entries"]
    actions = {(e["actor"], e["action"]) for e in audit}
    assert {("ada", "notify.rule_create"), ("val", "notify.rule_create"), ("val", "notify.rule_delete")} <= actions


@pytest.mark.parametrize(
    ("who", "body", "says"),
    [
        (
            "val",
            {"events": ["job.failed"], "tasks": ["vault"], "target": "mail:v@example.org"},
            "no task named 'vault'",
        ),
        ("val", {"events": ["pool.started"], "target": "mail:v@example.org"}, "for admins"),
        ("val", {"events": ["job.failed"], "pools": ["gpu"], "target": "mail:v@example.org"}, "for admins"),
        ("val", {"events": ["job.failed"], "target": "webhook:http://169.254.169.254/x"}, "ask an admin"),
        ("otto", {"events": ["job.failed"], "target": "slack:https://10.0.0.8/hook"}, "ask an admin"),
        ("ada", {"events": ["job.exploded"], "target": "mail:a@example.org"}, "unknown ['job.exploded']"),
        ("ada", {"events": ["job.failed"], "target": "sms:+33123"}, "must be one of"),
        ("ada", {"events": ["job.failed"], "target": "mail:nobody"}, "not an e-mail address"),
        ("ada", {"events": ["job.failed"], "target": "slack:ftp://x"}, "http(s) URL"),
        ("ada", {"events": ["job.long"], "target": "mail:a@example.org"}, "longer_than"),
        ("ada", {"events": ["job.long"], "target": "mail:a@example.org", "longer_than": "soon"}, "soon"),
        ("ada", {"events": [], "target": "mail:a@example.org"}, "events"),
        ("ada", {"events": ["job.failed"], "tasks": ["nope"], "target": "mail:a@example.org"}, "no task named 'nope'"),
    ],
)
def test_bad_rules_are_refused_in_words(site: dict[str, Any], who: str, body: dict[str, Any], says: str) -> None:
    answer = make(site, who, **body)
    assert answer.status_code == 422, answer.text
    assert says in answer.text


def test_a_subscription_hears_only_of_the_tasks_its_user_may_see(site: dict[str, Any]) -> None:
    app, receiver = site["app"], site["receiver"]
    made = make(site, "val", events=["job.failed"], target="webhook:" + receiver.url("/val-all"))
    assert made.status_code == 201
    hidden = app.wait(app.submit("vault", fail=True), 30)
    shown = app.wait(app.submit("open_task", fail=True), 30)
    told = wait_for(lambda: receiver.got("/val-all"), what="val's message")
    time.sleep(0.5)
    jobs = [e["job_id"] for r in receiver.got("/val-all") for e in r.json()["events"]]
    assert jobs == [shown.id] and hidden.id not in jobs
    assert "the vault failed" not in told[0].body.decode()
    site["client"].delete(f"/api/notifications/rules/{made.json()['id']}", headers=as_(site, "val"))


def test_a_user_their_provider_cut_off_hears_nothing_until_it_vouches_again(site: dict[str, Any]) -> None:
    """erin signs in with single sign-on and subscribes; her provider's groups no longer admit her
    (accounts.cut_off, as web/sso.py does): her subscription falls silent, and speaks again once the
    provider vouches for her anew."""
    app, client, receiver = site["app"], site["client"], site["receiver"]
    accounts = app.auth.accounts
    accounts.sign_in_external("erin", "oidc", "viewer", ["lab"])
    erin = {"Authorization": f"Bearer {accounts.create_token('erin', 'notify')[1]}"}
    rule = {"events": ["job.failed"], "tasks": ["open_task"]}
    mine = client.post(
        "/api/notifications/rules", json={**rule, "target": "webhook:" + receiver.url("/erin")}, headers=erin
    )
    assert mine.status_code == 201, mine.text
    control = make(site, "ada", **rule, target="webhook:" + receiver.url("/erin-control"))
    assert control.status_code == 201, control.text

    def fail_and_tell_control() -> int:
        job = app.wait(app.submit("open_task", fail=True), 30).id
        wait_for(
            lambda: job in [e["job_id"] for r in receiver.got("/erin-control") for e in r.json()["events"]],
            what="the admin's rule told",
        )
        return int(job)

    def heard() -> list[int]:
        return [e["job_id"] for r in receiver.got("/erin") for e in r.json()["events"]]

    first = fail_and_tell_control()
    wait_for(lambda: heard() == [first], what="erin told")
    accounts.cut_off("erin")
    fail_and_tell_control()  # both rules are routed together: erin's has had its chance
    messages = client.get("/api/notifications", headers=as_(site, "ada")).json()["deliveries"]
    assert sum(d["events"] for d in messages if d["rule_id"] == mine.json()["id"]) == 1
    assert heard() == [first]
    accounts.sign_in_external("erin", "oidc", "viewer", ["lab"])
    third = fail_and_tell_control()
    wait_for(lambda: heard() == [first, third], what="erin told again")
    for made in (mine, control):
        client.delete(f"/api/notifications/rules/{made.json()['id']}", headers=as_(site, "ada"))


def test_the_test_message_button(site: dict[str, Any]) -> None:
    client, receiver = site["client"], site["receiver"]
    rule = make(site, "otto", events=["job.failed"], target="webhook:" + receiver.url("/otto"), secret="k2").json()
    page = client.get("/notifications", headers=as_(site, "otto"))
    assert page.status_code == 200 and f'data-test-rule="{rule["id"]}"' in page.text
    pressed = client.post(f"/notifications/{rule['id']}/test", headers=as_(site, "otto"))
    assert pressed.status_code == 200 and "Test message" in pressed.text
    (request,) = wait_for(lambda: receiver.got("/otto"), what="the test message")
    assert request.signed_with("k2") and request.json()["title"] == "[mieruka] Test message"
    sent = wait_for(
        lambda: [
            d
            for d in client.get("/api/notifications", headers=as_(site, "otto")).json()["deliveries"]
            if d["test"] and d["status"] == "sent"
        ],
        what="the test shown as sent",
    )
    assert sent[0]["rule_id"] == rule["id"]
    api = client.post(f"/api/notifications/rules/{rule['id']}/test", headers=as_(site, "otto"))
    assert api.status_code == 202 and api.json()["delivery"] > sent[0]["id"]
    metrics = client.get("/metrics", headers=as_(site, "ada")).text
    assert 'mieruka_notifications{state="sent"}' in metrics and "mieruka_notification_events" in metrics


def test_the_page_and_its_form(site: dict[str, Any]) -> None:
    client = site["client"]
    admin_page = client.get("/notifications", headers=as_(site, "ada")).text
    assert 'href="/notifications"' in admin_page and "Make a rule" in admin_page and "pool" in admin_page
    account = client.get("/account", headers=as_(site, "val")).text
    assert 'href="/notifications"' in account  # the way to it for those whose menu has no link
    viewer_page = client.get("/notifications", headers=as_(site, "val")).text
    assert "Subscribe" in viewer_page and 'value="pool.started"' not in viewer_page
    assert 'value="vault"' not in viewer_page and 'value="open_task"' in viewer_page
    made = client.post(
        "/notifications",
        data={"events": ["job.failed", "job.long"], "target": "mail:val@example.org", "longer_than": "5m"},
        headers=as_(site, "val"),
    )
    assert made.status_code == 201 and "made" in made.text and "val@example.org" in made.text
    assert "job.long (over 5 min 0 s)" in made.text  # the limit as a duration, not 300.0 seconds
    refused = client.post("/notifications", data={"target": "mail:val@example.org"}, headers=as_(site, "val"))
    assert refused.status_code == 422 and "at least one event" in refused.text
    refused = client.post("/notifications", data={"events": "job.failed", "target": "xyz"}, headers=as_(site, "val"))
    assert refused.status_code == 422 and "must be one of" in refused.text


def test_the_form_scopes_a_rule_by_task_tag_pool_and_source(tmp_path: Path) -> None:
    """The page's form names the tags of the tasks its reader sees and, for admins, the data
    sources (and the compute pools, which need Celery: posted here without one declared)."""
    app = App("scoped")
    app.configure(home=str(tmp_path / "home"), executor="threads")

    @app.task(tags=["imaging"])
    def segment() -> None: ...

    @app.task(tags=["imaging", "nightly"], allow=["admin"])
    def archive() -> None: ...

    @app.source(every="1h")
    def beds() -> list[dict[str, int]]:
        return [{"beds": 1}]

    with TestClient(app.asgi()) as client:
        accounts = app.auth.accounts
        for name, role in (("ada", "admin"), ("val", "viewer")):
            accounts.add_user(name, role, "password-" + name)
        ada = {"Authorization": f"Bearer {accounts.create_token('ada', 'form')[1]}"}
        val = {"Authorization": f"Bearer {accounts.create_token('val', 'form')[1]}"}
        page = client.get("/notifications", headers=ada).text
        for field, value in (("tags", "nightly"), ("sources", "beds")):
            assert f'name="{field}"' in page and f'value="{value}"' in page, field
        viewer_page = client.get("/notifications", headers=val).text  # a subscription: its tasks' tags only
        assert 'value="imaging"' in viewer_page and 'value="nightly"' not in viewer_page
        assert 'name="pools"' not in viewer_page and 'name="sources"' not in viewer_page
        form = {"target": "mail:ops@example.org", "tasks": ["segment"], "tags": ["imaging"], "pools": ["gpu"]}
        made = client.post(
            "/notifications", data={**form, "sources": ["beds"], "events": ["job.failed", "pool.started"]}, headers=ada
        )
        assert made.status_code == 201, made.text
        (rule,) = client.get("/api/notifications", headers=ada).json()["rules"]
        assert rule["scope"] == {"tasks": ["segment"], "tags": ["imaging"], "pools": ["gpu"], "sources": ["beds"]}
        assert "pools: gpu" in made.text and "sources: beds" in made.text
        refused = client.post("/notifications", data={**form, "events": ["job.failed"]}, headers=val)
        assert refused.status_code == 422 and "for admins" in refused.text
        # What a message about a source no dashboard shows links: its row among the sources.
        assert 'id="source-beds"' in client.get("/dashboards", headers=ada).text


def test_a_receiver_down_is_shown_as_a_failed_attempt(site: dict[str, Any], tmp_path: Path) -> None:
    with http_receiver() as gone:
        url = gone.url("/down")
    rule = make(site, "ada", events=["job.failed"], target="webhook:" + url).json()
    site["client"].post(f"/api/notifications/rules/{rule['id']}/test", headers=as_(site, "ada"))
    row = wait_for(
        lambda: [
            d
            for d in site["client"].get("/api/notifications", headers=as_(site, "ada")).json()["deliveries"]
            if d["rule_id"] == rule["id"] and d["attempts"] > 0
        ],
        what="the failed attempt",
    )[0]
    assert row["status"] == "pending" and "ConnectError" in row["last_error"]
    page = site["client"].get("/notifications", headers=as_(site, "ada")).text
    assert "ConnectError" in page


def test_a_rule_id_past_the_databases_integers_names_no_rule(site: dict[str, Any]) -> None:
    """A PostgreSQL integer column ends at 2**31 - 1: a larger id is not found, not a 500 (found by
    the schema fuzzer)."""
    for method, path in (("POST", "/test"), ("DELETE", "")):
        for rule_id in (2**31, 2789362775, 10**17):
            answer = site["client"].request(
                method, f"/api/notifications/rules/{rule_id}{path}", headers=as_(site, "ada")
            )
            assert answer.status_code == 404, (method, rule_id, answer.text)


def test_the_admins_counts_say_each_number_in_its_plural_form(tmp_path: Path) -> None:
    """ "1 events recorded" read wrong: each count of the admin's line takes the form its number
    wants, in English and in Russian's three (1 событие, 2 события, 5 событий, 21 событие)."""
    app = App("counts")
    app.configure(home=str(tmp_path / "home"), executor="threads", notify_poll_interval=0.1)
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("ada", "admin", "password-ada")
        ada = {"Authorization": f"Bearer {app.auth.accounts.create_token('ada', 'counts')[1]}"}
        db, now = app.runtime.database, utcnow()
        rule = app.runtime.notifier.rulebook.add(
            name="ops",
            origin="admin",
            owner=None,
            events=["pool.stopped"],  # none of the events below: they make no message
            scope={},
            target="mail:ops@example.org",
            secret=None,
            longer_than=None,
            created_by="ada",
            now=now,
        )
        with db.write() as conn:  # one message of each state; the waiting one is due tomorrow
            for n, (status, attempts) in enumerate((("sent", 1), ("failed", 5), ("pending", 1))):
                conn.execute(
                    sa.insert(t.notify_deliveries).values(
                        rule_id=rule.id,
                        key=f"k{n}",
                        status=status,
                        test=False,
                        created_at=now,
                        due_at=now + timedelta(days=1),
                        attempts=attempts,
                        events=1,
                    )
                )

        def counts(events: int, language: str) -> str:
            with db.write_cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM notify_events")
                (have,) = cur.fetchone()
                for n in range(have, events):
                    event = outbox.NewEvent("source.failing", f"source.failing:beds:{n}", "beds", "no answer")
                    outbox.insert(db, cur, event, now)
            page = client.get("/notifications", headers={**ada, "Accept-Language": language})
            found = re.search(r'<p id="notify-counts"><small>(.*?)</small>', page.text, re.S)
            assert found, page.text
            return " ".join(found.group(1).split())

        assert counts(1, "en") == "1 message sent · 1 waiting (1 to be tried again) · 1 failed · 1 event recorded"
        assert counts(2, "en").endswith("· 2 events recorded")
        assert counts(2, "ru").startswith("1 сообщение отправлено · 1 ожидает отправки (1 будет отправлено")
        assert counts(2, "ru").endswith("· 2 события записано")
        assert counts(5, "ru").endswith("· 5 событий записано")
        assert counts(21, "ru").endswith("· 21 событие записано")
        assert counts(21, "ja").endswith("記録済みイベント 21 件")
