"""A proxy that authenticates (IIS Windows authentication, nginx auth_request) names the user in
trusted_user_header, on a real server process: believed from the trusted proxy's address only
(this machine's outward address here), ignored from any other (the loopback address), the user
made at first sight as a 'proxy' user with trusted_user_role, DOMAIN\\user stripped, a local
user's name refused, cross-site posts refused."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerProcess, mieruka_cli, need_service, shared_server

HEADER = "X-Remote-User"
PASSWORD = "local admin password"


def outward_address() -> str | None:
    """This machine's address on its network (no packet is sent), None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
        except OSError:
            return None
        found = str(sock.getsockname()[0])
    return None if found.startswith("127.") or found == "0.0.0.0" else found


@pytest.fixture(scope="module")
def proxy() -> str:
    found = outward_address()
    if found is None:
        need_service("a network address besides loopback (the trusted proxy's)")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, proxy: str
) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("trusted-header") / "home"
    added = mieruka_cli(home, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    env = {
        "MIERUKA_HOST": "0.0.0.0",
        "MIERUKA_TRUSTED_PROXIES": proxy,
        "MIERUKA_TRUSTED_USER_HEADER": HEADER,
        "MIERUKA_TRUSTED_USER_ROLE": "operator",
    }
    with shared_server(ServerProcess("tests/jobs.py:app", home, "--workers", "1", env=env), request) as proc:
        yield proc


def via_proxy(served: ServerProcess, proxy: str) -> str:
    return f"http://{proxy}:{served.port}"


def admin(served: ServerProcess) -> dict[str, str]:
    created = mieruka_cli(served.home, "tokens", "create", "--user", "root")
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {created.stdout.strip()}"}


def test_the_header_is_believed_from_the_trusted_proxy(served: ServerProcess, proxy: str) -> None:
    me = httpx.get(f"{via_proxy(served, proxy)}/api/me", headers={HEADER: "EXAMPLE\\olga"})
    assert me.status_code == 200, me.text
    assert (me.json()["name"], me.json()["role"], me.json()["via"]) == ("olga", "operator", "proxy")
    again = httpx.get(f"{via_proxy(served, proxy)}/api/me", headers={HEADER: "olga@EXAMPLE.ORG"})
    assert again.json()["name"] == "olga"
    users = {u["name"]: u for u in httpx.get(f"{served.url}/api/users", headers=admin(served)).json()}
    assert users["olga"]["source"] == "proxy" and users["olga"]["role"] == "operator"
    assert not users["olga"]["has_password"]
    online = httpx.get(f"{served.url}/api/presence", headers=admin(served)).json()["online"]
    assert "olga" in [entry["user"] for entry in online]  # seen like a session's user


def test_the_header_is_ignored_from_any_other_address(served: ServerProcess) -> None:
    for name in ("olga", "root", "EXAMPLE\\root"):
        refused = httpx.get(f"{served.url}/api/me", headers={HEADER: name})  # from 127.0.0.1: not the proxy
        assert refused.status_code == 401, (name, refused.text)
    forged = httpx.get(f"{served.url}/api/me", headers={HEADER: "root", "X-Forwarded-For": "192.0.2.2"})
    assert forged.status_code == 401
    users = [u["name"] for u in httpx.get(f"{served.url}/api/users", headers=admin(served)).json()]
    assert "EXAMPLE\\root" not in users and users.count("root") == 1


def test_the_proxy_client_address_is_audited(served: ServerProcess, proxy: str) -> None:
    headers = {HEADER: "pavel", "X-Forwarded-For": "198.51.100.9"}
    job = httpx.post(f"{via_proxy(served, proxy)}/api/tasks/add/jobs", json={"a": 1, "b": 2}, headers=headers)
    assert job.status_code == 202, job.text
    assert job.json()["owner"] == "pavel"
    entries = httpx.get(f"{served.url}/api/audit?actor=pavel", headers=admin(served)).json()["entries"]
    assert entries and entries[0]["address"] == "198.51.100.9"


def test_a_local_or_bad_name_from_the_proxy_is_refused(served: ServerProcess, proxy: str) -> None:
    for name in ("root", "EXAMPLE\\root", "bad name!", "(*)", "", "EXAMPLE\\"):  # empty: anonymous
        refused = httpx.get(f"{via_proxy(served, proxy)}/api/me", headers={HEADER: name})
        assert refused.status_code == 401, (name, refused.text)
    assert "the proxy names root, a local user: refused" in served.output()


def test_cross_site_posts_of_proxy_users_are_refused(served: ServerProcess, proxy: str) -> None:
    base = via_proxy(served, proxy)
    cross = httpx.post(
        f"{base}/api/tasks/add/jobs", json={"a": 1, "b": 2}, headers={HEADER: "olga", "Origin": "https://evil.example"}
    )
    assert cross.status_code == 403 and "cross-site" in cross.text
    same = httpx.post(f"{base}/api/tasks/add/jobs", json={"a": 1, "b": 2}, headers={HEADER: "olga", "Origin": base})
    assert same.status_code == 202, same.text
