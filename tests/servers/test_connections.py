"""Connection limits against real servers with real sockets: a request head or body that trickles or
stalls is cut, an event stream and a long poll are not, one address's connections are capped, and
X-Forwarded-For is believed only from a trusted proxy. The same limits on uvicorn's h11 protocol."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from mieruka import App
from mieruka.connections import BodyTimeout, Limits, protocol_class
from mieruka.errors import ConfigError
from mieruka.networks import trusted_networks
from mieruka.server import serve
from tests.conftest import ServerProcess, free_port, shared_server
from tests.conftest import cli as conftest_cli

HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # a request head but for its last empty line
PATIENCE = 20.0  # the longest any wait here may take: generous, only a broken server reaches it
FORWARDED = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}


# -- real sockets ---------------------------------------------------------------------------------
def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)


def seconds_until_closed(sock: socket.socket, since: float, trickle: bytes = b"", every: float = 0.25) -> float:
    """Seconds from `since` until the server closes `sock`, while we send `trickle` every `every` s."""
    while time.monotonic() - since < PATIENCE:
        if select.select([sock], [], [], every)[0]:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                return time.monotonic() - since
            assert not data, f"the server answered instead of closing: {data[:200]!r}"
            return time.monotonic() - since
        if trickle:
            try:
                sock.sendall(trickle)
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - since
    raise AssertionError(f"the connection was still open after {PATIENCE}s")


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def read_response(sock: socket.socket) -> bytes:
    """One whole response (with Content-Length) on a kept-alive connection; b"" if it was closed."""
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                return received
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
        return head + b"\r\n\r\n" + body
    except ConnectionResetError:
        return received


def refused(port: int) -> bool:
    """Whether a new connection is closed without an answer to a whole request."""
    sock = connect(port)
    try:
        sock.sendall(HEAD + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return True
    with sock:
        answer = read_response(sock)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 200"), answer
    return answer == b""


def admitted_and_held(port: int) -> socket.socket:
    """A new connection once the server has room for it (closed ones leave its count a moment after),
    proven by an answer, then held open by an unfinished request head."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        sock = connect(port)
        try:
            sock.sendall(HEAD + b"\r\n")
            if read_response(sock).startswith(b"HTTP/1.1 200"):
                sock.sendall(HEAD)
                return sock
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.close()
        time.sleep(0.05)
    raise AssertionError(f"no connection admitted in {PATIENCE}s")


# -- the scenarios, for any server ----------------------------------------------------------------
def check_slow_heads_are_cut(port: int, header_timeout: float) -> None:
    # Each time is taken before the server's head clock starts: not shorter than the time-out (but for
    # the timers' rounding to milliseconds).
    start = time.monotonic()
    with connect(port) as silent:  # says nothing at all
        assert seconds_until_closed(silent, start) >= header_timeout * 0.95
    start = time.monotonic()
    with connect(port) as slowloris:  # half a head, then a byte at a time
        slowloris.sendall(HEAD + b"X-Slow: ")
        assert seconds_until_closed(slowloris, start, trickle=b"a") >= header_timeout * 0.95
    with connect(port) as kept:  # a whole request, then the next one trickled on the same connection
        start = time.monotonic()
        kept.sendall(HEAD + b"\r\n")
        assert read_response(kept).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /hea")
        assert seconds_until_closed(kept, start, trickle=b"l") >= header_timeout * 0.95


def check_stalled_body_gets_408(port: int, path: str, headers: bytes = b"", chunked: bool = False) -> None:
    framing = b"Transfer-Encoding: chunked\r\n\r\nc\r\n" if chunked else b"Content-Length: 1000\r\n\r\n"
    with connect(port) as sock:
        sock.sendall(
            b"POST "
            + path.encode()
            + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + headers
            + b"Content-Type: application/json\r\n"
            + framing
            + b'{"a": 1, "b"'
        )
        answer = read_until_closed(sock)  # then the connection is closed
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b'"code": "request_timeout"' in answer and b"connection: close" in answer.lower()


def check_the_cap(port: int, cap: int) -> None:
    held = [admitted_and_held(port)]  # once connections closed before are counted out
    held += [connect(port) for _ in range(cap - 1)]
    for sock in held[1:]:
        sock.sendall(HEAD)
    assert refused(port)  # one over the cap
    for sock in held:  # the first ones still work
        sock.sendall(b"\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(HEAD)
    for sock in held[:2]:
        sock.close()
    held += [admitted_and_held(port), admitted_and_held(port)]  # closing frees slots
    assert refused(port)
    for sock in held[2:]:
        sock.close()


# -- a mieruka server with users, time-outs of 1 s --------------------------------------------------
def cli(*args: str, stdin: str | None = None) -> str:
    done = conftest_cli(*args, stdin=stdin)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def home_with_admin(home: Path) -> dict[str, str]:
    """A home whose admin "ada" has an API token: its Authorization header."""
    cli("users", "add", "ada", "--role", "admin", "--password-stdin", "--home", str(home), stdin="a long password\n")
    return {"Authorization": "Bearer " + cli("tokens", "create", "--user", "ada", "--home", str(home))}


class Served(NamedTuple):
    proc: ServerProcess
    auth: dict[str, str]


@pytest.fixture(scope="module")
def timed(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("timed") / "home"
    auth = home_with_admin(home)
    env = {"MIERUKA_HEADER_TIMEOUT": "1", "MIERUKA_BODY_TIMEOUT": "1", "MIERUKA_TRUSTED_PROXIES": ""}
    with shared_server(ServerProcess("tests/jobs.py:app", home, "--workers", "1", env=env), request) as proc:
        yield Served(proc, auth)


def test_a_request_head_that_never_completes_is_cut(timed: Served) -> None:
    check_slow_heads_are_cut(timed.proc.port, header_timeout=1)


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_a_stalled_body_is_answered_408(timed: Served, chunked: bool) -> None:
    bearer = f"Authorization: {timed.auth['Authorization']}\r\n".encode()
    check_stalled_body_gets_408(timed.proc.port, "/api/tasks/add/jobs", bearer, chunked)
    assert "Traceback" not in timed.proc.output()  # the app unwound quietly


def test_a_body_that_keeps_coming_is_not_cut(timed: Served) -> None:
    body = b'{"a": 40, "b": 2}'
    with connect(timed.proc.port) as sock:
        sock.sendall(
            b"POST /api/tasks/add/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: "
            + timed.auth["Authorization"].encode()
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
        )
        start = time.monotonic()
        for byte in body:  # longer in all than the body time-out, never stalled for it
            sock.sendall(bytes([byte]))
            time.sleep(0.15)
        assert time.monotonic() - start > 2
        assert read_response(sock).startswith(b"HTTP/1.1 202")


def test_an_event_stream_and_a_long_poll_outlive_the_time_outs(timed: Served) -> None:
    with (
        httpx.Client(base_url=timed.proc.url, headers=timed.auth, timeout=PATIENCE) as client,
        client.stream("GET", "/api/events") as stream,
    ):
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: ready"
        sleeper = client.post("/api/tasks/sleep/jobs", json={"seconds": 20}).json()["id"]
        start = time.monotonic()
        polled = client.get(f"/api/jobs/{sleeper}", params={"wait": 2.5})  # answered when the wait ends
        assert polled.status_code == 200 and polled.json()["status"] in ("queued", "running")
        assert time.monotonic() - start >= 2.4
        later = client.post("/api/tasks/add/jobs", json={"a": 1}).json()["id"]
        # The stream, open for longer than both time-outs, still brings the new job's events.
        deadline = time.monotonic() + PATIENCE
        for line in lines:
            if f'"job_id":{later},' in line:
                break
            assert time.monotonic() < deadline, "the new job's events never came"
        client.post(f"/api/jobs/{sleeper}/cancel")


def test_forwarded_headers_are_ignored_without_trusted_proxies(timed: Served) -> None:
    url, auth = timed.proc.url, timed.auth
    made = httpx.post(f"{url}/api/tokens", json={"name": "from-far"}, headers={**auth, **FORWARDED})
    assert made.status_code == 201
    entries = httpx.get(f"{url}/api/audit", params={"action": "token.create"}, headers=auth).json()["entries"]
    assert entries[0]["address"] == "127.0.0.1"  # the connection's own address, not the header's


# -- a mieruka server capping connections per address ---------------------------------------------
def test_connections_over_the_cap_are_closed(tmp_path: Path) -> None:
    env = {"MIERUKA_MAX_CONNECTIONS_PER_ADDRESS": "5", "MIERUKA_HEADER_TIMEOUT": str(PATIENCE)}
    proc = ServerProcess("tests/jobs.py:app", tmp_path / "home", "--workers", "1", env=env)
    try:
        proc.wait_ready()
        check_the_cap(proc.port, cap=5)
        assert "127.0.0.1 has 5 open connections (max_connections_per_address)" in proc.output()
    except BaseException:
        print(proc.output())
        raise
    finally:
        proc.stop()


# -- a mieruka server behind a trusted proxy (the loopback address) --------------------------------
def test_a_trusted_proxy_is_believed_and_not_capped(tmp_path: Path) -> None:
    home = tmp_path / "home"
    auth = home_with_admin(home)
    env = {"MIERUKA_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1", "MIERUKA_MAX_CONNECTIONS_PER_ADDRESS": "2"}
    proc = ServerProcess("tests/jobs.py:app", home, "--workers", "1", env=env)
    try:
        proc.wait_ready()
        made = httpx.post(f"{proc.url}/api/tokens", json={"name": "from-far"}, headers={**auth, **FORWARDED})
        assert made.status_code == 201
        entries = httpx.get(f"{proc.url}/api/audit", params={"action": "token.create"}, headers=auth).json()
        assert entries["entries"][0]["address"] == "198.51.100.7"  # the proxy's client
        held = [admitted_and_held(proc.port) for _ in range(4)]  # twice the cap: a proxy is not capped
        for sock in held:
            sock.close()
    except BaseException:
        print(proc.output())
        raise
    finally:
        proc.stop()


def test_trusted_proxies_must_be_addresses(tmp_path: Path) -> None:
    assert [str(n) for n in trusted_networks(" 10.0.0.5, 10.1.2.3/16,::1 ,")] == [
        "10.0.0.5/32",
        "10.1.0.0/16",
        "::1/128",
    ]
    assert trusted_networks("") == ()
    with pytest.raises(ConfigError, match="'proxy.local' is not an IP address or network"):
        serve(App("x", home=str(tmp_path), trusted_proxies="10.0.0.5, proxy.local").runtime)


# -- the same limits on uvicorn's h11 protocol (without httptools) ----------------------------------
async def _echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, answers its length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def h11_server(limits: Limits) -> Iterator[int]:
    port = free_port()
    config = uvicorn.Config(
        BodyTimeout(_echo_length, 1),
        host="127.0.0.1",
        port=port,
        ws="none",
        lifespan="off",
        http=protocol_class(limits, "h11"),
        log_config=None,
        loop="asyncio",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + PATIENCE
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the h11 server did not start"
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(PATIENCE)


def test_the_h11_protocol_has_the_same_time_outs() -> None:
    with h11_server(Limits(header_timeout=1, body_timeout=1, per_address=0)) as port:
        check_slow_heads_are_cut(port, header_timeout=1)
        check_stalled_body_gets_408(port, "/upload")


def test_the_h11_protocol_has_the_same_cap() -> None:
    with h11_server(Limits(header_timeout=PATIENCE, body_timeout=PATIENCE, per_address=3)) as port:
        check_the_cap(port, cap=3)
