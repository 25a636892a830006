"""A server with no users trusts its own machine, and nothing else: DNS rebinding (another site's
name pointed at 127.0.0.1), requests from another machine or through a Unix socket (whichever ASGI
server runs the app), and creating the first user over HTTP are all refused. Replayed against real
servers: `mieruka run`, and uvicorn serving `app.asgi()` on a Unix socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TESTS, ServerProcess, running_server

PASSWORD = "a long password"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("open") / "home", "--workers", "1") as server:
        yield server


def test_a_rebound_name_reaches_nothing(open_server: ServerProcess) -> None:
    port = open_server.port
    rebound = {"Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"}
    with httpx.Client(base_url=open_server.url, timeout=30) as http:
        for method, url, body in (
            ("GET", "/api/jobs", None),
            ("GET", "/api/me", None),
            ("POST", "/api/tasks/add/jobs", {"a": 1}),
            ("POST", "/api/users", {"name": "mallory", "role": "admin", "password": PASSWORD}),
            ("GET", "/", None),
            ("GET", "/static/mieruka.css", None),
        ):
            answer = http.request(method, url, json=body, headers=rebound)
            assert answer.status_code == 400, (method, url, answer.text)
            assert "allowed_hosts" in answer.text
        assert http.get("/api/jobs?limit=1").json()["jobs"] == []  # nothing was queued
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
            assert http.get("/api/me", headers={"Host": host}).json()["via"] == "local", host


def test_the_first_user_is_not_made_over_http(open_server: ServerProcess) -> None:
    same_site = {"Origin": open_server.url}
    with httpx.Client(base_url=open_server.url, timeout=30) as http:
        refused = http.post(
            "/api/users", json={"name": "mallory", "role": "admin", "password": PASSWORD}, headers=same_site
        )
        assert refused.status_code == 403 and "mieruka users add" in refused.json()["error"]["message"]
        page = http.get("/users")
        assert page.status_code == 200 and "mieruka users add NAME --role admin" in page.text
        assert 'action="/users"' not in page.text  # no form that could only fail
        assert http.get("/api/users").json() == []


def test_another_machine_is_not_the_local_admin(tmp_path: Path) -> None:
    """The refusal is the app's own: whichever server runs `app.asgi()`, a request that did not come
    from this machine finds no admin."""
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path / "home"), workers=1)
    try:
        for client, base in (
            (("203.0.113.9", 5000), "http://127.0.0.1:8000"),
            (("127.0.0.1", 5000), "http://10.1.2.3:8000"),
        ):
            with TestClient(app.asgi(), base_url=base, client=client) as http:
                answer = http.get("/api/jobs", headers={"Host": "127.0.0.1:8000"})
                assert answer.status_code == 401, (client, base)
                assert "mieruka users add" in answer.json()["error"]["message"]
    finally:
        app._settings = None


def test_a_unix_socket_behind_a_proxy_is_not_trusted(tmp_path: Path) -> None:
    """uvicorn on a Unix socket (as behind nginx): no user means no entry, whatever the request says."""
    socket_path = tmp_path / "mieruka.sock"
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), "MIERUKA_HOME": str(tmp_path / "home")}
    log = (tmp_path / "uvicorn.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.jobs:app.asgi", "--uds", str(socket_path)],
        cwd=TESTS.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(socket_path):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
            time.sleep(0.1)
        transport = httpx.HTTPTransport(uds=str(socket_path))
        with httpx.Client(transport=transport, base_url="http://127.0.0.1", timeout=30) as http:
            assert http.get("/healthz").status_code == 200
            answer = http.post("/api/tasks/add/jobs", json={"a": 1})
            assert answer.status_code == 401 and "mieruka users add" in answer.text
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def test_allowed_hosts(tmp_path: Path) -> None:
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path / "home"), workers=1, allowed_hosts="mieruka.example.org, .lab.example")
    try:
        with TestClient(app.asgi()) as http:
            app.auth.accounts.add_user("ada", "admin", PASSWORD)
            token = {"Authorization": f"Bearer {app.auth.accounts.create_token('ada', 't')[1]}"}
            for host, status in (
                ("mieruka.example.org", 200),
                ("MIERUKA.example.org:443", 200),
                ("ward.lab.example", 200),
                ("evil.example", 400),
                ("lab.example.evil", 400),
                ("127.0.0.1:8000", 400),
            ):
                assert http.get("/api/me", headers={"Host": host, **token}).status_code == status, host
        app._settings = None
        app.configure(home=str(tmp_path / "home"), workers=1)
        with TestClient(app.asgi()) as http:  # users exist, no list: any name (a login is needed anyway)
            assert http.get("/api/me", headers={"Host": "intranet.example", **token}).status_code == 200
    finally:
        app._settings = None
