"""OpenID Connect single sign-on against a real OpenID provider (node-oidc-provider, tests/oidc_provider.py)
and a real server: the login page's buttons, a whole sign-in in Chromium (the provider's own login and
consent forms filled in), groups to roles, every refusal as a page in words (a wrong state, a replayed
code, refused consent, a provider that does not answer, nobody's groups), ID tokens that must be refused
(another audience, another sign-in's nonce, expired, signed by a key the provider does not publish), and
a logout that ends the provider's session too."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode, urljoin, urlsplit

import httpx
import pytest

import mieruka
from mieruka.auth.oidc import Client, Pending, SignInFailed
from mieruka.auth.oidc_providers import Provider, parse_providers
from mieruka.core.access import Role
from mieruka.errors import ConfigError
from tests.conftest import TESTS, ServerProcess, attribute_of, free_port, open_page, shared_server, text_of
from tests.oidc_provider import OidcProvider

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

SECRET = "mieruka's client secret"
OTHER_SECRET = "another application's secret"
NOWHERE = "http://127.0.0.1:9/callback"  # the other client's redirect URI: never followed
PASSWORD = "a long password"


@dataclass
class Sso:
    server: ServerProcess
    provider: OidcProvider
    gone_port: int
    opened: list[httpx.Client]

    def browser(self) -> httpx.Client:
        """A cookie-keeping client like a browser's, closed after the test."""
        http = httpx.Client(timeout=30, follow_redirects=False)
        self.opened.append(http)
        return http

    @property
    def callback(self) -> str:
        return f"{self.server.url}/login/oidc/local/callback"


def local_admin(home: Path) -> None:
    """ada, a local admin with a password, in a new server home."""
    setup = mieruka.App("setup", home=str(home))
    setup.auth.db.migrate()
    setup.auth.accounts.add_user("ada", "admin", PASSWORD)
    setup.stop()


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Sso]:
    """A server with a local admin (ada) and two providers: "local", a real node-oidc-provider, and
    "gone", whose issuer nobody answers at."""
    folder = tmp_path_factory.mktemp("oidc")
    home = folder / "home"
    local_admin(home)
    provider = OidcProvider(folder)
    gone_port = free_port()
    providers = [
        {
            "id": "local",
            "name": "Local ID",
            "issuer": provider.issuer,
            "client_id": "mieruka",
            "client_secret": SECRET,
            "scopes": "openid profile email groups",
        },
        {"id": "gone", "name": "Gone ID", "issuer": f"http://127.0.0.1:{gone_port}", "client_id": "x"},
    ]
    env = {
        "MIERUKA_OIDC_PROVIDERS": json.dumps(providers),
        "MIERUKA_OIDC_ROLES": json.dumps({"lab-admins": "admin", "lab": "operator"}),
    }
    proc = ServerProcess("tests/directory_app.py:app", home, env=env)
    provider.add_client("mieruka", SECRET, [f"{proc.url}/login/oidc/local/callback"], [f"{proc.url}/login"])
    provider.add_client("other", OTHER_SECRET, [NOWHERE])
    provider.add_client("public", "", [NOWHERE], auth="none")
    provider.add_client("poster", OTHER_SECRET, [NOWHERE], auth="client_secret_post")
    provider.add_user("alice", ["lab-admins", "lab"])
    provider.add_user("bob", ["lab", "lab-ops"])
    provider.add_user("dave", ["lab"])
    provider.add_user("carol", ["visitors"])
    provider.add_user("ada", ["lab"])  # a local user's name
    try:
        provider.start()
        with shared_server(proc, request) as server:
            yield Sso(server, provider, gone_port, [])
    finally:
        provider.stop()
        if request.session.testsfailed:
            print(provider.output())


@pytest.fixture(autouse=True)
def close_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "sso" in request.fixturenames:
        opened = request.getfixturevalue("sso").opened
        while opened:
            opened.pop().close()


# -- driving the provider's forms without a browser ---------------------------------------------------
def through_provider(http: httpx.Client, url: str, user: str, stop_at: str, consent: bool = True) -> str:
    """Follow redirects from `url`, filling in the provider's login (as `user`) and consent forms,
    until a redirect leads to `stop_at`; that URL (not followed)."""
    for _ in range(30):
        if url.startswith(stop_at):
            return url
        answer = http.get(url)
        if answer.is_redirect:
            url = urljoin(url, answer.headers["location"])
            continue
        assert answer.status_code == 200, (url, answer.status_code, answer.text[:2000])
        action = re.search(r'<form[^>]*action="([^"]+)"', answer.text)
        assert action, answer.text[:2000]
        submit = urljoin(url, action.group(1).replace("&amp;", "&"))
        if 'value="login"' in answer.text:
            answer = http.post(submit, data={"prompt": "login", "login": user, "password": "any password"})
        elif not consent:
            abort = re.search(r'href="([^"]+/abort)"', answer.text)
            assert abort, answer.text[:2000]
            answer = http.get(urljoin(url, abort.group(1)))
        else:
            answer = http.post(submit, data={"prompt": "consent"})
        assert answer.is_redirect, (answer.status_code, answer.text[:2000])
        url = urljoin(submit, answer.headers["location"])
    raise AssertionError(f"never came back to {stop_at}")


def begin(sso: Sso, user: str, consent: bool = True) -> tuple[httpx.Client, str]:
    """A browser-like client that began signing in at the server and signed in at the provider; the
    callback URL the provider sent it back to (not yet visited)."""
    http = sso.browser()
    url = through_provider(http, f"{sso.server.url}/login/oidc/local", user, sso.callback, consent)
    return http, url


def signed_in(sso: Sso, user: str) -> httpx.Client:
    http, url = begin(sso, user)
    done = http.get(url)
    assert done.status_code == 303 and done.headers["location"] == "/", (done.status_code, done.text[:2000])
    return http


def me(sso: Sso, http: httpx.Client) -> httpx.Response:
    return http.get(f"{sso.server.url}/api/me")


def message(page: httpx.Response) -> str:
    found = re.search(r'id="sso-message">([^<]*)<', page.text)
    assert found, page.text[:3000]
    return found.group(1).replace("&#39;", "'")


def real_id_token(
    provider: OidcProvider, client_id: str, secret: str, redirect_uri: str, nonce: str, user: str = "bob"
) -> str:
    """An ID token the provider issues to `client_id` for `user`, by the authorization code flow."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": redirect_uri,
        "scope": "openid profile",
        "state": "s",
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    with httpx.Client(timeout=30, follow_redirects=False) as http:
        back = through_provider(http, f"{provider.issuer}/auth?{urlencode(query)}", user, redirect_uri)
        code = parse_qs(urlsplit(back).query)["code"][0]
        tokens = http.post(
            f"{provider.issuer}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
            auth=(client_id, secret),
        )
    assert tokens.status_code == 200, tokens.text
    token: str = tokens.json()["id_token"]
    return token


def relying_party(sso: Sso) -> tuple[Client, Provider]:
    providers = parse_providers(
        json.dumps([{"id": "local", "issuer": sso.provider.issuer, "client_id": "mieruka", "client_secret": SECRET}]),
        roles='{"lab": "operator"}',
    )
    return Client(providers), providers[0]


# -- the login page and the whole flow -----------------------------------------------------------------
def test_the_login_page_shows_a_button_per_provider(sso: Sso) -> None:
    page = httpx.get(f"{sso.server.url}/login?next=/jobs")
    assert page.status_code == 200
    assert "Sign in with Local ID" in page.text and "Sign in with Gone ID" in page.text
    assert 'href="/login/oidc/local?next=/jobs"' in page.text
    assert 'name="password"' in page.text  # local accounts (the break-glass admin) still log in


def test_a_whole_sign_in_in_chromium(sso: Sso, browser: Browser) -> None:
    outside: list[str] = []
    page = open_page(browser, sso.server, outside)
    page.unroute("**/*")
    ours = {urlsplit(sso.server.url).netloc, urlsplit(sso.provider.issuer).netloc}

    def guard(route: Route) -> None:  # the provider is another site on this machine; nothing else
        if urlsplit(route.request.url).netloc in ours:
            route.continue_()
            return
        if route.request.frame.url.startswith(sso.server.url):
            outside.append(route.request.url)  # a page of ours asked for it (the provider's may: fonts)
        route.abort()

    page.route("**/*", guard)
    page.goto(f"{sso.server.url}/login?next=/jobs")
    page.get_by_role("button", name="Sign in with Local ID").click()
    page.wait_for_url(f"{sso.provider.issuer}/interaction/**")
    page.locator("input[name=login]").fill("alice")
    page.locator("input[name=password]").fill("whatever she types")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent
    page.wait_for_url(f"{sso.server.url}/jobs")
    who = page.evaluate("fetch('/api/me').then(r => r.json())")
    assert who["name"] == "alice" and who["role"] == "admin" and who["via"] == "session"
    cookies = {c["name"]: c for c in page.context.cookies(sso.server.url)}
    assert cookies["mieruka_session"]["httpOnly"] and "mieruka_oidc" not in cookies
    page.goto(f"{sso.server.url}/users")  # the Users page says where she comes from, and her groups
    source = page.locator("tr[data-user=alice] td[data-field=source]")
    assert text_of(source).startswith("oidc") and attribute_of(source, "title") == "groups: lab, lab-admins"
    # logging out ends the provider's session too: it asks, then sends the browser to the login page
    page.goto(f"{sso.server.url}/account")
    page.locator("form[action$='/logout'] button").first.click()
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(f"{sso.server.url}/login")
    assert page.evaluate("fetch('/api/me').then(r => r.status)") == 401
    page.get_by_role("button", name="Sign in with Local ID").click()
    page.wait_for_url(f"{sso.provider.issuer}/interaction/**")  # asked to sign in again
    assert page.locator("input[name=login]").is_visible()
    page.close()
    assert not outside, outside


def test_refused_consent_in_chromium_is_a_page_with_a_way_back(sso: Sso, browser: Browser) -> None:
    page = browser.new_page()
    page.goto(f"{sso.server.url}/login")
    page.get_by_role("button", name="Sign in with Local ID").click()
    page.locator("input[name=login]").fill("bob")
    page.locator("input[name=password]").fill("x")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("link", name="[ Cancel ]").click()  # the provider's consent page
    page.wait_for_url(f"{sso.server.url}/login/oidc/local/callback?**")
    assert "consent was refused" in text_of(page.locator("#sso-message"))
    assert page.evaluate("fetch('/api/me').then(r => r.status)") == 401
    page.locator("#sso-retry").click()  # straight to the provider's consent: its session is still there
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso.server.url}/")
    assert page.evaluate("fetch('/api/me').then(r => r.json())")["name"] == "bob"
    page.close()


def test_someone_refused_may_sign_in_as_someone_else_in_chromium(sso: Sso, browser: Browser) -> None:
    """carol is signed in at the provider but in no admitted group: trying again signs carol in
    again (the provider keeps her session), so the page also offers another account (prompt=login)."""
    page = browser.new_page()
    page.goto(f"{sso.server.url}/login")
    page.get_by_role("button", name="Sign in with Local ID").click()
    page.locator("input[name=login]").fill("carol")
    page.locator("input[name=password]").fill("x")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso.server.url}/login/oidc/local/callback?**")
    assert "as carol, but you are in none of the groups" in text_of(page.locator("#sso-message"))
    page.locator("#sso-retry").click()  # the provider's session: carol again, without being asked
    page.wait_for_url(f"{sso.server.url}/login/oidc/local/callback?**")
    assert "as carol" in text_of(page.locator("#sso-message"))
    page.locator("#sso-someone-else").click()
    page.wait_for_url(f"{sso.provider.issuer}/interaction/**")
    page.locator("input[name=login]").fill("bob")  # asked who, despite carol's session
    page.locator("input[name=password]").fill("x")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{sso.server.url}/")
    assert page.evaluate("fetch('/api/me').then(r => r.json())")["name"] == "bob"
    page.close()


def test_groups_give_the_role_and_the_audit_log_says_how(sso: Sso) -> None:
    bob = signed_in(sso, "bob")
    assert me(sso, bob).json()["role"] == "operator"
    assert bob.get(f"{sso.server.url}/api/users").status_code == 403
    alice = signed_in(sso, "alice")  # in lab-admins and lab: the higher role wins
    listed = {u["name"]: u for u in alice.get(f"{sso.server.url}/api/users").json()}
    assert listed["bob"]["role"] == "operator" and listed["alice"]["role"] == "admin"
    entries = alice.get(f"{sso.server.url}/api/audit", params={"actor": "bob", "action": "login"}).json()
    detail = entries["entries"][0]["detail"]
    assert detail["via"] == "oidc" and detail["provider"] == "local" and "lab" in detail["groups"]


def test_a_group_on_an_allow_list_admits_its_members(sso: Sso) -> None:
    bob, dave = signed_in(sso, "bob"), signed_in(sso, "dave")  # operators both; bob is in lab-ops
    assert bob.get(f"{sso.server.url}/api/tasks/calibrate").status_code == 200
    assert dave.get(f"{sso.server.url}/api/tasks/calibrate").status_code == 403
    csrf = me(sso, bob).json()["csrf_token"]
    run = bob.post(f"{sso.server.url}/api/tasks/calibrate/jobs", json={"level": 2}, headers={"X-CSRF-Token": csrf})
    assert run.status_code == 202 and run.json()["owner"] == "bob"


def test_the_role_follows_the_provider_and_one_no_group_admits_is_cut_off(sso: Sso) -> None:
    url = sso.server.url
    sso.provider.add_user("erin", ["lab"])
    sso.provider.save()  # the running provider reads its users at each sign-in
    first = signed_in(sso, "erin")
    assert me(sso, first).json()["role"] == "operator"
    csrf = me(sso, first).json()["csrf_token"]
    made = first.post(f"{url}/api/tokens", json={"name": "nightly"}, headers={"X-CSRF-Token": csrf})
    assert made.status_code == 201
    bearer = {"Authorization": f"Bearer {made.json()['token']}"}
    sso.provider.users["erin"]["groups"] = ["lab-admins"]
    sso.provider.save()
    second = signed_in(sso, "erin")
    assert me(sso, second).json()["role"] == "admin" and me(sso, first).json()["role"] == "admin"
    changed = second.get(f"{url}/api/audit", params={"action": "user.role", "target": "user:erin"}).json()
    assert changed["entries"][0]["actor"] == "oidc"
    assert changed["entries"][0]["detail"] == {"role": "admin", "was": "operator", "source": "oidc"}
    sso.provider.users["erin"]["groups"] = ["visitors"]
    sso.provider.save()
    http, callback = begin(sso, "erin")
    refused = http.get(callback)
    assert refused.status_code == 403 and "none of the groups this server admits" in message(refused)
    # what she had is gone at once: both sessions, her token
    assert me(sso, first).status_code == 401 and me(sso, second).status_code == 401
    assert httpx.get(f"{url}/api/me", headers=bearer).status_code == 401
    cut = signed_in(sso, "alice").get(f"{url}/api/audit", params={"action": "user.cut_off"}).json()["entries"]
    assert cut[0]["target"] == "user:erin" and cut[0]["detail"]["sessions"] == 2


def test_a_password_login_after_single_sign_on_logs_out_here_only(sso: Sso) -> None:
    http = signed_in(sso, "bob")
    form = http.get(f"{sso.server.url}/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:2000]
    fields = {"csrf_token": token.group(1), "name": "ada", "password": PASSWORD}
    assert http.post(f"{sso.server.url}/login", data=fields).status_code == 303
    who = me(sso, http).json()
    assert who["name"] == "ada"
    out = http.post(f"{sso.server.url}/logout", headers={"X-CSRF-Token": who["csrf_token"]})
    assert out.status_code == 303 and out.headers["location"] == "/login"  # not on to the provider
    assert "mieruka_sso" not in http.cookies


def test_another_account_of_the_provider_cannot_take_a_name_over(sso: Sso) -> None:
    """The provider's `sub` of a user's account is kept: a second account naming itself "frank" is
    refused, and so is frank's own account once it calls itself something else."""
    sso.provider.add_user("frank", ["lab"])
    sso.provider.add_user("frank-2", ["lab-admins"], preferred_username="frank")  # sub frank-2
    sso.provider.save()
    assert me(sso, signed_in(sso, "frank")).json()["role"] == "operator"
    http, callback = begin(sso, "frank-2")
    page = http.get(callback)
    assert page.status_code == 403 and "belongs to another account at Local ID" in message(page)
    assert me(sso, http).status_code == 401
    sso.provider.users["frank"]["preferred_username"] = "franklin"
    sso.provider.save()
    http, callback = begin(sso, "frank")
    page = http.get(callback)
    assert page.status_code == 403 and "signed in here as 'frank'; now it calls itself 'franklin'" in message(page)
    alice = signed_in(sso, "alice")  # an admin removes frank: his account starts afresh as franklin
    csrf = me(sso, alice).json()["csrf_token"]
    assert alice.delete(f"{sso.server.url}/api/users/frank", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert me(sso, signed_in(sso, "frank")).json()["name"] == "franklin"


def test_someone_in_no_admitted_group_is_refused_in_words(sso: Sso) -> None:
    http, url = begin(sso, "carol")
    page = http.get(url)
    assert page.status_code == 403 and "none of the groups this server admits" in message(page)
    assert me(sso, http).status_code == 401
    alice = signed_in(sso, "alice")
    failed = alice.get(f"{sso.server.url}/api/audit", params={"actor": "carol", "action": "sso.failed"}).json()
    assert failed["entries"][0]["detail"] == {"reason": "sso_no_role"}
    assert failed["entries"][0]["target"] == "oidc:local"
    # no password-login failure: twenty of these would lock this address out of the password form
    assert not alice.get(f"{sso.server.url}/api/audit", params={"action": "login.failed"}).json()["entries"]


def test_a_local_users_name_is_not_taken_over(sso: Sso) -> None:
    http, url = begin(sso, "ada")
    page = http.get(url)
    assert page.status_code == 403 and "belongs to a local user" in message(page)
    assert me(sso, http).status_code == 401


# -- refusals -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_the_way_back_stays_on_this_server(sso: Sso, target: str) -> None:
    http = sso.browser()
    start = f"{sso.server.url}/login/oidc/local?{urlencode({'next': target})}"
    done = http.get(through_provider(http, start, "bob", sso.callback))
    assert done.status_code == 303 and done.headers["location"] == "/"


def test_a_wrong_state_is_refused(sso: Sso) -> None:
    http, url = begin(sso, "bob")
    forged = re.sub(r"state=[^&]+", "state=forged", url)
    page = http.get(forged)
    assert page.status_code == 400 and "does not belong to the sign-in this browser started" in message(page)
    assert me(sso, http).status_code == 401
    # another browser cannot use this browser's answer either: it has no sign-in under way
    stranger = httpx.get(url)
    assert stranger.status_code == 400 and "no sign-in under way" in message(stranger)


def test_an_answer_naming_another_issuer_is_refused(sso: Sso) -> None:
    """RFC 9207: the provider names itself in its answer (iss); a mix-up names another."""
    http, url = begin(sso, "bob")
    assert "iss=" in url
    mixed = re.sub(r"iss=[^&]+", "iss=" + quote("https://evil.example", safe=""), url)
    page = http.get(mixed)
    assert page.status_code == 400 and "comes from 'https://evil.example', not from Local ID" in message(page)
    assert me(sso, http).status_code == 401


def test_a_replayed_code_is_refused(sso: Sso) -> None:
    http, url = begin(sso, "bob")
    pending = http.cookies["mieruka_oidc"]
    assert http.get(url).status_code == 303
    again = http.get(url)  # the pending sign-in was used up
    assert again.status_code == 400 and "no sign-in under way" in message(again)
    # with the pending cookie put back, the code reaches the provider, which refuses it the second time
    replay = sso.browser()
    replay.cookies.set("mieruka_oidc", pending, domain="127.0.0.1", path="/login/oidc")
    page = replay.get(url)
    assert page.status_code == 400 and "refused to complete the sign-in (invalid_grant" in message(page)
    assert me(sso, replay).status_code == 401


def test_refused_consent_is_said_in_words(sso: Sso) -> None:
    http, url = begin(sso, "bob", consent=False)
    assert "error=access_denied" in url
    page = http.get(url)
    assert page.status_code == 403 and "consent was refused" in message(page)
    assert 'id="sso-retry"' in page.text


def test_a_provider_that_does_not_answer_is_said_in_words(sso: Sso) -> None:
    page = httpx.get(f"{sso.server.url}/login/oidc/gone")
    assert page.status_code == 502 and "Gone ID cannot be reached right now" in message(page)
    unknown = httpx.get(f"{sso.server.url}/login/oidc/nobody")
    assert unknown.status_code == 404 and "no sign-in provider named 'nobody'" in message(unknown)
    callback = httpx.get(f"{sso.server.url}/login/oidc/local/callback?code=x&state=y")
    assert callback.status_code == 400 and "no sign-in under way" in message(callback)


def test_an_expired_pending_sign_in_is_refused(sso: Sso) -> None:
    client, provider = relying_party(sso)
    old = Pending.new("local", "/", now=time.time() - 3600)
    with pytest.raises(SignInFailed, match="took longer than 10 minutes"):
        client.finish(provider, old, {"state": old.state, "code": "x"}, f"{sso.server.url}/cb")
    client.close()


# -- ID tokens, verified against the provider's published keys ---------------------------------------------
@pytest.mark.parametrize(
    ("client_id", "secret", "token_auth"), [("public", "", "none"), ("poster", OTHER_SECRET, "client_secret_post")]
)
def test_public_clients_and_secrets_in_the_form(sso: Sso, client_id: str, secret: str, token_auth: str) -> None:
    """The whole flow in process for a public client (PKCE only) and for client_secret_post."""
    entry = {"id": "p", "name": "P", "issuer": sso.provider.issuer, "client_id": client_id, "token_auth": token_auth}
    [provider] = parse_providers(json.dumps([{**entry, "client_secret": secret}]), default_role="viewer")
    client = Client([provider])
    pending = Pending.new("p", "/")
    back = through_provider(sso.browser(), client.authorization_url(provider, pending, NOWHERE), "bob", NOWHERE)
    params = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    who = client.finish(provider, pending, params, NOWHERE)
    assert who.name == "bob" and who.subject == "bob" and who.role is Role.VIEWER
    with pytest.raises(SignInFailed, match=r"refused to complete the sign-in \(invalid_grant"):
        client.finish(provider, pending, params, NOWHERE)  # the code works once
    client.close()


def test_an_id_token_for_another_application_is_refused(sso: Sso) -> None:
    client, provider = relying_party(sso)
    theirs = real_id_token(sso.provider, "other", OTHER_SECRET, NOWHERE, nonce="n-1")
    with pytest.raises(SignInFailed, match=r"issued to another application \(aud\)"):
        client.verify(provider, theirs, "n-1")
    ours = real_id_token(sso.provider, "mieruka", SECRET, sso.callback, nonce="n-2")
    assert client.verify(provider, ours, "n-2")["sub"] == "bob"  # the same check passes our own
    client.close()


def test_an_id_token_of_another_sign_in_is_refused(sso: Sso) -> None:
    client, provider = relying_party(sso)
    token = real_id_token(sso.provider, "mieruka", SECRET, sso.callback, nonce="theirs")
    with pytest.raises(SignInFailed, match=r"belongs to another sign-in \(nonce\)"):
        client.verify(provider, token, "ours")
    client.close()


def test_an_expired_id_token_is_refused(sso: Sso) -> None:
    client, provider = relying_party(sso)
    now = int(time.time())
    claims: dict[str, Any] = {"iss": sso.provider.issuer, "aud": "mieruka", "sub": "bob", "nonce": "n"}
    expired = sso.provider.sign({**claims, "iat": now - 3600, "exp": now - 1800})
    with pytest.raises(SignInFailed, match="it has expired"):
        client.verify(provider, expired, "n")
    fresh = sso.provider.sign({**claims, "iat": now, "exp": now + 300})
    assert client.verify(provider, fresh, "n")["sub"] == "bob"
    late = sso.provider.sign({**claims, "iat": now, "exp": now + 300, "azp": "other"})
    with pytest.raises(SignInFailed, match=r"another application \(azp\)"):
        client.verify(provider, late, "n")
    client.close()


def test_tokens_in_other_algorithms_or_no_token_at_all_are_refused(sso: Sso) -> None:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    client, provider = relying_party(sso)
    now = int(time.time())
    claims = {"iss": sso.provider.issuer, "aud": "mieruka", "sub": "bob", "nonce": "n", "iat": now, "exp": now + 60}
    # the provider's public key used as an HMAC secret (algorithm confusion), and no signature at all
    public = json.dumps(sso.provider.key.as_dict(private=False))
    hs256 = jwt.encode({"alg": "HS256", "kid": sso.provider.key.kid}, claims, OctKey.import_key(public.encode()))
    unsigned = (
        ".".join(
            base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()
            for part in ({"alg": "none", "kid": sso.provider.key.kid}, claims)
        )
        + "."
    )
    for token in (hs256, unsigned, "", "a.b.c", "x" * 10_000, "\u00e9.\u00e9.\u00e9"):
        with pytest.raises(SignInFailed, match=f"The ID token from {provider.name} was refused"):
            client.verify(provider, token, "n")
    good = sso.provider.sign(claims)
    assert client.verify(provider, good, "n")["sub"] == "bob"
    client.close()


def test_a_subject_that_is_no_printable_ascii_text_is_refused(sso: Sso) -> None:
    """The subject names the account (auth/oidc_subjects.py): OpenID Connect's at most 255 ASCII
    characters; a NUL, which a database's text form would cut at, or a number, is refused."""
    client, provider = relying_party(sso)
    now = int(time.time())
    claims = {"iss": sso.provider.issuer, "aud": "mieruka", "nonce": "n", "iat": now, "exp": now + 60}
    for sub in ("bob\x00x", "bob\n", "b\u00f6b", "x" * 256, 7):
        token = sso.provider.sign({**claims, "sub": sub})
        with pytest.raises(SignInFailed, match=r"it names nobody \(sub\)"):
            client.verify(provider, token, "n")
    assert client.verify(provider, sso.provider.sign({**claims, "sub": "x" * 255}), "n")["sub"] == "x" * 255
    client.close()


def test_a_token_signed_by_an_unknown_key_is_refused(sso: Sso) -> None:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    client, provider = relying_party(sso)
    now = int(time.time())
    claims = {"iss": sso.provider.issuer, "aud": "mieruka", "sub": "bob", "nonce": "n", "iat": now, "exp": now + 60}
    stranger = RSAKey.generate_key(2048, private=True, auto_kid=True)
    forged = jwt.encode({"alg": "RS256", "kid": stranger.kid}, claims, stranger)
    with pytest.raises(SignInFailed, match="signed with a key the provider does not publish"):
        client.verify(provider, forged, "n")
    # the provider's own key id on a stranger's signature
    same_kid = jwt.encode({"alg": "RS256", "kid": sso.provider.key.kid}, claims, stranger)
    with pytest.raises(SignInFailed, match="its signature is wrong"):
        client.verify(provider, same_kid, "n")
    client.close()


def test_behind_a_path_prefix(tmp_path: Path) -> None:
    """--root-path /lab: the button, the redirect URI, the pending sign-in's cookie, the way back and
    the logout all carry the prefix."""
    local_admin(tmp_path / "home")  # not the open mode, which lets this machine in without a login
    provider = OidcProvider(tmp_path)
    entry = {"id": "p", "name": "P", "issuer": provider.issuer, "client_id": "lab", "client_secret": SECRET}
    env = {"MIERUKA_OIDC_PROVIDERS": json.dumps([entry]), "MIERUKA_OIDC_DEFAULT_ROLE": "viewer"}
    proc = ServerProcess("tests/directory_app.py:app", tmp_path / "home", "--root-path", "/lab", env=env)
    lab = f"{proc.url}/lab"
    provider.add_client("lab", SECRET, [f"{lab}/login/oidc/p/callback"], [f"{lab}/login"])
    provider.add_user("bob", ["anything"])
    try:
        provider.start()
        proc.wait_ready()
        with httpx.Client(timeout=30, follow_redirects=False) as http:
            assert 'href="/lab/login/oidc/p?next=/lab/jobs"' in http.get(f"{lab}/login?next=/lab/jobs").text
            back = through_provider(http, f"{lab}/login/oidc/p?next=/lab/jobs", "bob", f"{lab}/login/oidc/p/callback")
            assert [c.path for c in http.cookies.jar if c.name == "mieruka_oidc"] == ["/lab/login/oidc"]
            done = http.get(back)
            assert done.status_code == 303 and done.headers["location"] == "/lab/jobs"
            who = http.get(f"{lab}/api/me").json()
            assert who["name"] == "bob" and who["role"] == "viewer"
            out = http.post(f"{lab}/logout", headers={"X-CSRF-Token": who["csrf_token"]})
            assert out.status_code == 200, out.text
            assert "post_logout_redirect_uri=" + quote(f"{lab}/login", safe="") in out.text
            assert http.get(f"{lab}/api/me").status_code == 401
    finally:
        proc.stop()
        provider.stop()


def test_keys_the_provider_rotates_are_fetched_again(tmp_path: Path) -> None:
    """The relying party caches the provider's keys; a token signed with a new key fetches them again."""
    from joserfc.jwk import RSAKey

    rotating = OidcProvider(tmp_path)
    rotating.add_client("mieruka", SECRET, [NOWHERE])
    rotating.add_user("bob", ["lab"])
    old_key = rotating.key
    entry = {"id": "r", "issuer": rotating.issuer, "client_id": "mieruka", "client_secret": SECRET}
    [provider] = parse_providers(json.dumps([entry]), default_role="viewer")
    client = Client([provider])
    try:
        rotating.start()
        first = real_id_token(rotating, "mieruka", SECRET, NOWHERE, nonce="1")
        assert client.verify(provider, first, "1")["sub"] == "bob"  # the keys are cached now
        rotating.stop()
        rotating.key = RSAKey.generate_key(2048, private=True, auto_kid=True)
        rotating.extra_keys = [old_key]  # published beside the new one, as providers rotate
        rotating.start()
        second = real_id_token(rotating, "mieruka", SECRET, NOWHERE, nonce="2")
        assert client.verify(provider, second, "2")["sub"] == "bob"
        assert client.verify(provider, first, "1")["sub"] == "bob"  # the old key still counts while published
        from joserfc import jws

        assert jws.extract_compact(second.encode()).protected["kid"] == rotating.key.kid != old_key.kid
    finally:
        rotating.stop()
        client.close()


def test_a_provider_gone_between_leaving_and_coming_back_is_said_in_words(tmp_path: Path) -> None:
    leaving = OidcProvider(tmp_path)
    leaving.add_client("mieruka", SECRET, [NOWHERE])
    entry = {"id": "p", "name": "Leaving ID", "issuer": leaving.issuer, "client_id": "mieruka", "client_secret": SECRET}
    [provider] = parse_providers(json.dumps([entry]), default_role="viewer")
    client = Client([provider])
    pending = Pending.new("p", "/")
    try:
        leaving.start()
        assert client.authorization_url(provider, pending, NOWHERE).startswith(f"{leaving.issuer}/auth?")
    finally:
        leaving.stop()
    with pytest.raises(SignInFailed, match="Leaving ID cannot be reached right now: its token endpoint") as caught:
        client.finish(provider, pending, {"state": pending.state, "code": "x"}, NOWHERE)
    assert caught.value.status_code == 502
    client.close()


def test_a_provider_that_fails_is_not_asked_again_at_once() -> None:
    """While a provider is down, each click on its button does not wait for it again."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Failing) as failing:
        threading.Thread(target=failing.serve_forever, daemon=True).start()
        issuer = f"http://127.0.0.1:{failing.server_address[1]}"
        [provider] = parse_providers(json.dumps([{"id": "f", "name": "F", "issuer": issuer, "client_id": "c"}]))
        client = Client([provider])
        for _ in range(3):
            with pytest.raises(SignInFailed, match="its discovery document answered HTTP 503"):
                client.metadata(provider)
        failing.shutdown()
        client.close()
    assert asked == ["/.well-known/openid-configuration"]


# -- configuration ------------------------------------------------------------------------------------
def test_provider_settings_are_read_or_refused_with_reasons(tmp_path: Path) -> None:
    entry = {"id": "entra", "name": "Contoso", "issuer": "https://login.example/t/v2.0/", "client_id": "c"}
    [entra] = parse_providers(json.dumps([entry]), "upn, email", "roles", '{"Lab.Admins": "admin"}', "viewer")
    assert entra.issuer == "https://login.example/t/v2.0" and entra.token_auth == "none"
    assert entra.username_claims == ("upn", "email") and entra.groups_claim == "roles"
    assert entra.role_for(["Lab.Admins"]) is Role.ADMIN and entra.role_for([]) is Role.VIEWER
    [keycloak] = parse_providers(
        json.dumps([{**entry, "groups_claim": "realm_access.roles", "roles": {"x": "operator"}}]), default_role="viewer"
    )
    assert keycloak.role_for(["x"]) is Role.OPERATOR and keycloak.role_for(["y"]) is Role.VIEWER
    client = Client([keycloak])
    who = client.identity(keycloak, {"sub": "1", "email": "k@example.org", "realm_access": {"roles": ["x"]}})
    assert who.name == "k@example.org" and who.role is Role.OPERATOR and who.groups == ("x",)
    client.close()
    for bad, reason in (
        ("{", "not JSON"),
        ('{"id": "x"}', "a list of providers"),
        (json.dumps([{**entry, "id": "Bad Id"}]), "lower-case letters"),
        (json.dumps([{**entry, "issuer": "ftp://x"}]), "https:// URL"),
        (json.dumps([{**entry, "colour": "red"}]), "unknown keys colour"),
        (json.dumps([{**entry, "token_auth": "client_secret_post"}]), "needs a client_secret"),
        (json.dumps([entry, entry]), "same id"),
        (json.dumps([{**entry, "roles": {"lab": "boss"}}]), "unknown role 'boss'"),
        (json.dumps([{**entry, "roles": ["lab"]}]), "an object of group names to roles"),
    ):
        with pytest.raises(ConfigError, match=reason):
            parse_providers(bad)
    toml = tmp_path / "mieruka.toml"
    toml.write_text(
        'oidc_default_role = "viewer"\n[oidc_roles]\n"lab admins" = "admin"\n'
        '[[oidc_providers]]\nid = "g"\nissuer = "https://accounts.google.com"\nclient_id = "c"\n'
    )
    s = mieruka.Settings.load(config_file=toml, environ={})
    [google] = parse_providers(s.oidc_providers, roles=s.oidc_roles, default_role=s.oidc_default_role)
    assert google.id == "g" and google.role_for(["lab admins"]) is Role.ADMIN and google.role_for([]) is Role.VIEWER


def test_required_claims_and_unverified_addresses() -> None:
    entry = {"id": "google", "name": "Google", "issuer": "https://accounts.google.com", "client_id": "c"}
    [google] = parse_providers(
        json.dumps([{**entry, "required_claims": {"hd": "example.org"}}]), "email", default_role="viewer"
    )
    client = Client([google])
    claims = {"sub": "1", "email": "kim@example.org", "email_verified": True, "hd": "example.org"}
    assert client.identity(google, claims).name == "kim@example.org"
    for other, reason in (
        ({"hd": "elsewhere.example"}, "admits only its accounts with hd example.org"),
        ({"hd": None}, "admits only its accounts with hd example.org"),
        ({"email_verified": False}, "has not verified the address kim@example.org"),
    ):
        with pytest.raises(SignInFailed, match=reason) as refused:
            client.identity(google, {**claims, **other})
        assert refused.value.status_code == 403
    client.close()
    for bad, reason in (
        ({"hd": 3}, "a value or a list of values"),
        (["hd"], "an object of claims to values"),
        ({"tid": []}, "a value or a list of values"),
    ):
        with pytest.raises(ConfigError, match=reason):
            parse_providers(json.dumps([{**entry, "required_claims": bad}]))


def test_a_bad_provider_setting_stops_the_server_with_its_reason(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    env.update(PYTHONPATH=str(TESTS.parent), MIERUKA_OIDC_PROVIDERS='[{"id": "x", "issuer": "https://id.example"}]')
    run = subprocess.run(
        [sys.executable, "-m", "mieruka.cli", "run", "tests/directory_app.py:app", "--port", str(free_port())]
        + ["--home", str(tmp_path / "home")],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == "mieruka: oidc_providers[0]: client_id is required (a string)"
    assert "Traceback" not in run.stderr


def test_the_docs_example_is_read_as_it_says(tmp_path: Path) -> None:
    docs = (TESTS.parent / "docs" / "sso.md").read_text()
    example = re.search(r"```toml\n(.*?)```", docs, re.S)
    assert example, "docs/sso.md has a mieruka.toml example"
    (tmp_path / "mieruka.toml").write_text(example.group(1))
    s = mieruka.Settings.load(config_file=tmp_path / "mieruka.toml", environ={})
    [entra] = parse_providers(
        s.oidc_providers, s.oidc_username_claim, s.oidc_groups_claim, s.oidc_roles, s.oidc_default_role
    )
    assert entra.name == "Contoso (Microsoft)" and entra.token_auth == "client_secret_basic"
    assert entra.role_for(["5f0c...-group-object-id"]) is Role.ADMIN and entra.role_for(["lab"]) is Role.VIEWER


def test_a_pending_sign_in_cannot_be_altered() -> None:
    pending = Pending.new("local", "/jobs")
    read = Pending.read(pending.cookie())
    assert read == pending and read.state == pending.state and len(read.verifier) >= 43
    elsewhere = Pending.read(pending.cookie().replace(".L2pvYnM.", ".L2FkbWlu."))  # next: /jobs -> /admin
    assert elsewhere is not None and elsewhere.target == "/admin" and elsewhere.state != pending.state
    assert Pending.read("garbage") is None and Pending.read("a.b.c.d") is None
