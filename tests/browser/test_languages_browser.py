"""Every page in Japanese, Chinese and Russian in a real browser (issue 22): a server of
tests/guarded_app.py (tasks, a pipeline, dashboards with tiles and controls, a stream; open
single-user mode, so the admin pages show too) opened in Chromium with the browser asking for each
language. No text, title, placeholder or label of a page may be an English message of the catalog
that the language translates (the app's own names and titles are the author's, left out), and no
page may be wider than the window at 1280 and 375 px. The header's switcher changes the language."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from babel.messages.pofile import read_po

from mieruka.i18n import LOCALE
from tests.conftest import ServerProcess, open_page, shared_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LANGUAGES = {"ja": ("ja-JP", "ja"), "zh-Hans": ("zh-CN", "zh_Hans"), "ru": ("ru-RU", "ru")}
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]")
# What the page's texts are read from: text nodes, and the attributes people read.
TEXTS = """() => {
  const out = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && node.parentElement.closest("script, style, template, noscript, pre, code")) continue;
    out.push(node.textContent);
  }
  for (const el of document.querySelectorAll("[placeholder], [title], [aria-label], [alt]")) {
    for (const name of ["placeholder", "title", "aria-label", "alt"]) {
      if (el.hasAttribute(name)) out.push(el.getAttribute(name));
    }
  }
  return out.map((text) => text.replace(/\\s+/g, " ").trim()).filter((text) => text);
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("languages") / "home"
    with shared_server(ServerProcess("tests/guarded_app.py:app", home), request) as server:
        yield server


@pytest.fixture(scope="module")
def pages(server: ServerProcess) -> list[str]:
    """Each page of the UI, with a finished job, a failed one and a pipeline's to show."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        done = http.post("/api/tasks/add/jobs", json={"a": 1}).json()["id"]
        failed = http.post("/api/tasks/add/jobs", json={"a": "x"})
        assert failed.status_code == 422
        pipeline = http.post("/api/tasks/vault/jobs", json={}).json()["id"]
        for job in (done, pipeline):
            assert http.get(f"/api/jobs/{job}", params={"wait": 60}).json()["status"] == "succeeded"
    return [
        "/",
        "/tasks/add",
        "/tasks/vault",
        "/jobs",
        f"/jobs/{done}",
        f"/jobs/{pipeline}",
        "/workers",
        "/dashboards",
        "/dashboards/open",
        "/dashboards/wards",
        "/streams/vitals",
        "/users",
        "/audit",
        "/displays",
        "/notifications",
        "/account",
        "/presence",
        "/jobs/987654",  # the error page
    ]


def authors(server: ServerProcess) -> set[str]:
    """The app's own words: task, parameter, dashboard, source and control names and titles."""
    found = {"guarded", "mieruka", "local"}  # "local": the open mode's admin, a user name
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for task in http.get("/api/tasks").json():
            found |= {task["name"], task["title"], *task["params_schema"].get("properties", {})}
            found |= {p.get("title", "") for p in task["params_schema"].get("properties", {}).values()}
        for board in http.get("/api/dashboards").json():
            found |= {board["name"], board["title"]}
            for item in board.get("charts", []) + board.get("controls", []):
                found |= {str(item.get("title", "")), str(item.get("name", ""))}
    return {text for text in found if text}


def english_messages(folder: str) -> list[re.Pattern[str]]:
    """The catalog's English messages that this language translates otherwise, as whole-text
    patterns (a placeholder stands for anything)."""
    with (LOCALE / folder / "LC_MESSAGES" / "mieruka.po").open("rb") as po:
        catalog = read_po(po, locale=folder)
    patterns = []
    for message in catalog:
        if not message.id:
            continue
        ids = list(message.id) if isinstance(message.id, (tuple, list)) else [message.id]
        forms = list(message.string) if isinstance(message.string, (tuple, list)) else [message.string]
        for english in ids:
            if "<" in english or english in forms:
                continue  # markup: split over elements; or the same words in this language
            pieces = [re.escape(piece) for piece in PLACEHOLDER.split(english)]
            patterns.append(re.compile(".+?".join(pieces)))
    return patterns


def leftovers(texts: list[str], patterns: list[re.Pattern[str]], own: set[str]) -> set[str]:
    return {
        text for text in texts if text not in own and any(pattern.fullmatch(text.rstrip(":：")) for pattern in patterns)
    }


def settled(page: Page, deadline: float = 30) -> None:
    """Wait until the page's visible words stop changing (the scripts have drawn what they draw):
    the same texts twice, a moment apart, digits aside (live readings and clocks move on)."""
    end = time.monotonic() + deadline

    def words() -> list[str]:
        return [re.sub(r"\d", "", text) for text in page.evaluate(TEXTS)]

    before = words()
    while time.monotonic() < end:
        page.evaluate("() => new Promise(done => setTimeout(done, 250))")
        now = words()
        if now == before:
            return
        before = now
    raise AssertionError(f"{page.url}: its texts were still changing after {deadline} s")


def too_wide(page: Page) -> int:
    return int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_page_is_in_the_language_and_fits(
    browser: Browser, server: ServerProcess, pages: list[str], language: str
) -> None:
    locale, folder = LANGUAGES[language]
    patterns, own = english_messages(folder), authors(server)
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    try:
        for path in pages:
            for width in (1280, 375):
                page.set_viewport_size({"width": width, "height": 900})
                page.goto(server.url + path, wait_until="load")
                settled(page)  # tiles, live panels and scripts' texts arrive
                lang = page.evaluate("document.documentElement.lang")
                if lang != language:
                    problems.append(f"{path}: <html lang={lang!r}>")
                if too_wide(page) > 1:
                    problems.append(f"{path} at {width} px: {too_wide(page)} px wider than the window")
                if width == 1280:
                    english = leftovers(page.evaluate(TEXTS), patterns, own)
                    if english:
                        problems.append(f"{path}: English left: {sorted(english)}")
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_the_switcher_in_the_header_changes_the_language(browser: Browser, server: ServerProcess) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    try:
        page.goto(f"{server.url}/jobs")
        assert page.evaluate("document.documentElement.lang") == "en"
        with page.expect_navigation():
            page.select_option("form.language-switch select", "ru")
        assert page.url == f"{server.url}/jobs"
        assert page.evaluate("document.documentElement.lang") == "ru"
        assert page.get_by_role("link", name="Задания").count() >= 1
        with page.expect_navigation():
            page.select_option("form.language-switch select", "ja")
        page.goto(f"{server.url}/")
        assert page.evaluate("document.documentElement.lang") == "ja"
    finally:
        page.close()
    assert outside == []


def test_a_server_process_serves_the_language_the_browser_asks_for(server: ServerProcess, tmp_path: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/jobs", headers={"Accept-Language": "ja,en;q=0.5", "Accept": "text/html"}).text
        assert '<html lang="ja"' in page and "ジョブ" in page and "タスク" in page
        russian = http.get("/workers", headers={"Accept-Language": "ru-RU", "Accept": "text/html"}).text
        assert '<html lang="ru"' in russian and "Обработчики" in russian
