"""The served pages in a real browser (Debian's Chromium driven by Playwright), with every request
to a host other than the server aborted and counted: the count must be zero."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import UI_WAIT, ServerProcess, open_page

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def test_swagger_ui_renders_and_submits_without_outside_requests(
    browser: Browser, server: ServerProcess, tmp_path: Path
) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    page.goto(f"{server.url}/docs")
    page.get_by_text("Submit: Add two numbers", exact=False).first.wait_for(timeout=UI_WAIT)
    page.screenshot(path=str(tmp_path / "swagger-ui.png"))
    # Submit a job the way a person would: open the operation, try it out, execute.
    page.get_by_text("/api/tasks/add/jobs", exact=True).first.click()
    page.get_by_role("button", name="Try it out").first.click()
    body = page.locator("textarea.body-param__text").first
    body.fill('{"a": 40}')
    page.get_by_role("button", name="Execute").first.click()
    page.locator(".response .response-col_status").filter(has_text="202").first.wait_for(timeout=UI_WAIT)
    assert outside == []


def test_redoc_renders_without_outside_requests(browser: Browser, server: ServerProcess, tmp_path: Path) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    page.goto(f"{server.url}/redoc")
    page.locator("h2", has_text="Submit: Add two numbers").first.wait_for(timeout=UI_WAIT)
    page.screenshot(path=str(tmp_path / "redoc.png"))
    assert outside == []
