"""Directory login against a real OpenLDAP (slapd started by the tests, tests/ldap_server.py): the
directory itself (StartTLS, LDAPS, plain bind only when allowed, nested groups, disabled accounts,
filter injection), and a real server process logging directory users in through the login form,
mapping groups to roles and allow lists, following role changes, cutting off removed users within
ldap_recheck, and the directory going down (a clear message; local admins still in)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from mieruka.auth.accounts import Accounts
from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.errors import ConfigError, DirectoryUnavailable
from mieruka.settings import Settings
from mieruka.store.database import Database
from tests import ldap_server
from tests.conftest import TESTS, UI_WAIT, ServerProcess, free_port, mieruka_cli, need_service, open_page, wait_for
from tests.ldap_server import PEOPLE, LdapServer
from tests.notify_receivers import http_receiver

if TYPE_CHECKING:
    from playwright.sync_api import Browser

RECHECK = 2.0  # ldap_recheck of the served app: a removed user is cut off within this (plus a request)
GRACE = 10.0  # long enough for the logins the test makes meanwhile on a busy machine
ADMIN_PASSWORD = "local admin password"


@pytest.fixture(scope="module")
def ldap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LdapServer]:
    missing = ldap_server.available()
    if missing is not None:
        need_service(missing)
    with LdapServer(tmp_path_factory.mktemp("ldap")) as server:
        yield server


def directory_of(ldap: LdapServer, **extra: Any) -> Any:
    from mieruka.auth.directory import Directory

    found = Directory.from_settings(Settings().with_overrides(**ldap.settings(**extra)))
    assert found is not None
    return found


def eventually(check: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {timeout} s")


# -- the directory -----------------------------------------------------------------------------------
def test_passwords_groups_and_disabled_accounts(ldap: LdapServer) -> None:
    directory = directory_of(ldap)
    ada = directory.login("ada", "ada-secret")
    assert ada is not None and ada.display_name == "Ada Lovelace" and ada.groups == {"lab", "lab-admins"}
    assert directory.role_of(ada).value == "admin"  # mapped by the group's DN
    assert directory.login("ada", "wrong password") is None
    assert directory.login("ada", "") is None  # an empty password would be an anonymous bind
    assert directory.login("nobody", "ada-secret") is None
    assert directory.login("carol", "carol-secret") is None  # pwdAccountLockedTime
    assert directory.lookup("carol").disabled
    dave = directory.login("dave", "dave-secret")
    assert dave is not None and dave.groups == {"lab-core", "lab-ops"}  # lab-ops holds lab-core, which holds dave
    assert directory.role_of(dave).value == "operator"  # mapped by the (nested) group's name
    bob = directory.login("bob", "bob-secret")
    assert bob is not None and directory.role_of(bob).value == "viewer"


def test_nesting_is_bounded_and_can_be_off(ldap: LdapServer) -> None:
    assert directory_of(ldap, ldap_nested="off").login("dave", "dave-secret").groups == {"lab-core"}
    assert directory_of(ldap, ldap_nested_depth=1).login("dave", "dave-secret").groups == {"lab-core"}
    assert directory_of(ldap, ldap_nested="walk").login("dave", "dave-secret").groups == {"lab-core", "lab-ops"}


def test_filter_injection_is_escaped(ldap: LdapServer) -> None:
    directory = directory_of(ldap)
    for name in ("*", "a*", "ada)(uid=*", "*)(|(uid=*", "ada\\2a", "(uid=ada)"):
        assert directory.login(name, "ada-secret") is None, name
    star = directory.lookup("star*")  # a name with a '*' is found as written, not as a pattern
    assert star is not None and star.name == "star*"
    assert directory.lookup("st*") is None


def test_a_disabled_filter_and_a_user_filter(ldap: LdapServer) -> None:
    assert directory_of(ldap, ldap_disabled_filter="(displayName=Bob*)").login("bob", "bob-secret") is None
    assert directory_of(ldap, ldap_user_filter="(displayName=Ada*)").login("bob", "bob-secret") is None
    assert directory_of(ldap, ldap_user_filter="(displayName=Ada*)").login("ada", "ada-secret") is not None


def test_plain_binds_only_when_allowed_and_tls_is_checked(ldap: LdapServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="would send passwords unencrypted"):
        directory_of(ldap, ldap_starttls=False)
    plain = directory_of(ldap, ldap_starttls=False, ldap_allow_plain=True)
    assert plain.login("ada", "ada-secret") is not None
    assert directory_of(ldap, ldap_url=ldap.ldaps_url, ldap_starttls=False).login("ada", "ada-secret") is not None
    other = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other"]
        + ["-keyout", str(tmp_path / "other.key"), "-out", str(other)],
        check=True,
        capture_output=True,
    )
    for url, starttls in ((ldap.url, True), (ldap.ldaps_url, False)):
        with pytest.raises(DirectoryUnavailable) as refused:  # a certificate not signed by ldap_ca_file
            directory_of(ldap, ldap_url=url, ldap_starttls=starttls, ldap_ca_file=str(other)).login("ada", "ada-secret")
        assert "CERTIFICATE_VERIFY_FAILED" in refused.value.reason, refused.value.reason


def test_several_servers_are_tried_in_order(ldap: LdapServer) -> None:
    dead = f"ldap://127.0.0.1:{free_port()}"  # nothing listens there
    assert directory_of(ldap, ldap_url=f"{dead}, {ldap.url}").login("ada", "ada-secret") is not None
    other = f"ldap://127.0.0.1:{free_port()}"
    with pytest.raises(DirectoryUnavailable) as down:
        directory_of(ldap, ldap_url=f"{dead},{other}").login("ada", "ada-secret")
    assert down.value.message == f"the directory ({dead}, {other}) cannot be reached"
    assert down.value.reason.count("LDAPSocketOpenError") == 2
    with pytest.raises(ConfigError, match="would send passwords unencrypted"):
        directory_of(ldap, ldap_url=f"{ldap.ldaps_url}, {ldap.url}", ldap_starttls=False)


def test_bad_directory_settings_are_config_errors(ldap: LdapServer) -> None:
    for extra, message in (
        ({"ldap_url": "http://x"}, "not an ldap:// or ldaps:// URL"),
        ({"ldap_url": "ldaps://x:port"}, "port must be an integer"),
        ({"ldap_user_base": ""}, "ldap_user_base"),
        ({"ldap_roles": "lab=admin"}, "JSON object"),
        ({"ldap_roles": '{"lab": "boss"}'}, "unknown role"),
        ({"ldap_nested": "deep"}, "ldap_nested"),
        ({"ldap_user_filter": "uid=x"}, "in parentheses"),
        ({"ldap_timeout": 0}, "ldap_timeout must be positive"),
        ({"ldap_nested_depth": 0}, "ldap_nested_depth >= 1"),
    ):
        with pytest.raises(ConfigError, match=message):
            directory_of(ldap, **extra)


def test_the_docs_settings_examples_are_read_as_they_say(tmp_path: Path) -> None:
    """docs/directory.md's mieruka.toml examples (OpenLDAP, Active Directory, a proxy) load, and
    their group-to-role tables mean what the page says."""
    from mieruka.auth.directory import DirectoryConfig

    page = (TESTS.parent / "docs" / "directory.md").read_text(encoding="utf-8")
    examples = [block.split("```", 1)[0] for block in page.split("```toml\n")[1:]]
    assert len(examples) == 3
    loaded = []
    for n, example in enumerate(examples):
        config = tmp_path / f"mieruka-{n}.toml"
        config.write_text(example, encoding="utf-8")
        loaded.append(Settings.load(environ={}, config_file=config))
    openldap, ad = (DirectoryConfig.from_settings(s) for s in loaded[:2])
    assert openldap.starttls and openldap.urls == ("ldap://ldap.example.org",)
    assert {k: v.value for k, v in openldap.roles.items()} == {
        "cn=lab-admins,ou=groups,dc=example,dc=org": "admin",
        "lab-ops": "operator",
        "lab": "viewer",
    }
    assert ad.user_attribute == "sAMAccountName" and ad.roles["lab staff"].value == "viewer"
    assert ad.roles["cn=lab admins,ou=groups,dc=corp,dc=example,dc=org"].value == "admin"
    proxy = loaded[2]
    assert (proxy.trusted_user_header, proxy.trusted_user_role, proxy.trusted_user_strip_domain) == (
        "X-Remote-User",
        "viewer",
        True,
    )


def test_sign_in_makes_and_updates_the_user(ldap: LdapServer, tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    try:
        audit = AuditLog(db)
        accounts = Accounts(db, audit=audit)
        directory = directory_of(ldap)
        dave = directory.sign_in(accounts, "dave", "dave-secret", "10.0.0.7")
        assert dave is not None and (dave.source, dave.role.value) == ("ldap", "operator")
        assert set(dave.groups) == {"lab-core", "lab-ops"} and dave.display_name == "Dave Nested"
        assert directory.sign_in(accounts, "dave", "wrong", "10.0.0.7") is None
        accounts.sign_in_external("bob", "oidc", "viewer", [])  # the provider's bob is not the directory's
        assert directory.sign_in(accounts, "bob", "bob-secret", "") is None
        assert accounts.get_user("bob").source == "oidc"
        assert directory.sign_in(accounts, "star*", "star-secret", "") is None  # no role, and no valid name
        entries = audit.query(AuditQuery(target="user:dave"))
        assert [(e.actor, e.action) for e in entries] == [("ldap", "user.add")]
    finally:
        db.close()


# -- a server ----------------------------------------------------------------------------------------


def _env(ldap: LdapServer, **extra: Any) -> dict[str, str]:
    values = ldap.settings(ldap_recheck=RECHECK, ldap_grace=GRACE, **extra)
    return {f"MIERUKA_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}


@pytest.fixture
def served(ldap: LdapServer, tmp_path: Path) -> Iterator[ServerProcess]:
    home = tmp_path / "home"
    added = mieruka_cli(
        home, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    notify = {
        "MIERUKA_NOTIFY_USER_WEBHOOK_HOSTS": "127.0.0.1",
        "MIERUKA_NOTIFY_POLL_INTERVAL": "0.2s",
        "MIERUKA_NOTIFY_DIGEST_WINDOW": "0.2s",
    }
    proc = ServerProcess("tests/directory_app.py:app", home, "--workers", "1", env={**_env(ldap), **notify})
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


_clients: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def login(server: ServerProcess, name: str, password: str) -> tuple[httpx.Client, httpx.Response]:
    """A browser-like client (cookies) after posting the login form; closed after the test."""
    client = httpx.Client(base_url=server.url, timeout=30)
    _clients.append(client)
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    answer = client.post("/login", data={"csrf_token": token.group(1), "name": name, "password": password})
    return client, answer


def admin(server: ServerProcess) -> dict[str, str]:
    created = mieruka_cli(server.home, "tokens", "create", "--user", "root")
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {created.stdout.strip()}"}


def test_directory_users_log_in_with_their_groups_roles(served: ServerProcess) -> None:
    client, answer = login(served, "ada", "ada-secret")
    assert answer.status_code == 303, answer.text
    me = client.get("/api/me").json()
    assert (me["name"], me["role"], me["via"]) == ("ada", "admin", "session")
    for name, password in (
        ("ada", "wrong password"),
        ("nobody", "x-secret"),
        ("carol", "carol-secret"),
        ("*", "ada-secret"),
    ):
        _, refused = login(served, name, password)
        assert refused.status_code == 401 and "Wrong user name or password." in refused.text, name
    users = {u["name"]: u for u in httpx.get(f"{served.url}/api/users", headers=admin(served)).json()}
    assert users["ada"]["source"] == "ldap" and users["root"]["source"] == "local"
    assert set(users["ada"]["groups"]) == {"lab", "lab-admins"} and not users["ada"]["has_password"]
    assert "carol" not in users and "nobody" not in users
    entries = httpx.get(f"{served.url}/api/audit?actor=ada", headers=admin(served)).json()["entries"]
    assert "login.directory" in [e["action"] for e in entries]
    listed = mieruka_cli(served.home, "users", "ls").stdout
    assert re.search(r"^ada\s+admin\s+no\s+ldap\s", listed, re.M) and re.search(
        r"^root\s+admin\s+yes\s+local\s", listed, re.M
    )
    assert "your password is kept there" in client.get("/account").text
    changed = client.post(
        "/account/password", data={"csrf_token": _csrf(client), "current": "ada-secret", "password": "a new one!"}
    )
    assert changed.status_code == 422 and "Your password is kept by ldap: change it there." in changed.text
    page = client.get("/users").text
    assert re.search(r"ada.*?ldap", page, re.S), "the users page shows where each user comes from"


def test_group_allow_lists_and_role_changes(served: ServerProcess, ldap: LdapServer) -> None:
    dave, answer = login(served, "dave", "dave-secret")
    assert answer.status_code == 303
    bob, answer = login(served, "bob", "bob-secret")
    assert answer.status_code == 303
    assert "calibrate" in [t["name"] for t in dave.get("/api/tasks").json()]  # lab-ops through lab-core
    ran = dave.post("/api/tasks/calibrate/run", json={"level": 2}, headers={"X-CSRF-Token": _csrf(dave)})
    assert ran.status_code == 200 and ran.json()["result"] == 4, ran.text
    assert "calibrate" not in [t["name"] for t in bob.get("/api/tasks").json()]
    assert bob.get("/api/me").json()["role"] == "viewer"
    assert bob.get("/api/dashboards/lab-board").status_code == 200  # group:lab
    assert dave.get("/api/dashboards/lab-board").status_code in (403, 404)
    assert "lab-board" not in [d["name"] for d in dave.get("/api/dashboards").json()]
    ldap.membership("lab-ops", "add", "bob")
    try:
        bob, answer = login(served, "bob", "bob-secret")  # the role follows the directory at the next login
        assert answer.status_code == 303
        assert bob.get("/api/me").json()["role"] == "operator"
        assert "calibrate" in [t["name"] for t in bob.get("/api/tasks").json()]
        entries = httpx.get(f"{served.url}/api/audit?action=user.role", headers=admin(served)).json()["entries"]
        change = next(e for e in entries if e["target"] == "user:bob")
        assert (
            change["actor"] == "ldap" and change["detail"]["role"] == "operator" and change["detail"]["was"] == "viewer"
        )
    finally:
        ldap.membership("lab-ops", "delete", "bob")


def _csrf(client: httpx.Client) -> str:
    return str(client.get("/api/me").json()["csrf_token"])


def test_a_removed_user_loses_sessions_and_tokens_within_the_recheck(served: ServerProcess, ldap: LdapServer) -> None:
    fred_entry = f"dn: uid=fred,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: fred\ncn: Fred\nsn: Fred\n"
    ldap.ldap("ldapadd", fred_entry + "userPassword: fred-secret\n")
    ldap.membership("lab", "add", "fred")
    fred, answer = login(served, "fred", "fred-secret")
    assert answer.status_code == 303
    created = fred.post("/api/tokens", json={"name": "script"}, headers={"X-CSRF-Token": _csrf(fred)})
    assert created.status_code == 201, created.text
    bearer = {"Authorization": f"Bearer {created.json()['token']}"}
    assert httpx.get(f"{served.url}/api/me", headers=bearer).status_code == 200
    ldap.membership("lab", "delete", "fred")
    ldap.delete(f"uid=fred,{PEOPLE}")
    removed_at = time.monotonic()
    eventually(lambda: httpx.get(f"{served.url}/api/me", headers=bearer).status_code == 401, what="the token refused")
    assert time.monotonic() - removed_at < RECHECK + 5
    assert fred.get("/api/me").status_code == 401  # the session is gone too
    _, again = login(served, "fred", "fred-secret")
    assert again.status_code == 401
    entries = httpx.get(f"{served.url}/api/audit?action=user.cut_off", headers=admin(served)).json()["entries"]
    assert entries and entries[0]["target"] == "user:fred"


def test_a_subscription_falls_silent_when_its_user_leaves_the_directory(
    served: ServerProcess, ldap: LdapServer
) -> None:
    """gina subscribes to a task her group lab may see, then leaves the directory without coming
    back: the server asks the directory about her itself and tells her nothing more."""
    ldap.ldap(
        "ldapadd",
        f"dn: uid=gina,{PEOPLE}\nobjectClass: inetOrgPerson\nuid: gina\ncn: Gina\nsn: Gina\n"
        "userPassword: gina-secret\n",
    )
    ldap.membership("lab", "add", "gina")
    with http_receiver() as receiver:
        gina, answer = login(served, "gina", "gina-secret")
        assert answer.status_code == 303
        rule = {"events": ["job.failed"], "tasks": ["inspect"]}
        mine = gina.post(
            "/api/notifications/rules",
            json={**rule, "target": "webhook:" + receiver.url("/gina")},
            headers={"X-CSRF-Token": _csrf(gina)},
        )
        assert mine.status_code == 201, mine.text
        root = admin(served)
        ops = httpx.post(
            f"{served.url}/api/notifications/rules",
            json={**rule, "target": "webhook:" + receiver.url("/ops")},
            headers=root,
        )
        assert ops.status_code == 201, ops.text

        def fail_and_tell_ops() -> int:
            job = httpx.post(f"{served.url}/api/tasks/inspect/jobs", json={"fail": True}, headers=root)
            assert job.status_code in (200, 201, 202), job.text
            made = int(job.json()["id"])
            wait_for(
                lambda: made in [e["job_id"] for r in receiver.got("/ops") for e in r.json()["events"]],
                60,
                "the admin's rule told",
            )
            return made

        first = fail_and_tell_ops()
        told = wait_for(lambda: receiver.got("/gina"), 60, "gina's message")
        assert [e["job_id"] for e in told[0].json()["events"]] == [first]
        ldap.membership("lab", "delete", "gina")
        ldap.delete(f"uid=gina,{PEOPLE}")
        time.sleep(RECHECK + 0.5)  # her last confirmation is older than ldap_recheck: the directory is asked
        second = fail_and_tell_ops()  # both rules were routed together: gina's has had its chance
        heard = [e["job_id"] for r in receiver.got("/gina") for e in r.json()["events"]]
        assert heard == [first] and second not in heard
        messages = httpx.get(f"{served.url}/api/notifications", headers=root).json()["deliveries"]
        assert sum(d["events"] for d in messages if d["rule_id"] == mine.json()["id"]) == 1
    entries = httpx.get(f"{served.url}/api/audit?action=user.cut_off", headers=root).json()["entries"]
    assert [e["target"] for e in entries] == ["user:gina"]


def test_the_directory_down(served: ServerProcess, ldap: LdapServer) -> None:
    ada, answer = login(served, "ada", "ada-secret")
    assert answer.status_code == 303
    ldap.stop()
    try:
        _, down = login(served, "bob", "bob-secret")
        assert down.status_code == 503
        assert f"the directory ({ldap.url}) cannot be reached" in down.text and "Local accounts still work" in down.text
        _, local = login(served, "root", ADMIN_PASSWORD)  # break-glass: the local admin still gets in
        assert local.status_code == 303
        time.sleep(RECHECK + 0.5)  # past the recheck, within the grace: ada keeps working
        assert ada.get("/api/me").status_code == 200
        eventually(lambda: "keeping ada signed in" in served.output(), what="the grace logged")
        eventually(lambda: ada.get("/api/me").status_code == 401, timeout=GRACE + 20, what="the grace over")
    finally:
        ldap.start()
    _, back = login(served, "bob", "bob-secret")
    assert back.status_code == 303
    assert "bob-secret" not in served.output() and "ada-secret" not in served.output()  # passwords never logged


def test_a_plain_directory_url_stops_the_server(ldap: LdapServer, tmp_path: Path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}, "PYTHONPATH": str(TESTS.parent)}
    env.update(_env(ldap, ldap_starttls=False))
    result = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", "run", "tests/directory_app.py:app", "--port", str(free_port())]
        + ["--home", str(tmp_path / "home")],
        capture_output=True,
        text=True,
        cwd=TESTS.parent,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0 and "would send passwords unencrypted" in result.stderr, result.stderr


def test_a_proxy_names_directory_users(ldap: LdapServer, tmp_path: Path) -> None:
    """trusted_user_header with a directory: the directory says who exists and which role they have."""
    from tests.web.test_trusted_header import outward_address

    proxy = outward_address()
    if proxy is None:
        need_service("a network address besides loopback (the trusted proxy's)")
    home = tmp_path / "home"
    added = mieruka_cli(
        home, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=ADMIN_PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    env = {
        **_env(ldap),
        "MIERUKA_HOST": "0.0.0.0",
        "MIERUKA_TRUSTED_PROXIES": str(proxy),
        "MIERUKA_TRUSTED_USER_HEADER": "X-Remote-User",
    }
    proc = ServerProcess("tests/directory_app.py:app", home, "--workers", "1", env=env)
    try:
        proc.wait_ready()
        base = f"http://{proxy}:{proc.port}"
        me = httpx.get(f"{base}/api/me", headers={"X-Remote-User": "EXAMPLE\\dave"})
        assert me.status_code == 200 and (me.json()["name"], me.json()["role"]) == ("dave", "operator"), me.text
        tasks = httpx.get(f"{base}/api/tasks", headers={"X-Remote-User": "dave"}).json()
        assert "calibrate" in [t["name"] for t in tasks]  # group:lab-ops, through the nested lab-core
        for name in ("carol", "nobody", "star*"):  # disabled, unknown, in no group with a role
            assert httpx.get(f"{base}/api/me", headers={"X-Remote-User": name}).status_code == 401, name
        assert httpx.get(f"{proc.url}/api/me", headers={"X-Remote-User": "dave"}).status_code == 401  # not the proxy
        users = {u["name"]: u for u in httpx.get(f"{proc.url}/api/users", headers=admin(proc)).json()}
        assert users["dave"]["source"] == "proxy" and set(users["dave"]["groups"]) == {"lab-core", "lab-ops"}
    finally:
        proc.stop()
        if sys.exc_info()[0] is not None:
            print(proc.output())


def test_a_directory_login_in_chromium(browser: Browser, served: ServerProcess, ldap: LdapServer) -> None:
    outside: list[str] = []
    page = open_page(browser, served, outside)
    shots = served.home.parent / "screenshots"
    page.goto(f"{served.url}/jobs")
    page.wait_for_url("**/login?next=*")
    assert "(127.0.0.1) works here" in page.locator("#directory-note").inner_text()
    page.locator('[name="name"]').fill("dave")
    page.locator('[name="password"]').fill("not dave's password")
    page.get_by_role("button", name="Log in").click()
    assert page.locator("#login-error").inner_text() == "Wrong user name or password."
    page.locator('[name="password"]').fill("dave-secret")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/jobs")
    assert page.locator("#me").text_content() == "dave"
    page.goto(f"{served.url}/tasks/calibrate")  # allowed by group:lab-ops, through lab-core
    page.locator('[name="level"]').fill("21")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/jobs/*")
    page.locator('#job-panel [data-field="status"]', has_text="succeeded").wait_for(timeout=UI_WAIT)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.locator('[name="name"]').fill("root")
    page.locator('[name="password"]').fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{served.url}/")
    page.goto(f"{served.url}/users")
    dave = page.locator('tr[data-user="dave"]')
    assert "ldap" in dave.locator('[data-field="source"]').inner_text() and "Dave Nested" in dave.inner_text()
    assert "local" in page.locator('tr[data-user="root"] [data-field="source"]').inner_text()
    page.screenshot(path=str(shots / "users.png"), full_page=True)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    ldap.stop()
    try:
        page.locator('[name="name"]').fill("ada")
        page.locator('[name="password"]').fill("ada-secret")
        page.get_by_role("button", name="Log in").click()
        error = page.locator("#login-error").inner_text()
        assert f"the directory ({ldap.url}) cannot be reached" in error and "Local accounts still work" in error
        page.screenshot(path=str(shots / "directory-down.png"), full_page=True)
    finally:
        ldap.start()
    page.close()
    assert outside == []


def test_directory_logins_are_throttled_and_an_outage_locks_nobody(ldap: LdapServer, tmp_path: Path) -> None:
    from mieruka.auth.accounts import Throttle
    from mieruka.errors import TooManyAttempts

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.migrate()
    try:
        audit = AuditLog(db)
        accounts = Accounts(db, audit=audit)
        throttle = Throttle(accounts, audit, max_failures=3, window=600)
        down = directory_of(ldap, ldap_url=f"ldap://127.0.0.1:{free_port()}")  # nothing listens there
        for _ in range(5):
            with pytest.raises(DirectoryUnavailable):
                throttle.login("bob", "bob-secret", "10.0.0.9", down)
        directory = directory_of(ldap)
        user = throttle.login("bob", "bob-secret", "10.0.0.9", directory)  # the outage counted against nobody
        assert user is not None and user.source == "ldap"
        for _ in range(3):
            assert throttle.login("ada", "wrong password", "10.0.0.9", directory) is None
        with pytest.raises(TooManyAttempts):
            throttle.login("ada", "ada-secret", "10.0.0.9", directory)
        actions = [e.action for e in audit.query(AuditQuery(action="login."))]
        assert actions.count("login.unavailable") == 5 and actions.count("login.directory") == 1
        assert actions.count("login.failed") == 3
    finally:
        db.close()


# -- a directory that refuses StartTLS for now ------------------------------------------------------
STARTTLS_REQUEST = 0x77  # protocolOp [APPLICATION 23], ExtendedRequest: StartTLS is the only one sent


def _message(sock: socket.socket) -> bytes:
    """One whole LDAPMessage (BER: SEQUENCE, its length, the content) read from `sock`."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed mid-message")
            data += chunk
        return data

    head = exactly(2)
    if head[1] < 0x80:
        return head + exactly(head[1])
    size = exactly(head[1] & 0x7F)
    return head + size + exactly(int.from_bytes(size, "big"))


@contextmanager
def refusing_first_starttls(ldap: LdapServer) -> Iterator[tuple[str, list[int]]]:
    """ldap://127.0.0.1:PORT in front of the directory: the first StartTLS is answered
    operationsError, as slapd answers while it counts other operations on the connection; all else
    is passed through to the directory byte for byte. Yields the URL and the protocolOp tag of each
    connection's first request."""
    upstream = int(ldap.url.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))
    firsts: list[int] = []
    opened: list[socket.socket] = []

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                opened.append(client)
                first = _message(client)
                id_end = 4 + first[3]  # short-form lengths: a small request with a small id
                firsts.append(first[id_end])
                if len(firsts) == 1 and first[id_end] == STARTTLS_REQUEST:
                    diagnostic = b"cannot start TLS when operations are outstanding"
                    result = b"\x0a\x01\x01\x04\x00\x04" + bytes([len(diagnostic)]) + diagnostic
                    op = b"\x78" + bytes([len(result)]) + result
                    message_id = first[2:id_end]
                    client.sendall(b"\x30" + bytes([len(message_id) + len(op)]) + message_id + op)
                    continue
                server = socket.create_connection(("127.0.0.1", upstream))
                opened.append(server)
                server.sendall(first)
                for a, b in ((client, server), (server, client)):
                    threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"ldap://127.0.0.1:{listener.getsockname()[1]}", firsts
    finally:
        listener.close()
        for each in opened:
            each.close()


def test_starttls_comes_first_and_a_refusal_for_now_is_tried_again(ldap: LdapServer) -> None:
    """Nothing goes over a connection in the clear before StartTLS (not even the root DSE): slapd
    refuses StartTLS while it still counts an earlier operation, as it may for a moment after
    answering it on a loaded machine. Refused all the same (operationsError), it is tried once more
    on a fresh connection."""
    with refusing_first_starttls(ldap) as (url, firsts):
        directory = directory_of(ldap, ldap_url=url)
        ada = directory.login("ada", "ada-secret")
        assert ada is not None and ada.display_name == "Ada Lovelace" and ada.groups == {"lab", "lab-admins"}
        assert directory.login("ada", "wrong password") is None
        assert len(firsts) >= 3 and set(firsts) == {STARTTLS_REQUEST}, firsts  # refused, again, the user's
