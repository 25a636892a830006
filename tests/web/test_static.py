"""Static files: linked with a hash of their content and cached immutably under it, compressed for
whoever accepts gzip, still served (briefly cached) under their plain name; mieruka's own favicon."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mieruka.web.assets import IMMUTABLE, STATIC

GZIP = {"Accept-Encoding": "gzip"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path / "home"), workers=1, poll_interval=0.2, prune_interval=3600)
    with TestClient(app.asgi()) as client:
        yield client
    app._settings = None


def linked(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/static/[^"]+)"', page)


@pytest.mark.parametrize("path", ["/", "/jobs", "/workers", "/tasks/add", "/login", "/docs", "/redoc", "/jobs/999"])
def test_every_page_links_versioned_files_and_the_favicon(client: TestClient, path: str) -> None:
    page = client.get(path, headers={"Accept": "text/html"})
    urls = linked(page.text)
    assert urls, page.text
    for url in urls:
        name, _, query = url.removeprefix("/static/").partition("?")
        assert query == "v=" + hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12], url
    assert any(u.startswith("/static/favicon.svg?v=") for u in urls), "mieruka's own favicon"
    assert "swagger-ui/favicon" not in page.text


def test_a_versioned_file_is_cached_for_good_and_compressed(client: TestClient) -> None:
    url = next(u for u in linked(client.get("/").text) if "mieruka.js" in u)
    response = client.get(url, headers=GZIP)
    assert response.status_code == 200
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    raw = (STATIC / "mieruka.js").read_bytes()
    assert response.content == raw  # httpx undoes the gzip
    assert int(response.headers["content-length"]) < len(raw) / 2
    again = client.get(url, headers={**GZIP, "If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_a_page_of_vendored_files_weighs_little_compressed(client: TestClient) -> None:
    total = raw = 0
    for url in linked(client.get("/dashboards").text) + linked(client.get("/").text):
        response = client.get(url, headers=GZIP)
        assert response.status_code == 200, url
        total += int(response.headers["content-length"])
        raw += len(response.content)
    assert total < raw / 3, (total, raw)


def test_a_plain_name_still_works_with_a_short_cache(client: TestClient) -> None:
    for headers in ({"Accept-Encoding": "identity"}, GZIP):
        response = client.get("/static/mieruka.css", headers=headers)
        assert response.status_code == 200 and response.content == (STATIC / "mieruka.css").read_bytes()
        assert response.headers["cache-control"] == "public, max-age=300"
    stale = client.get("/static/mieruka.css?v=000000000000")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "public, max-age=300"


def test_without_gzip_the_file_goes_as_it_is(client: TestClient) -> None:
    response = client.get("/static/vendor/pico/pico.min.css", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == (STATIC / "vendor/pico/pico.min.css").stat().st_size


def test_pages_and_api_answers_are_not_compressed(client: TestClient) -> None:
    # They hold the CSRF token beside text a visitor chose: compressed, it could be guessed (BREACH).
    for path in ("/", "/api/jobs", "/jobs"):
        response: Any = client.get(path, headers=GZIP)
        assert "content-encoding" not in response.headers, path
        assert response.headers["cache-control"] == "no-store", path


def test_unknown_and_escaping_names_are_404(client: TestClient) -> None:
    for path in ("/static/nope.js", "/static/../errors.py", "/static/%2e%2e/errors.py", "/static/vendor"):
        response = client.get(path, headers=GZIP)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_the_favicon_is_a_small_svg(client: TestClient) -> None:
    response = client.get("/static/favicon.svg")
    assert response.status_code == 200 and response.headers["content-type"].startswith("image/svg+xml")
    assert len(response.content) < 2048 and b"<svg" in response.content
