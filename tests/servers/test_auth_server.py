"""Accounts on a real server process: users and tokens made with the CLI, a login through a real
browser with every page working under the Content-Security-Policy (no violation, nothing fetched
from outside), Secure cookies behind an HTTPS proxy, and the refusal to serve the network with
nobody configured."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import UI_WAIT, ServerProcess, cli, free_port, open_page, shared_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

PASSWORD = "a long password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("auth-server") / "home"
    added = cli(
        "users", "add", "ada", "--role", "admin", "--password-stdin", "--home", str(home), stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr
    with shared_server(
        ServerProcess("tests/jobs.py:app", home, "--workers", "1", env={"MIERUKA_TRUSTED_PROXIES": "127.0.0.1"}),
        request,
    ) as proc:
        yield proc


def test_the_cli_manages_users_and_tokens(server: ServerProcess) -> None:
    home = str(server.home)
    assert (
        cli(
            "users", "add", "otto", "--role", "operator", "--password-stdin", "--home", home, stdin="otto's password\n"
        ).returncode
        == 0
    )
    listed = cli("users", "ls", "--home", home).stdout
    assert re.search(r"ada\s+admin", listed) and re.search(r"otto\s+operator", listed)
    tokyo = cli("users", "ls", "--home", home, MIERUKA_TIMEZONE="Asia/Tokyo").stdout
    assert "CREATED (Asia/Tokyo)" in tokyo  # times shown in the configured zone
    created = cli("tokens", "create", "--user", "otto", "--name", "nightly", "--home", home)
    assert created.returncode == 0 and "shown this once" in created.stderr
    secret = created.stdout.strip()
    bearer = {"Authorization": f"Bearer {secret}"}
    job = httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": 1}, headers=bearer)
    assert job.status_code == 202 and job.json()["owner"] == "otto"
    tokens = cli("tokens", "ls", "--home", home).stdout
    token_id = re.search(r"^\s*(\d+)\s+otto\s+nightly", tokens, re.M)
    assert token_id, tokens
    assert cli("tokens", "revoke", token_id.group(1), "--home", home).returncode == 0
    assert httpx.get(f"{server.url}/api/tasks", headers=bearer).status_code == 401
    assert cli("users", "role", "otto", "viewer", "--home", home).returncode == 0
    assert cli("users", "passwd", "otto", "--password-stdin", "--home", home, stdin="a new password\n").returncode == 0
    assert cli("users", "rm", "otto", "--home", home).returncode == 0
    assert "otto" not in cli("users", "ls", "--home", home).stdout
    audit = httpx.get(f"{server.url}/api/audit?actor=cli", headers=_admin(server))  # entries from the CLI
    assert audit.status_code == 200


def _admin(server: ServerProcess) -> dict[str, str]:
    created = cli("tokens", "create", "--user", "ada", "--home", str(server.home))
    return {"Authorization": f"Bearer {created.stdout.strip()}"}


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (("users", "add", "x", "--role", "boss", "--password-stdin"), "long enough\n", "unknown role 'boss'"),
        (("users", "add", "x", "--role", "admin"), "", "--password-stdin"),
        (("users", "add", "x", "--password-stdin"), "short\n", "at least 8 characters"),
        (("users", "add", "bad name!", "--password-stdin"), "long enough\n", "name:"),
        (("users", "rm", "nobody"), None, "no user named 'nobody'"),
        (("tokens", "create", "--user", "nobody"), None, "no user named 'nobody'"),
        (("tokens", "revoke", "999"), None, "no token with id 999"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, args: tuple[str, ...], stdin: str | None, message: str) -> None:
    result = cli(*args, "--home", str(tmp_path / "home"), stdin=stdin)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("mieruka: ") and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_last_admin_stays(server: ServerProcess) -> None:
    result = cli("users", "rm", "ada", "--home", str(server.home))
    assert result.returncode == 1 and "last admin" in result.stderr


def test_serving_the_network_without_users_is_refused(tmp_path: Path) -> None:
    result = cli(
        "run", "tests/jobs.py:app", "--host", "0.0.0.0", "--port", str(free_port()), "--home", str(tmp_path / "home")
    )
    assert result.returncode == 1
    assert "mieruka users add NAME --role admin" in result.stderr and "Traceback" not in result.stderr


def test_secure_cookie_behind_an_https_proxy(server: ServerProcess) -> None:
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    with httpx.Client(base_url=server.url, headers=proxy) as client:
        page = client.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        cookie = page.headers["set-cookie"]
        assert "Secure" in cookie  # the login form's cookie too
        # httpx keeps Secure cookies for https: hand it back as the browser behind the proxy would.
        client.cookies.clear()
        response = client.post(
            "/login",
            data={"csrf_token": token.group(1), "name": "ada", "password": PASSWORD},
            headers={"Cookie": cookie.split(";", 1)[0]},
        )
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("mieruka_session="))
        assert "Secure" in cookie and "HttpOnly" in cookie
    entries = httpx.get(f"{server.url}/api/audit?action=login&actor=ada", headers=_admin(server)).json()["entries"]
    assert entries[0]["address"] == "198.51.100.7"  # the proxy's client, not the proxy


def test_login_in_a_browser_and_every_page_works_under_the_csp(browser: Browser, server: ServerProcess) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{server.url}/jobs")
    page.wait_for_url("**/login?next=*")
    page.locator('[name="name"]').fill("ada")
    page.locator('[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/jobs")
    assert page.locator("#me").text_content() == "ada"
    assert page.locator('[data-field="online-count"]').text_content() == "1"
    # A form post (CSRF field) and an htmx post (CSRF header) both go through.
    page.goto(f"{server.url}/tasks/add")
    page.locator('[name="a"]').fill("40")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/jobs/*")
    page.locator('#job-panel [data-field="status"]', has_text="succeeded").wait_for(timeout=UI_WAIT)
    page.goto(f"{server.url}/tasks/quick_hello")
    page.locator('[name="name"]').fill("Ada")
    page.get_by_role("button", name="Run").click()
    page.locator("#quick-result .result", has_text="Hello, Ada!").wait_for(timeout=UI_WAIT)
    for path in ("/", "/jobs", "/workers", "/account", "/users", "/audit", "/presence"):
        page.goto(f"{server.url}{path}")
        page.wait_for_load_state("load")
    page.goto(f"{server.url}/docs")
    page.get_by_text("Submit: Add two numbers", exact=False).first.wait_for(timeout=UI_WAIT)
    # "Try it out" with the browser's session: Swagger UI sends the CSRF header (static/docs.js).
    page.get_by_text("/api/tasks/add/jobs", exact=True).first.click()
    page.get_by_role("button", name="Try it out").first.click()
    page.locator("textarea.body-param__text").first.fill('{"a": 40}')
    page.get_by_role("button", name="Execute").first.click()
    page.locator(".response .response-col_status").filter(has_text="202").first.wait_for(timeout=UI_WAIT)
    page.goto(f"{server.url}/redoc")
    page.locator("h2", has_text="Submit: Add two numbers").first.wait_for(timeout=30000)
    page.goto(f"{server.url}/audit?action=job.submit")
    assert page.locator("#audit tbody tr").count() >= 2
    # What was done, on a real server: the form's task and parameters, the quick run's outcome.
    quick = page.locator("#audit tbody tr", has_text="quick_hello").first
    assert 'name="Ada"' in quick.inner_text() and "succeeded" in quick.inner_text()
    # The Swagger UI's submission (other tests of this module may have submitted `add` before it).
    tried = page.locator("#audit tbody tr", has_text="a=40")
    assert tried.count() >= 1 and "add" in tried.first.inner_text(), tried.all_inner_texts()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    # A page whose session ends meanwhile (here: a new password) sends the reader to the login page.
    page.locator('[name="name"]').fill("ada")
    page.locator('[name="password"]').fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{server.url}/")
    seen = list(problems)  # what follows logs the deliberate 401 to the console
    assert (
        cli("users", "passwd", "ada", "--password-stdin", "--home", str(server.home), stdin=PASSWORD + "\n").returncode
        == 0
    )
    page.evaluate("htmx.ajax('GET', document.getElementById('presence').getAttribute('hx-get'), '#presence')")
    page.wait_for_url("**/login?next=%2F")
    page.close()
    violations = [p for p in problems if "Content Security Policy" in p or "Content-Security-Policy" in p]
    assert violations == [], violations
    assert seen == [], seen
    assert outside == []


def test_cli_client_commands_send_a_token(server: ServerProcess) -> None:
    refused = cli("submit", "add", "a=1", "--url", server.url)
    assert refused.returncode == 1 and "MIERUKA_TOKEN" in refused.stderr and "Traceback" not in refused.stderr
    token = _admin(server)["Authorization"].split()[1]
    done = cli("submit", "add", "a=40", "--wait", "--url", server.url, "--token", token)
    assert done.returncode == 0 and '"result": 42' in done.stdout
    listed = cli("jobs", "ls", "--url", server.url, "--token", token)
    assert listed.returncode == 0 and "add" in listed.stdout
