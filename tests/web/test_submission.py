"""One submission path for the API and the UI (web/submission.py): a body over the upload limit is refused
while it streams, whichever route it reaches, without the client saying how long it is; and both routes say
the same about the same bad values."""

from __future__ import annotations

import html
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import mieruka
from mieruka.web.submission import FORM_ROOM
from tests.conftest import running_server

pytestmark = pytest.mark.in_process  # no job runs here: threads of this process are enough
LIMIT = 2**20  # max_upload_size = "1MB"
CHUNK = 65536
SENT = 64 * 2**20  # what the client would send, were it let
# A real server's kernel keeps what arrived after it stopped reading in its socket's receive buffer,
# which grows to a few MB on loopback: it counts as pulled from the client, never as read by the server.
SOCKET_BUFFERS = 8 * 2**20
PATHS = ["/tasks/read_upload", "/api/tasks/read_upload/jobs"]


class CountingUpload:
    """A multipart form of one large file, sent chunked (no Content-Length), that counts what was pulled."""

    def __init__(self, size: int) -> None:
        self.size, self.pulled = size, 0
        self.boundary = f"----upload{uuid.uuid4().hex}"
        self.headers = {"content-type": f"multipart/form-data; boundary={self.boundary}", "accept": "text/html"}

    def chunks(self) -> Iterator[bytes]:
        head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="document"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        for chunk in [head, *[b"x" * CHUNK] * (self.size // CHUNK), f"\r\n--{self.boundary}--\r\n".encode()]:
            self.pulled += len(chunk)
            yield chunk

    async def async_chunks(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk


def assert_refused(response: httpx.Response, path: str) -> None:
    """413, the connection closed rather than the rest read, and a message a person can read: the task's
    form again for a browser, the one error shape for the API."""
    assert response.status_code == 413, response.text[:2000]
    assert response.headers["connection"] == "close"
    message = "the request is larger than the upload limit of 1,048,576 bytes"
    if path.startswith("/api/"):
        assert response.json()["error"] == {"code": "payload_too_large", "message": message}
    else:
        assert f"Please correct the form: {message}" in response.text
        assert re.search(r'<input[^>]*type="file"[^>]*name="document"|name="document"[^>]*type="file"', response.text)


def no_uploads(home: Path) -> bool:
    uploads = home / "uploads"
    return not uploads.exists() or list(uploads.iterdir()) == []


@pytest.fixture
def limited_app(tmp_path: Path) -> Iterator[mieruka.App]:
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    jobs_app.configure(
        home=str(tmp_path / "home"),
        database_url=f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}",
        executor="threads",
        workers=1,
        max_upload_size="1MB",
    )
    try:
        yield jobs_app
    finally:
        jobs_app._settings = None


@pytest.mark.parametrize("path", PATHS)
def test_a_chunked_upload_over_the_limit_stops_at_the_limit_in_process(limited_app: mieruka.App, path: str) -> None:
    """The in-process client hands the body over as the route asks for it: what was pulled is what was read."""
    upload = CountingUpload(SENT)
    asgi = limited_app.asgi()

    async def post(app: FastAPI) -> httpx.Response:
        transport = httpx.ASGITransport(app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            return await client.post(path, content=upload.async_chunks(), headers=upload.headers)

    with TestClient(asgi) as client:  # for the app's start and stop
        assert client.portal is not None
        response = client.portal.call(post, asgi)
        assert upload.pulled <= LIMIT + FORM_ROOM + 2 * CHUNK, upload.pulled
        assert_refused(response, path)
        assert no_uploads(limited_app.settings.home_path)
        assert client.get("/api/jobs").json()["jobs"] == []


@pytest.mark.parametrize("path", PATHS)
def test_a_chunked_upload_over_the_limit_stops_at_the_limit_on_a_real_server(tmp_path: Path, path: str) -> None:
    """Through uvicorn the refusal closes the connection: the client is stopped after about the limit (and
    what the sockets hold), not after the 64 MB it meant to send."""
    home = tmp_path / "home"
    with running_server(home, "--workers", "1", env={"MIERUKA_MAX_UPLOAD_SIZE": "1MB"}) as server:
        upload = CountingUpload(SENT)
        transport = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_SNDBUF, CHUNK)])
        with httpx.Client(transport=transport, timeout=60) as client:
            response = client.post(server.url + path, content=upload.chunks(), headers=upload.headers)
            assert upload.pulled <= LIMIT + FORM_ROOM + SOCKET_BUFFERS, upload.pulled
            assert_refused(response, path)
            assert no_uploads(home)
            assert client.get(server.url + "/api/jobs").json()["jobs"] == []


# -- the same words for the same mistakes ----------------------------------------------------------------
@pytest.fixture(params=["sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}"


BAD_FORM = [("count", "many"), ("window.start", "x"), ("colour", "green"), ("names", "a"), ("day", "May")]
BAD_JSON: dict[str, Any] = {"count": "many", "window": {"start": "x"}, "colour": "green", "names": ["a"], "day": "May"}


def page_errors(page: str) -> dict[str, str]:
    """The error shown under each field of a form page, by the field's input name."""
    found = re.findall(r'<small class="field-error" id="param-([\w-]+)-error">(.*?)</small>', page, re.DOTALL)
    return {name.replace("-", "."): html.unescape(text).strip() for name, text in found}


def test_the_ui_and_the_api_say_the_same_about_the_same_bad_values(client: TestClient) -> None:
    api_form = client.post("/api/tasks/echo_types/jobs", data=dict(BAD_FORM))
    api_json = client.post("/api/tasks/echo_types/jobs", json=BAD_JSON)
    ui = client.post("/tasks/echo_types", data=dict(BAD_FORM), headers={"accept": "text/html"})
    assert (api_form.status_code, api_json.status_code, ui.status_code) == (422, 422, 422)
    from_form = {f["field"]: f["message"] for f in api_form.json()["error"]["fields"]}
    from_json = {f["field"]: f["message"] for f in api_json.json()["error"]["fields"]}
    assert set(from_form) == {"count", "window.start", "colour", "day"}
    assert from_form == from_json == page_errors(ui.text)
    assert 'value="many"' in ui.text  # the form comes back as it was filled in
    assert client.get("/api/jobs").json()["jobs"] == []


BOUNDARY = "----bad"
BAD_BODIES = {
    "no boundary": (b"x", "multipart/form-data"),
    "a broken multipart body": (b"--nothing like the boundary\r\n", f"multipart/form-data; boundary={BOUNDARY}"),
    "a text field over the 1 MB of a form part": (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="text"\r\n\r\n'.encode()
        + b"t" * (2**20 + 1)
        + f"\r\n--{BOUNDARY}--\r\n".encode(),
        f"multipart/form-data; boundary={BOUNDARY}",
    ),
    "an unknown parameter": (b"zzz=1&count=2", "application/x-www-form-urlencoded"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_the_ui_and_the_api_refuse_the_same_bodies_in_the_same_words(client: TestClient, case: str) -> None:
    body, content_type = BAD_BODIES[case]
    api = client.post("/api/tasks/echo_types/jobs", content=body, headers={"content-type": content_type})
    ui = client.post("/tasks/echo_types", content=body, headers={"content-type": content_type, "accept": "text/html"})
    assert api.status_code == ui.status_code == 422, (api.text, ui.text[:2000])
    message = api.json()["error"]["message"]
    assert f"Please correct the form: {html.escape(message, quote=False)}" in ui.text.replace("&#39;", "'")
