"""Every page in Japanese, Chinese and Russian in a real browser (issue 22): a server of
tests/guarded_app.py (tasks, a pipeline, dashboards with tiles and controls, a stream; open
single-user mode, so the admin pages show too) opened in Chromium with the browser asking for each
language. No text, title, placeholder or label of a page may be an English message of the catalog
that the language translates (the app's own names and titles are the author's, left out), and no
page may be wider than the window at 1280 and 375 px. The header's switcher changes the language."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from babel.messages.pofile import read_po

from mieruka.i18n import LOCALE
from tests.conftest import ServerProcess, fresh_postgres_database, open_page, shared_server

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


def too_wide(page: Page, deadline: float = 10) -> int:
    """How much wider than the window the page is, once the layout has caught up with a resize
    (charts redraw for their new width a frame or a debounce later): 0 when it fits."""
    end = time.monotonic() + deadline
    while True:
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        wider = int(page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
        if wider <= 1 or time.monotonic() > end:
            return wider
        page.evaluate("() => new Promise(done => setTimeout(done, 100))")


# Headings of columns, states and buttons of a few words that the layout broke over more than two
# lines: CJK text breaks between any two characters, "ジョブ" became a column of three.
STACKED = """() => [...document.querySelectorAll("th, .badge, button, [role=button]")]
  .filter(e => e.offsetParent !== null && e.textContent.trim().length > 1 && e.textContent.trim().length <= 12)
  .filter(e => {
    const style = getComputedStyle(e);
    const line = parseFloat(style.lineHeight) || parseFloat(style.fontSize) * 1.2;
    const inner = e.getBoundingClientRect().height - parseFloat(style.paddingTop) - parseFloat(style.paddingBottom)
      - parseFloat(style.borderTopWidth) - parseFloat(style.borderBottomWidth);
    return inner / line > 2.5;
  })
  .map(e => e.textContent.trim())"""


def stacked(page: Page) -> list[str]:
    return list(page.evaluate(STACKED))


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
            # Loaded once, read at 1280 px, then narrowed to a phone's 375 px (test_ui_browser loads
            # every page at a phone's width; here the words are what may not fit).
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto(server.url + path, wait_until="load")
            settled(page)  # tiles, live panels and scripts' texts arrive
            lang = page.evaluate("document.documentElement.lang")
            if lang != language:
                problems.append(f"{path}: <html lang={lang!r}>")
            english = leftovers(page.evaluate(TEXTS), patterns, own)
            if english:
                problems.append(f"{path}: English left: {sorted(english)}")
            for width in (1280, 375):
                page.set_viewport_size({"width": width, "height": 900})
                if (wider := too_wide(page)) > 1:
                    problems.append(f"{path} at {width} px: {wider} px wider than the window")
                if broken := stacked(page):
                    problems.append(f"{path} at {width} px: one character a line: {broken}")
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


# -- mieruka's own messages (mieruka/notes.py): a running pipeline, a started pool, a retry ----------
@pytest.fixture(scope="module")
def pooled(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, broker_url: str
) -> Iterator[ServerProcess]:
    """A server of tests/pool_app.py on the Celery executor, whose compute pool its jobs start."""
    home = tmp_path_factory.mktemp("pooled") / "home"
    with fresh_postgres_database("mieruka_languages") as database_url:
        env = {
            "MIERUKA_EXECUTOR": "celery",
            "MIERUKA_BROKER_URL": broker_url.rsplit("/", 1)[0] + "/9",
            "MIERUKA_DATABASE_URL": database_url,
            "MIERUKA_POOL_CHECK_INTERVAL": "0.2",
        }
        with shared_server(ServerProcess("tests/pool_app.py:app", home, env=env), request) as server:
            yield server


def until(condition: Callable[[], object], what: str, output: Callable[[], str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}\n{output()}")
        time.sleep(0.1)


def shown_message(page: Page) -> str:
    return str(page.locator('#job-panel [data-field="message"]').text_content()).strip()


@pytest.mark.timeout(600)
def test_mierukas_own_messages_are_in_japanese(browser: Browser, pooled: ServerProcess, tmp_path: Path) -> None:
    """A pipeline running on a pool its job started, and a task waiting for its retry: their job
    pages, the monitor and the workers page in Japanese have no English message of mieruka's left,
    live updates and a refused topic's reason included."""
    go = tmp_path / "go"
    with httpx.Client(base_url=pooled.url, timeout=60) as http:

        def job(job_id: int) -> dict[str, Any]:
            found: dict[str, Any] = http.get(f"/api/jobs/{job_id}").json()
            return found

        def code(job_id: int) -> str | None:
            return (job(job_id)["message_note"] or {}).get("code")

        pipeline = http.post("/api/tasks/two_steps/jobs", json={"go": str(go)}).json()
        assert pipeline["message_note"]["code"] == "job.pool_starting"
        flaky = http.post("/api/tasks/flaky/jobs", json={}).json()["id"]
        until(lambda: code(pipeline["id"]) == "job.steps_running", "the pipeline's second step runs", pooled.output)
        until(lambda: code(flaky) == "job.retrying", "the task waits for its retry", pooled.output)
        pool = http.get("/api/pools/compute").json()
        assert pool["state"] == "running" and pool["message_note"]["code"] == "pool.started", pool
        patterns, own = english_messages("ja"), authors(pooled) | {"compute", "prepare", "wait"}
        context = browser.new_context(locale="ja-JP", viewport={"width": 1280, "height": 900})
        page = context.new_page()
        problems: list[str] = []
        try:
            for path in (f"/jobs/{flaky}", "/workers", "/jobs", f"/jobs/{pipeline['id']}"):
                page.goto(pooled.url + path, wait_until="load")
                settled(page)
                english = leftovers(page.evaluate(TEXTS), patterns, own)
                if english:
                    problems.append(f"{path}: English left: {sorted(english)}")
                if path == "/workers":
                    workers = page.locator("#pool-table").inner_text()
                    for said in ("起動しました", f"ジョブ {pipeline['id']} が待機しています", "宣言されました"):
                        if said not in workers:
                            problems.append(f"/workers: no {said!r} in {workers!r}")
                elif (
                    path == f"/jobs/{flaky}"
                    and shown_message(page) != "1 回目の試行が失敗しました。300 秒後に再試行します"
                ):
                    problems.append(f"{path}: {shown_message(page)!r}")
            assert not problems, "\n".join(problems)
            # The job page stays open while the pipeline goes on: what it shows next is Japanese too.
            assert shown_message(page) == "2 ステップ中 1 完了、実行中: wait"
            go.touch()
            page.wait_for_function(
                "() => document.querySelector('#job-panel [data-field=\"message\"]').textContent.trim() === "
                "'2 ステップ中 2 完了'",
                timeout=60_000,
            )
            # A topic the stream refuses: the page polls and says why, in Japanese.
            page.goto(pooled.url + "/", wait_until="load")
            page.evaluate("() => window.mieruka.subscribe(['jobs:nope'], {}, function () {})")
            page.wait_for_function(
                "() => document.getElementById('live-note').textContent === "
                "\"ライブ更新はポーリングで行っています（'nope' という名前のタスクはありません）\"",
                timeout=30_000,
            )
        finally:
            context.close()
            go.touch()
            http.post(f"/api/jobs/{flaky}/cancel")


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_the_pages_script_says_a_note_as_the_server_does(
    browser: Browser, server: ServerProcess, language: str
) -> None:
    """static/i18n.js's `said` and mieruka/notes.py give the same words: lists, fractions and a
    note inside a note as the language writes them."""
    from mieruka.notes import note, span

    said = [
        note("job.steps_running", done=1, total=3, steps=["align", "count", "sort"]),
        note("pool.idle", time=span(90)),
        note("pool.idle", time=span(0.5)),
        note("job.retrying", attempt=2, delay=300.0),
        note("workers.die_at_start", why=note("error.worker_killed_oom", signal="SIGKILL")),
    ]
    context = browser.new_context(locale=LANGUAGES[language][0])
    page = context.new_page()
    try:
        page.goto(server.url + "/jobs", wait_until="load")
        shown = page.evaluate(
            "(notes) => notes.map(([text, n]) => window.mieruka_i18n.said(text, n))",
            [[str(n), n.to_json()] for n in said],
        )
    finally:
        context.close()
    assert shown == [n.in_language(language) for n in said]
