"""The CSRF field read from form bodies (web/csrf.py `read_field`, python-multipart's streaming
parsers): found first in a multipart body without reading on, not looked for after a file, never a
500 for a body it cannot parse, the same in any chunking; then the same through the app."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive

from mieruka.web.csrf import CSRF_FIELD, MAX_FORM_SCAN, MULTIPART_HEAD, read_field
from mieruka.web.identity import SESSION_COOKIE
from mieruka.web.limits import replay

TOKEN = "tok-3f9a_Z"
BOUNDARY = "----mierukaBoundary7MA4YWxk"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FORM = "application/x-www-form-urlencoded"
CHUNK = 64 * 1024
PASSWORD = "correct horse"


def part(name: str, value: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    kind = "Content-Type: application/octet-stream\r\n" if filename else ""
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n{kind}\r\n".encode() + value + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def messages(body: bytes, size: int = CHUNK) -> list[Message]:
    chunks = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    return [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]


class Body:
    """A receive giving `sent` one message at a time, counting what was taken."""

    def __init__(self, sent: list[Message]) -> None:
        self.sent = list(sent)
        self.taken = 0

    async def __call__(self) -> Message:
        self.taken += 1
        return self.sent[self.taken - 1]


def read(content_type: str, sent: list[Message]) -> tuple[str | None, list[Message], Body]:
    body = Body(sent)
    value, consumed = asyncio.run(read_field(content_type, body))
    assert consumed == sent[: body.taken]  # every message taken is kept for the route
    return value, consumed, body


def replayed(consumed: list[Message], body: Body) -> bytes:
    """The body as the route reads it: the messages read ahead, then the rest."""
    receive: Receive = replay(consumed, body)

    async def whole() -> bytes:
        data = b""
        while True:
            message = await receive()
            data += bytes(message.get("body", b""))
            if not message.get("more_body", False):
                return data

    return asyncio.run(whole())


# -- the reader -----------------------------------------------------------------------------------
def test_the_field_first_is_read_and_the_upload_after_it_is_left_to_the_route() -> None:
    data = multipart(part(CSRF_FIELD, TOKEN.encode()), part("document", b"x" * 3_000_000, "big.bin"))
    value, consumed, body = read(MULTIPART, messages(data))
    assert value == TOKEN and len(consumed) == 1
    assert replayed(consumed, body) == data


def test_a_field_after_a_large_file_part_is_not_looked_for_and_the_file_is_not_read() -> None:
    data = multipart(part("document", b"x" * 3_000_000, "big.bin"), part(CSRF_FIELD, TOKEN.encode()))
    value, consumed, _ = read(MULTIPART, messages(data))
    assert value is None and len(consumed) == 1  # the first part's headers named another field
    # The whole body in one message (the test client sends it so): parsed no further than the head.
    value, consumed, _ = read(MULTIPART, messages(data, size=len(data)))
    assert value is None and len(consumed) == 1


def test_a_missing_field_is_none() -> None:
    for data in (multipart(part("a", b"1"), part("b", b"2")), multipart()):
        assert read(MULTIPART, messages(data))[0] is None
    assert read(FORM, messages(b"a=1&b=2"))[0] is None
    assert read(FORM, messages(b""))[0] is None
    assert read("application/json", messages(b'{"csrf_token": "x"}'))[:2] == (None, [])
    assert read("", messages(b"csrf_token=x"))[:2] == (None, [])
    file_named_so = multipart(part(CSRF_FIELD, TOKEN.encode(), "token.txt"))
    assert read(MULTIPART, messages(file_named_so))[0] is None


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("multipart/form-data", multipart(part(CSRF_FIELD, TOKEN.encode()))),  # no boundary
        ("multipart/form-data; boundary=", multipart(part(CSRF_FIELD, TOKEN.encode()))),
        ("multipart/form-data; boundary=" + "b" * 200, b"--" + b"b" * 200 + b"\r\n"),  # over RFC 2046's 70
        ("multipart/form-data; boundary=other", multipart(part(CSRF_FIELD, TOKEN.encode()))),
        (MULTIPART, b"\x00\xff not multipart at all"),
        (MULTIPART, f"--{BOUNDARY}\r\nno colon here\r\n\r\n{TOKEN}\r\n".encode()),
        (MULTIPART, f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{CSRF_FIELD}"\r\n\r\n{TOKEN}'.encode()),
        (MULTIPART, part(CSRF_FIELD, b"x" * (MULTIPART_HEAD + 10))),  # a "token" larger than the head
    ],
)
def test_a_malformed_body_has_no_field_and_raises_nothing(content_type: str, data: bytes) -> None:
    assert read(content_type, messages(data))[0] is None


def test_any_chunking_gives_the_same_field() -> None:
    data = multipart(part(CSRF_FIELD, TOKEN.encode()), part("a", b"1"), part("document", b"y" * 5000, "f.bin"))
    for size in (1, 2, 7, 61, len(data)):
        value, consumed, body = read(MULTIPART, messages(data, size))
        assert value == TOKEN, size
        assert body.taken < len(data) / size or size == len(data)  # stopped at the first part's end
        assert replayed(consumed, body) == data
    form = f"a=1&{CSRF_FIELD}={TOKEN}&b=%E2%9C%93".encode()
    for size in (1, 3, len(form)):
        value, consumed, body = read(FORM, messages(form, size))
        assert value == TOKEN and replayed(consumed, body) == form


def test_an_urlencoded_field_is_found_anywhere_within_the_scan_and_decoded() -> None:
    assert read(FORM, messages(f"a=1&{CSRF_FIELD}=a%2Bb+c&{CSRF_FIELD}=second".encode()))[0] == "a+b c"
    assert read(FORM, messages(f"csrf%5Ftoken={TOKEN}".encode()))[0] == TOKEN
    assert read(FORM, messages(f"a=1&{CSRF_FIELD}=".encode()))[0] == ""
    late = b"a=" + b"x" * MAX_FORM_SCAN + f"&{CSRF_FIELD}={TOKEN}".encode()
    value, consumed, _ = read(FORM, messages(late))
    assert value is None and sum(len(m["body"]) for m in consumed) <= MAX_FORM_SCAN + CHUNK


def test_a_client_that_goes_away_has_no_field() -> None:
    value, consumed, _ = read(MULTIPART, [{"type": "http.disconnect"}])
    assert value is None and consumed == [{"type": "http.disconnect"}]


# -- through the app ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path_factory.mktemp("csrf") / "home"), workers=1, poll_interval=0.2)
    with TestClient(app.asgi()) as client:
        app.auth.accounts.add_user("olga", "operator", PASSWORD)
        page = client.get("/login")
        login_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert login_token, page.text
        form = {CSRF_FIELD: login_token.group(1), "name": "olga", "password": PASSWORD}
        assert client.post("/login", data=form, follow_redirects=False).status_code == 303
        yield {"app": app, "client": client, "csrf": client.get("/api/me").json()["csrf_token"]}
    app._settings = None


def refused(response: httpx.Response) -> bool:
    return response.status_code == 403 and response.json()["error"]["code"] == "csrf_failed"


def test_an_upload_after_the_field_reaches_the_route_whole(served: dict[str, Any]) -> None:
    client, app = served["client"], served["app"]
    document = b"0123456789" * 30_000  # past MULTIPART_HEAD; its text comes back inline in the result
    files = [(CSRF_FIELD, (None, served["csrf"])), ("document", ("big.txt", document, "text/plain"))]
    response = client.post("/tasks/read_upload", files=files, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]
    job_id = int(response.headers["location"].rstrip("/").rsplit("/", 1)[1])
    done = app.engine.wait(job_id, 60)
    assert done.status.value == "succeeded" and done.result["text"] == document.decode()


def test_a_field_after_a_large_file_or_none_is_refused(served: dict[str, Any]) -> None:
    client, csrf = served["client"], served["csrf"]
    late = [("document", ("big.bin", b"x" * 3_000_000)), (CSRF_FIELD, (None, csrf))]
    assert refused(client.post("/tasks/read_upload", files=late, follow_redirects=False))
    assert refused(client.post("/tasks/add", files={"a": (None, "1")}, follow_redirects=False))
    wrong = {CSRF_FIELD: (None, csrf + "x"), "a": (None, "1")}
    assert refused(client.post("/tasks/add", files=wrong, follow_redirects=False))


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("multipart/form-data", b"--x\r\n"),
        ("multipart/form-data; boundary=" + "b" * 200, b"--" + b"b" * 200 + b"\r\n"),
        ("multipart/form-data; boundary=abc", b"\x00\xff garbage"),
        ("multipart/form-data; boundary=abc", f'--abc\r\nContent-Disposition: form-data; name="{CSRF_FIELD}"'.encode()),
    ],
)
def test_a_malformed_form_is_a_4xx(served: dict[str, Any], content_type: str, data: bytes) -> None:
    response = served["client"].post("/tasks/add", content=data, headers={"content-type": content_type})
    assert refused(response)


def test_a_chunked_form_body_is_read_as_it_arrives(served: dict[str, Any]) -> None:
    client, app = served["client"], served["app"]
    data = multipart(part(CSRF_FIELD, served["csrf"].encode()), part("a", b"4"))
    pulled: list[int] = []

    async def chunks() -> Any:
        for i in range(0, len(data), 5):  # no Content-Length: sent chunked, 5 bytes at a time
            pulled.append(i)
            yield data[i : i + 5]

    async def post() -> httpx.Response:
        transport = httpx.ASGITransport(app=client.app)
        headers = {"content-type": MULTIPART, "cookie": f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as ac:
            return await ac.post("/tasks/add", content=chunks(), headers=headers)

    response = asyncio.run(post())
    assert response.status_code == 303, response.text[:300]
    assert len(pulled) == -(-len(data) // 5)  # the route read the rest after the middleware's part
    job_id = int(response.headers["location"].rstrip("/").rsplit("/", 1)[1])
    assert app.engine.wait(job_id, 60).result == 6
