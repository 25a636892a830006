"""The served pages in a real browser (Debian's Chromium driven by Playwright), with every request
to a host other than the server aborted and counted: the count must be zero."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.conftest import ServerProcess, need_service

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need_service("the playwright package is not installed (pip install playwright)")
    if not shutil.which(CHROMIUM):
        need_service(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: object, server: ServerProcess, outside: list[str]) -> object:
    page = browser.new_page(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    local = urlparse(server.url).netloc

    def guard(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        if urlparse(url).netloc != local and not url.startswith("data:"):
            outside.append(url)
            route.abort()  # type: ignore[attr-defined]
        else:
            route.continue_()  # type: ignore[attr-defined]

    page.route("**/*", guard)
    return page


def test_swagger_ui_renders_and_submits_without_outside_requests(browser: object, server: ServerProcess,
                                                                 tmp_path: Path) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    page.goto(f"{server.url}/docs")
    page.get_by_text("Submit: Add two numbers", exact=False).first.wait_for(timeout=15000)
    page.screenshot(path=str(tmp_path / "swagger-ui.png"))
    # Submit a job the way a person would: open the operation, try it out, execute.
    page.get_by_text("/api/tasks/add/jobs", exact=True).first.click()
    page.get_by_role("button", name="Try it out").first.click()
    body = page.locator("textarea.body-param__text").first
    body.fill('{"a": 40}')
    page.get_by_role("button", name="Execute").first.click()
    page.locator(".response .response-col_status").filter(has_text="202").first.wait_for(timeout=15000)
    assert outside == []


def test_redoc_renders_without_outside_requests(browser: object, server: ServerProcess, tmp_path: Path) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    page.goto(f"{server.url}/redoc")
    page.locator("h2", has_text="Submit: Add two numbers").first.wait_for(timeout=20000)
    page.screenshot(path=str(tmp_path / "redoc.png"))
    assert outside == []
