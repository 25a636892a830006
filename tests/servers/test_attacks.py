"""The route x role matrix, replayed against a real server as an attacker would.

Every route of tests/guarded_app.py (taken from the app itself) is called by anonymous, a viewer, two
operators, an operator on the allow lists, an admin, a revoked and an expired token, a display (the
cookie of a display link to the open dashboard), a display whose link was revoked, and a forger naming
the admin in trusted_user_header from an address that is no trusted proxy; every job and
token id in a path is also written in the non-canonical forms (+5, %205, 5%20, 5%0A, 5%09, 05). The
matrix fails when a response

- is a 5xx;
- carries what its caller may not see: a job of the allow-listed task (its parameters, result, log,
  artifact or name), the allow-listed dashboard's data or stream, another user's name (the admin's
  doing, kept in the audit log);
- lets through a request the rules deny (role, owner, allow list, canonical id), or lets a denied
  state-changing request change anything (jobs, users, tokens, display links, notification rules,
  artifacts: read from the server's database after each such request; sources: from the API).

Allowed state-changing requests are not sent: tests/web/test_access.py and the feature tests cover them.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mieruka.core.clock import utcnow
from mieruka.web.access import flat_routes
from tests.conftest import ServerProcess, shared_server
from tests.guarded_app import BOARD_SECRET, JOB_SECRET, SECRET_STREAM, SECRET_TASK
from tests.web.test_access import EXPECTED, STREAMS
from tests.web.test_access import allowed as role_allows

PASSWORD = "a long password"
HIDDEN_USER = "ulrike"  # added by the admin: only admins may learn of her
NON_CANONICAL = ("+{}", "%20{}", "{}%20", "{}%0A", "{}%09", "0{}")
# Those who may see everything go first: what they did (pages visited, presence) is then there to leak.
ROLES = {
    "olga": "operator",
    "ada": "admin",
    "anonymous": "anonymous",
    "revoked": "anonymous",
    "expired": "anonymous",
    "display": "anonymous",  # without a login: the public dashboard, and the open one by its link
    "display_revoked": "anonymous",
    "forger": "anonymous",  # names the admin in trusted_user_header, from an address that is no trusted proxy
    "val": "viewer",
    "otto": "operator",
    "oona": "operator",
}
SEES_SECRETS = {"olga", "ada"}  # on the allow lists (admins always are)
STREAM_READERS = 8
FORGED_HEADER = "X-Remote-User"
TRUSTED_PROXY = "192.0.2.250"  # the only address trusted_user_header is believed from: not the tests'
DENIED = {401, 403, 404, 422}
MUST_SHOW = {
    "/api/jobs/{job_id}",
    "/api/jobs/{job_id}/logs",
    "/api/jobs/{job_id}/artifacts",
    "/api/jobs/{job_id}/steps",
    "/jobs/{job_id}",
    "/jobs/{job_id}/panel",
}


@dataclass
class Probe:
    server: ServerProcess
    tokens: dict[str, str]
    jobs: dict[str, int]  # otto's finished add, oona's running sleep, olga's finished vault
    oona_token: int
    routes: list[tuple[str, str]]
    displays: dict[str, str]  # who -> the secret of its display link (sent as the display's cookie)
    database: Path  # the server's SQLite file, read (never written) for the state before and after

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30)

    def headers(self, who: str) -> dict[str, str]:
        if who in self.displays:
            return {"Cookie": f"mieruka_display={self.displays[who]}"}
        if who == "forger":
            return {FORGED_HEADER: "ada", "X-Forwarded-For": TRUSTED_PROXY}
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who in self.tokens else {}


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Probe]:
    from tests.guarded_app import app

    home = tmp_path_factory.mktemp("attacks") / "home"
    app._settings = None
    app.configure(home=str(home))
    app.auth.db.migrate()
    accounts = app.auth.accounts
    tokens: dict[str, str] = {}
    for name in ("val", "otto", "oona", "olga", "ada"):
        accounts.add_user(name, ROLES[name], PASSWORD)
        tokens[name] = accounts.create_token(name, f"{name}'s script")[1]
    oona_token = accounts.create_token("oona", "second")[0].id
    revoked, tokens["revoked"] = accounts.create_token("ada", "old")
    accounts.revoke_token(revoked.id)
    expires = utcnow() + timedelta(seconds=2)
    tokens["expired"] = accounts.create_token("ada", "short", expires_at=expires)[1]
    routes = sorted(
        {
            ("GET" if m == "*" else m, r.path or "")
            for r in flat_routes(app.asgi())
            for m in (r.methods or {"*"})
            if m != "HEAD"
        }
    )
    database = Path(app.settings.effective_database_url.removeprefix("sqlite:///"))
    assert database.is_file(), app.settings.effective_database_url
    app.stop()  # the server process owns the database from here
    app._settings = None
    env = {
        "MIERUKA_PRESENCE_EXPIRY": "8",  # presence written every 2 s
        "MIERUKA_TRUSTED_USER_HEADER": FORGED_HEADER,
        "MIERUKA_TRUSTED_PROXIES": TRUSTED_PROXY,
    }
    server_process = ServerProcess("tests/guarded_app.py:app", home, "--workers", "2", env=env)
    with shared_server(server_process, request) as server:
        with httpx.Client(base_url=server.url, timeout=60) as http:

            def submit(who: str, task: str, body: dict[str, Any]) -> int:
                answer = http.post(
                    f"/api/tasks/{task}/jobs", json=body, headers={"Authorization": f"Bearer {tokens[who]}"}
                )
                assert answer.status_code == 202, answer.text
                return int(answer.json()["id"])

            jobs = {
                "otto": submit("otto", "add", {"a": 1}),
                "oona": submit("oona", "sleep", {"seconds": 600}),
                "olga": submit("olga", SECRET_TASK, {}),
            }
            admin = {"Authorization": f"Bearer {tokens['ada']}"}
            for key in ("otto", "olga"):
                done = http.get(f"/api/jobs/{jobs[key]}", params={"wait": 60}, headers=admin).json()
                assert done["status"] == "succeeded", done
            added = http.post(
                "/api/users", json={"name": HIDDEN_USER, "role": "viewer", "password": PASSWORD}, headers=admin
            )
            assert added.status_code == 201, added.text
            displays = {}
            for who in ("display", "display_revoked"):
                link = http.post("/api/displays", json={"dashboard": "open", "label": who}, headers=admin).json()
                displays[who] = link["url"].split("#", 1)[1]
            assert http.delete(f"/api/displays/{link['id']}", headers=admin).status_code == 200
            # The sources' read at start-up (they have no schedule) must not land inside a probe's
            # before/after snapshot, where it would read as a change the probe made.
            deadline = time.monotonic() + 60
            while any(s["refreshes"] < 1 for s in http.get("/api/sources", headers=admin).json()):
                assert time.monotonic() < deadline, "the sources' first refresh did not come"
                time.sleep(0.1)
        while utcnow() <= expires:
            time.sleep(0.1)
        yield Probe(server, tokens, jobs, oona_token, routes, displays, database)


@pytest.mark.timeout(600)
def test_the_matrix(probe: Probe) -> None:
    problems: list[str] = []
    sent = 0
    # An event stream is read until it has been quiet a while: a caller's streams are read side by
    # side once its other requests are done (they change nothing), while the next caller goes on.
    streams: list[tuple[str, str, str, bool, Future[httpx.Response]]] = []
    with probe.client() as http, ThreadPoolExecutor(STREAM_READERS) as readers:
        before = snapshot(http, probe)
        for who in ROLES:
            mine: list[tuple[str, str, bool]] = []
            for method, template in probe.routes:
                for url, subject, canonical in targets(probe, template):
                    verdict = must_deny(who, method, template, subject, canonical)
                    if method != "GET" and not verdict:
                        continue  # allowed changes are the feature tests' business
                    sent += 1
                    if template in STREAMS:
                        mine.append((template, url, verdict))
                        continue
                    response = call(http, probe, who, method, template, url)
                    problems += judge(who, method, url, template, verdict, response)
                    if method != "GET":
                        after = snapshot(http, probe)
                        if after != before:
                            problems.append(f"{who} {method} {url} changed the state: {diff(before, after)}")
                            before = after
            streams += [(who, *stream, readers.submit(read_alone, probe, who, *stream[:2])) for stream in mine]
        for who, template, url, verdict, read in streams:
            problems += judge(who, "GET", url, template, verdict, read.result())
    print(f"the matrix sent {sent} requests")
    more = f"\n... and {len(problems) - 60} more" if len(problems) > 60 else ""
    assert not problems, "\n".join(problems[:60]) + more


def test_positive_controls(probe: Probe) -> None:
    """The leak checks are not vacuous: whoever may see the secrets does see them, on the same routes."""
    with probe.client() as http:
        for who in SEES_SECRETS:
            job = probe.jobs["olga"]
            for url in (
                f"/api/jobs/{job}",
                f"/api/jobs/{job}/logs",
                f"/api/jobs?task={SECRET_TASK}",
                f"/jobs/{job}",
                "/api/sources/beds/data",
            ):
                answer = http.get(url, headers=probe.headers(who))
                assert answer.status_code == 200, (who, url, answer.text[:300])
                assert JOB_SECRET in answer.text or BOARD_SECRET in answer.text, (who, url)
            events = read_stream(
                http, "/api/events?last_event_id=1", probe.headers(who), until=lambda text: JOB_SECRET in text
            )
            assert JOB_SECRET in events, f"{who} saw no event of the vault job: the event check would be vacuous"
            live = read_stream(
                http,
                f"/api/live/events?topic=jobs&topic=dashboard:wards&topic=stream:{SECRET_STREAM}&last_event_id=%40%3D1",
                probe.headers(who),
                until=lambda text: JOB_SECRET in text and BOARD_SECRET in text,
            )
            assert JOB_SECRET in live and BOARD_SECRET in live, f"{who}: the shared stream check would be vacuous"
            assert f'task="{SECRET_TASK}"' in http.get("/metrics", headers=probe.headers(who)).text


def test_presence_does_not_tell_what_others_may_not_see(probe: Probe) -> None:
    with probe.client() as http:
        vault_job = probe.jobs["olga"]
        # The last two are no route (404), yet a reader learns "job 3" or "vault" from them.
        for page in (
            f"/tasks/{SECRET_TASK}",
            f"/jobs/{vault_job}",
            "/dashboards/wards",
            f"/jobs/{vault_job} /cancel",
            f"/tasks/{SECRET_TASK} ",
        ):
            deadline = time.monotonic() + 30
            while True:  # presence is written every couple of seconds at most (presence_expiry / 4)
                status = http.get(page, headers=probe.headers("olga")).status_code
                assert status == (404 if page.endswith(" ") or " /" in page else 200), (page, status)
                shown = http.get("/api/presence", headers=probe.headers("ada")).json()["online"]
                if page in [entry["page"] for entry in shown if entry["user"] == "olga"]:
                    break
                assert time.monotonic() < deadline, f"olga never showed as on {page}: {shown}"
                time.sleep(0.3)
            for who in ("val", "otto"):
                for url in ("/api/presence", "/presence"):
                    text = http.get(url, headers=probe.headers(who)).text
                    assert "olga" in text and page not in text, (who, url, page)


def test_audit_targets_are_canonical(probe: Probe) -> None:
    with probe.client() as http:
        mine = probe.jobs["otto"]
        for spelling in (f"+{mine}", f"0{mine}", f"{mine}%20"):
            assert http.post(f"/api/jobs/{spelling}/retry", headers=probe.headers("otto")).status_code == 404
        entries = http.get("/api/audit", params={"limit": 500}, headers=probe.headers("ada")).json()["entries"]
    targets = [e["target"] for e in entries if e["target"].startswith("job:")]
    assert targets and all(re.fullmatch(r"job:[1-9][0-9]*", target) for target in targets), targets


def test_lists_are_filtered_in_the_query(probe: Probe) -> None:
    """A page of one job at a time walks every visible job and never the hidden one: pages stay full
    and cursors right."""
    with probe.client() as http:
        for who, expected in (("otto", {probe.jobs["otto"], probe.jobs["oona"]}), ("ada", set(probe.jobs.values()))):
            seen: list[int] = []
            cursor = None
            while True:
                page = http.get(
                    "/api/jobs",
                    params={"limit": 1, **({"cursor": cursor} if cursor else {})},
                    headers=probe.headers(who),
                ).json()
                assert len(page["jobs"]) == 1 or not page["next_cursor"], page
                seen += [job["id"] for job in page["jobs"]]
                cursor = page["next_cursor"]
                if not cursor:
                    break
            assert set(seen) == expected and len(seen) == len(expected), (who, seen)


# -- what to call ----------------------------------------------------------------------------------
def targets(probe: Probe, template: str) -> list[tuple[str, str, bool]]:
    """(url, what it names, whether its ids are written canonically) for each value to try."""
    values: dict[str, list[tuple[str, str]]] = {}
    if "{job_id}" in template:
        values["{job_id}"] = [(str(probe.jobs[k]), f"job:{k}") for k in ("otto", "oona", "olga")]
    if "{token_id}" in template:
        values["{token_id}"] = [(str(probe.oona_token), "token:oona")]
    if "{task}" in template or template.startswith("/tasks/{name}"):
        key = "{task}" if "{task}" in template else "{name}"
        values[key] = [("add", "task:add"), (SECRET_TASK, "task:vault")]
    elif "{name}" in template:
        values["{name}"] = name_values(template)
    if "{control}" in template:  # on the open dashboard, one runs the allow-listed task
        values["{control}"] = [("add-one", ""), ("open-the-safe", "task:vault"), ("add-two", "")]
    for key, value in (
        ("{artifact}", "secret.txt"),
        ("{secret}", "not-a-link"),
        ("{action}", "start"),
        ("{provider}", "nobody"),
        ("{rule_id}", "999999"),
    ):
        if key in template:
            values[key] = [(value, "")]
    combos: list[tuple[str, str]] = [(template, "")]
    for key, options in values.items():
        combos = [
            (url.replace(key, value), " ".join(filter(None, (subject, what))))
            for url, subject in combos
            for value, what in options
        ]
    if template == "/api/live/events":  # one stream for a browser's tabs: every topic at once, the hidden ones too
        topics = [
            "jobs",
            f"jobs:{SECRET_TASK}",
            f"job:{probe.jobs['olga']}",
            f"job:{probe.jobs['oona']}",
            "dashboard:wards",
            "dashboard:open",
            "dashboard:lobby",
            f"stream:{SECRET_STREAM}",
        ]
        combos = [(template + "?" + "&".join(f"topic={t}" for t in topics), "")]
    out = [(("/static/mieruka.css" if template == "/static" else url), subject, True) for url, subject in combos]
    for key in ("{job_id}", "{token_id}"):
        if key not in template:
            continue
        for value, what in values[key]:
            if what in ("job:otto",):
                continue  # two jobs are enough to try every spelling on
            for form in NON_CANONICAL:
                url = template.replace(key, form.format(value))
                for other, (default, _) in ((k, v[0]) for k, v in values.items() if k != key):
                    url = url.replace(other, default)
                out.append((url, what, False))
    return out


def name_values(template: str) -> list[tuple[str, str]]:
    if template.startswith(("/api/dashboards/", "/dashboards/")):
        return [("open", "dashboard:open"), ("wards", "dashboard:wards"), ("lobby", "dashboard:lobby")]
    if template.startswith("/api/sources/"):
        return [("wards", "source:wards"), ("beds", "source:beds"), ("lobby", "source:lobby")]
    if template.startswith(("/api/streams/", "/streams/")):
        return [(SECRET_STREAM, "stream:vitals")]
    if template.startswith(("/api/users/", "/users/")):
        return [("oona", "user:oona")]
    if template.startswith("/api/jobs/{job_id}/steps/"):
        return [("reveal", "")]
    if template.startswith("/api/jobs/{job_id}/artifacts/"):
        return [("secret.txt", "")]
    return [("nothing", "")]


# Read without a login (tests/web/test_displays.py has the same routes): the public dashboard (lobby)
# by anyone, the open dashboard by the holder of its display link; their sources and streams.
WALL_ROUTES = {
    ("GET", "/dashboards/{name}"),
    ("GET", "/api/dashboards/{name}"),
    ("GET", "/api/dashboards/{name}/events"),
    ("GET", "/api/sources/{name}/data"),
    ("GET", "/api/streams/{name}/points"),
    ("GET", "/api/live/events"),
}
WALL_SHOWN = {
    "anonymous": {"dashboard:lobby", "source:lobby"},
    "forger": {"dashboard:lobby", "source:lobby"},  # what anybody sees, never what the admin it names sees
    "display_revoked": {"dashboard:lobby", "source:lobby"},
    "display": {"dashboard:lobby", "source:lobby", "dashboard:open", "source:wards"},
}


def must_deny(who: str, method: str, template: str, subject: str, canonical: bool) -> bool:
    """Whether the rules deny this request (False: they allow it, or it depends on the handler)."""
    expected = EXPECTED.get((method, template))
    assert expected is not None, f"{method} {template} has no expectation in tests/web/test_access.py"
    role = ROLES[who]
    if who in WALL_SHOWN and canonical and (method, template) in WALL_ROUTES:
        # The shared stream opens for them and refuses each topic not shown (the leak checks apply).
        return template != "/api/live/events" and not (subject and set(subject.split()) <= WALL_SHOWN[who])
    if not role_allows(expected, role) or not canonical:
        return True
    secret = {"job:olga", "task:vault", "dashboard:wards", "source:beds", "stream:vitals"}
    if who not in SEES_SECRETS and any(part in secret for part in subject.split()):
        return True
    if expected == "owner" and role != "admin":
        return f"job:{who}" not in subject.split()
    return "token:oona" in subject and who not in ("oona", "ada")


def read_alone(probe: Probe, who: str, template: str, url: str) -> httpx.Response:
    """An event stream read on a connection of its own (streams are read side by side)."""
    with probe.client() as http:
        return call(http, probe, who, "GET", template, url)


def call(http: httpx.Client, probe: Probe, who: str, method: str, template: str, url: str) -> httpx.Response:
    headers = probe.headers(who)
    if template in STREAMS:
        # From the first event on: what was published before the call is there to leak too.
        resume = "last_event_id=%40%3D1" if template == "/api/live/events" else "last_event_id=1"
        body = read_stream(http, url + ("&" if "?" in url else "?") + resume, headers)
        return httpx.Response(200, text=body, request=httpx.Request("GET", url))
    if method in ("POST", "PATCH", "PUT"):
        payload: dict[str, Any] = {"role": "admin", "name": "mallory", "password": PASSWORD, "a": 1}
        return http.request(method, url, json=payload, headers=headers)
    return http.request(method, url, headers=headers)


def read_stream(
    http: httpx.Client,
    url: str,
    headers: dict[str, str],
    seconds: float = 1.0,
    until: Callable[[str], bool] | None = None,
) -> str:
    """What an event stream sends within `seconds`, or until what it sent meets `until` (the whole
    answer when it is not a stream)."""
    chunks: list[str] = []
    with http.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=seconds)) as response:
        if response.status_code != 200 or "event-stream" not in response.headers.get("content-type", ""):
            response.read()
            return f"{response.status_code} {response.text}"
        deadline = time.monotonic() + seconds
        try:
            for chunk in response.iter_text():
                chunks.append(chunk)
                if time.monotonic() > deadline or (until is not None and until("".join(chunks))):
                    break
        except httpx.ReadTimeout:
            pass  # quiet for `seconds`: all that was there to send has come
    return "".join(chunks)


def judge(who: str, method: str, url: str, template: str, deny: bool, response: httpx.Response) -> list[str]:
    problems = []
    status, text = response.status_code, response.text
    where = f"{who} {method} {url} -> {status}"
    if status >= 500:
        problems.append(f"{where}: server error {text[:200]}")
    if deny and status not in DENIED and not (template in STREAMS and text.startswith(tuple(map(str, DENIED)))):
        problems.append(f"{where}: should have been refused ({text[:150]!r})")
    if not deny and status in (401, 403) and EXPECTED[(method, template)] != "public":
        problems.append(f"{where}: refused though allowed ({text[:150]!r})")
    if not deny and template in MUST_SHOW and status != 200:
        problems.append(f"{where}: expected 200 ({text[:150]!r})")
    if who not in SEES_SECRETS:
        for secret in (JOB_SECRET, BOARD_SECRET):
            if secret in text:
                problems.append(f"{where}: shows {secret!r}")
        for name in (SECRET_TASK, SECRET_STREAM):
            if name in text and name not in url:
                problems.append(f"{where}: names {name!r}")
    if ROLES[who] != "admin" and HIDDEN_USER in text:
        problems.append(f"{where}: names the user {HIDDEN_USER!r}")
    return problems


# -- what must not change --------------------------------------------------------------------------
# What a denied request must leave as it was (volatile columns left out: last use, presence, sessions).
STATE = {
    "jobs": "SELECT id, task, status, owner, params, priority, cancel_requested, attempts, max_attempts, run_after "
    "FROM jobs",
    "users": "SELECT name, role, password_hash, source, display_name FROM users",
    "tokens": "SELECT id, user_id, name, revoked_at, expires_at FROM tokens",
    "display links": "SELECT id, dashboard, label, revoked_at, expires_at FROM display_links",
    "notification rules": "SELECT * FROM notify_rules",
    "artifacts": "SELECT job_id, name, size FROM artifacts",
}


def snapshot(http: httpx.Client, probe: Probe) -> dict[str, Any]:
    """The state a denied request must not change: the database's rows, read directly (a request per
    list would be four times the matrix's own requests), and the sources' refreshes (kept in memory)."""
    with closing(sqlite3.connect(probe.database, timeout=60)) as db:
        state: dict[str, Any] = {name: sorted(db.execute(query).fetchall()) for name, query in STATE.items()}
    sources = http.get("/api/sources", headers=probe.headers("ada")).json()
    state["sources"] = sorted((s["name"], s.get("refreshes", s.get("attempts"))) for s in sources)
    return state


def diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {before[k]} -> {after[k]}" for k in before if before[k] != after[k])


def test_the_probe_app_has_no_unexpected_routes(probe: Probe) -> None:
    missing = [route for route in probe.routes if route not in EXPECTED]
    assert not missing, f"routes with no expectation in tests/web/test_access.py: {missing}"
