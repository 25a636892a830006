"""The web UI in a real browser (Debian's Chromium through Playwright), with every request to
another host aborted and counted: the count must be zero in every test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.conftest import UI_WAIT, ServerProcess, open_page, text_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, ViewportSize

    UI = tuple[Page, list[str]]  # the `ui` fixture: a page, and the requests it sent elsewhere


@pytest.fixture
def ui(browser: Browser, server: ServerProcess) -> Iterator[UI]:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    yield page, outside
    page.close()
    assert outside == [], f"the page reached outside the server: {outside}"


def test_home_lists_the_tasks(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/")
    page.get_by_role("link", name="Progress steps").first.wait_for()
    assert page.locator(".card").count() >= 10


def test_submit_through_the_form_and_watch_it_succeed(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/tasks/progress_steps")
    page.locator('[name="steps"]').fill("5")
    page.locator('[name="delay"]').fill("0.4")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/jobs/*")
    bar = page.locator('#job-panel progress[data-field="progress"]')
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = page.locator('#job-panel [data-field="status"]').text_content()
        if status == "succeeded":
            break
        value = bar.get_attribute("value") if bar.count() else None
        if value:
            seen.add(value)
        time.sleep(0.05)
    assert status == "succeeded"
    assert len(seen) >= 2, f"the progress bar should move; saw {seen}"
    page.locator(".result").filter(has_text="5").first.wait_for()
    log = text_of(page.locator("#log"))
    assert "step 1" in log and "step 5" in log


def test_a_validation_error_is_shown_at_its_field(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/tasks/bounded")
    field = page.locator('[name="count"]')
    field.evaluate("el => el.removeAttribute('max')")  # let the server, not the browser, judge it
    field.fill("99")
    page.get_by_role("button", name="Submit").click()
    field = page.locator('[name="count"]')
    assert field.get_attribute("aria-invalid") == "true"
    described_by = (field.get_attribute("aria-describedby") or "").split()
    messages = [text_of(page.locator(f"#{element_id}")) for element_id in described_by]
    assert any("less than or equal to 10" in m for m in messages), messages
    assert field.input_value() == "99"  # what the user typed is kept
    assert page.url.endswith("/tasks/bounded")
    assert httpx.get(f"{server.url}/api/jobs").json()["jobs"] == []  # nothing was queued


def test_a_file_upload(ui: UI, server: ServerProcess, tmp_path: Path) -> None:
    page, _ = ui
    document = tmp_path / "reads.fa"
    document.write_text(">r1\nACGT\n")
    page.goto(f"{server.url}/tasks/read_upload")
    page.locator('[name="document"]').set_input_files(str(document))
    assert "reads.fa" in text_of(page.locator('.file-info[data-for="document"]'))
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/jobs/*")
    page.locator('#job-panel [data-field="status"]', has_text="succeeded").wait_for(timeout=UI_WAIT)
    assert "ACGT" in text_of(page.locator(".result"))


def test_cancel_from_the_job_page(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    job = httpx.post(f"{server.url}/api/tasks/sleep/jobs", json={"seconds": 60}).json()
    page.goto(f"{server.url}/jobs/{job['id']}")
    page.locator('#job-panel [data-field="status"]', has_text="running").wait_for(timeout=UI_WAIT)
    page.get_by_role("button", name="Cancel").click()
    page.locator('#job-panel [data-field="status"]', has_text="cancelled").wait_for(timeout=UI_WAIT)
    assert httpx.get(f"{server.url}/api/jobs/{job['id']}").json()["status"] == "cancelled"


def test_the_monitor_shows_a_job_submitted_through_the_api_without_a_reload(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/jobs")
    page.wait_for_timeout(300)
    job = httpx.post(f"{server.url}/api/tasks/progress_steps/jobs", json={"steps": 2, "delay": 0.3}).json()
    row = page.locator(f'tr[data-job-id="{job["id"]}"]')
    row.wait_for(timeout=UI_WAIT)
    row.locator('[data-field="status"]', has_text="succeeded").wait_for(timeout=UI_WAIT)


def test_polling_fallback_still_reaches_succeeded(browser: Browser, server: ServerProcess) -> None:
    outside: list[str] = []
    page = open_page(browser, server, outside)
    page.add_init_script("delete window.EventSource;")
    job = httpx.post(f"{server.url}/api/tasks/progress_steps/jobs", json={"steps": 3, "delay": 0.3}).json()
    page.goto(f"{server.url}/jobs/{job['id']}")
    page.locator('#job-panel [data-field="status"]', has_text="succeeded").wait_for(timeout=UI_WAIT)
    assert "polling" in text_of(page.locator("#live-note"))
    # Shown finished, the whole log was read already: its lines go in at the next animation frame.
    page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")
    assert "step 3" in text_of(page.locator("#log"))
    page.close()
    assert outside == []


def test_a_quick_task_answers_in_place(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/tasks/quick_hello")
    page.locator('[name="name"]').fill("Ada")
    page.get_by_role("button", name="Run").click()
    page.locator("#quick-result .result", has_text="Hello, Ada!").wait_for(timeout=UI_WAIT)
    assert page.url.endswith("/tasks/quick_hello")  # the page stayed


def test_bulk_cancel_from_the_monitor(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    jobs = [httpx.post(f"{server.url}/api/tasks/sleep/jobs", json={"seconds": 60}).json()["id"] for _ in range(3)]
    page.goto(f"{server.url}/jobs?task=sleep")
    for job_id in jobs:
        page.locator(f'tr[data-job-id="{job_id}"] input[name="ids"]').check()
    page.get_by_role("button", name="Cancel selected").click()
    for job_id in jobs:
        page.locator(f'tr[data-job-id="{job_id}"] [data-field="status"]', has_text="cancelled").wait_for(
            timeout=UI_WAIT
        )


def test_pages_work_without_javascript(browser: Browser, server: ServerProcess) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{server.url}/tasks/add")
    page.locator('[name="a"]').fill("40")
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url("**/jobs/*")
    job_id = int(page.url.rsplit("/", 1)[1])
    httpx.get(f"{server.url}/api/jobs/{job_id}", params={"wait": 20}, timeout=50)
    page.reload()
    assert page.locator('#job-panel [data-field="status"]').text_content() == "succeeded"
    assert "42" in text_of(page.locator(".result"))
    context.close()


def test_the_ui_works_under_a_path_prefix(browser: Browser, tmp_path: Path) -> None:
    from tests.conftest import running_server

    with running_server(tmp_path / "home", "--workers", "1", "--root-path", "/mieruka") as proc:
        outside: list[str] = []
        page = open_page(browser, proc, outside)
        page.goto(f"{proc.url}/mieruka/")
        page.get_by_role("link", name="Progress steps").first.click()
        assert "/mieruka/tasks/progress_steps" in page.url
        page.locator('[name="delay"]').fill("0.1")
        page.get_by_role("button", name="Submit").click()
        page.wait_for_url("**/mieruka/jobs/*")
        page.locator('#job-panel [data-field="status"]', has_text="succeeded").wait_for(timeout=UI_WAIT)
        assert "polling" not in (page.locator("#live-note").text_content() or "")
        page.close()
        assert outside == []


def test_run_again_prefills_the_form_and_retry_requeues(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    job = httpx.post(f"{server.url}/api/tasks/fail/jobs", json={"message": "pre-filled"}).json()
    httpx.get(f"{server.url}/api/jobs/{job['id']}", params={"wait": 20}, timeout=50)
    page.goto(f"{server.url}/jobs/{job['id']}")
    assert "ValueError: pre-filled" in text_of(page.locator("pre.error"))
    page.get_by_role("button", name="Run again with these parameters").click()
    assert page.locator('[name="message"]').input_value() == "pre-filled"
    page.go_back()
    page.get_by_role("button", name="Retry").click()
    page.locator("#job-panel small", has_text="attempt 2").wait_for(timeout=UI_WAIT)
    page.locator('#job-panel [data-field="status"]', has_text="failed").wait_for(timeout=UI_WAIT)


def test_the_workers_page_follows_the_pool(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/workers")
    page.locator("tr[data-worker]").first.wait_for()
    job = httpx.post(f"{server.url}/api/tasks/sleep/jobs", json={"seconds": 30}).json()
    link = page.locator(f'#workers-panel tr[data-worker] a[href$="/jobs/{job["id"]}"]')
    link.wait_for(timeout=UI_WAIT)  # refreshed by itself
    httpx.post(f"{server.url}/api/jobs/{job['id']}/cancel")


@pytest.mark.parametrize("live", ["stream", "polling"])
def test_pipeline_steps_and_a_step_log_update_live(ui: UI, server: ServerProcess, live: str, tmp_path: Path) -> None:
    page, _ = ui
    if live == "polling":  # as behind a proxy that buffers the stream, or a stream not heard in time
        page.add_init_script("delete window.EventSource;")
    hold = tmp_path / "hold"  # the step runs until this file exists, however slow the machine
    job = httpx.post(f"{server.url}/api/tasks/pipe_ticker/jobs", json={"ticks": 20, "hold": str(hold)}).json()
    page.goto(f"{server.url}/jobs/{job['id']}")
    ticker = page.locator('#steps details[data-step="ticker"]')
    ticker.locator("summary").click()
    # lines arrive in the open step's log while the step runs
    page.locator('#steps pre[data-step-log="ticker"]', has_text="tick 3").wait_for(timeout=UI_WAIT)
    # the step's state comes in events of its own: waited for, not read at the log's moment
    page.locator('#steps details[data-step="ticker"][data-status="running"]').wait_for(timeout=UI_WAIT)
    hold.touch()
    page.locator('#steps details[data-step="ticker"][data-status="succeeded"]').wait_for(timeout=UI_WAIT)
    text = text_of(page.locator('#steps pre[data-step-log="ticker"]'))
    assert [line for line in text.splitlines() if line] == [f"tick {i}" for i in range(1, 21)]
    assert page.locator('#steps details[data-step="ticker"]').evaluate("d => d.open")  # stays open
    assert page.locator("#steps svg .node").count() == 2
    assert "[ticker] tick 20" in text_of(page.locator("#log"))
    assert ("polling" in text_of(page.locator("#live-note"))) is (live == "polling")


def test_the_step_that_failed_the_pipeline_opens_with_its_log(ui: UI, server: ServerProcess, tmp_path: Path) -> None:
    page, _ = ui
    job = httpx.post(
        f"{server.url}/api/tasks/pipe_flaky/jobs",
        json={"counter": str(tmp_path / "c"), "marker": str(tmp_path / "missing")},
    ).json()
    assert httpx.get(f"{server.url}/api/jobs/{job['id']}", params={"wait": 30}, timeout=60).json()["status"] == "failed"
    page.goto(f"{server.url}/jobs/{job['id']}")
    flaky = page.locator('#steps details[data-step="flaky"]')
    assert flaky.evaluate("d => d.open")
    assert not page.locator('#steps details[data-step="optional"]').evaluate("d => d.open")  # allowed to fail
    page.locator('#steps pre[data-step-log="flaky"]', has_text="RuntimeError: marker missing").wait_for()
    assert "marker missing" in text_of(flaky.locator("pre.error"))


# -- a newcomer's first hour: phones, error pages, the login page of a server with no users ---------
PHONE: ViewportSize = {"width": 375, "height": 812}


def add_user(server: ServerProcess, name: str, password: str) -> None:
    import subprocess
    import sys

    subprocess.run(
        [
            sys.executable,
            "-m",
            "mieruka.cli",
            "users",
            "add",
            name,
            "--role",
            "admin",
            "--password-stdin",
            "--home",
            str(server.home),
        ],
        input=password.encode(),
        check=True,
        capture_output=True,
    )


def log_in(page: Page, server: ServerProcess, name: str, password: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the server notices its first user within a second
        page.goto(f"{server.url}/login")
        if page.locator("#no-users").count() == 0:
            break
        time.sleep(0.2)
    page.locator('[name="name"]').fill(name)
    page.locator('[name="password"]').fill(password)
    page.get_by_role("button", name="Log in").click()
    page.locator("#me").wait_for()


def test_every_page_fits_a_phone(browser: Browser, tmp_path: Path) -> None:
    """At 375 px nothing scrolls sideways but the boxes of wide tables, charts and code; the demo app
    has every kind of page (dashboards and streams too), and a signed-in admin the longest header."""
    from tests.conftest import running_server

    with running_server(tmp_path / "home", "--workers", "1", app_ref="mieruka.demo:app") as demo:
        job = httpx.post(f"{demo.url}/api/tasks/make_report/jobs", json={}).json()
        failed = httpx.post(f"{demo.url}/api/tasks/fail_on_purpose/jobs", json={}).json()
        for done in (job, failed):
            assert httpx.get(f"{demo.url}/api/jobs/{done['id']}", params={"wait": 30}, timeout=60).json()["finished_at"]
        add_user(demo, "phoebe", "a phone-sized password")
        outside: list[str] = []
        page = open_page(browser, demo, outside)
        page.set_viewport_size(PHONE)
        log_in(page, demo, "phoebe", "a phone-sized password")
        wide = []
        for path in (
            "/",
            "/tasks/all_the_types",
            "/tasks/make_report",
            "/jobs",
            f"/jobs/{job['id']}",
            f"/jobs/{failed['id']}",
            "/workers",
            "/dashboards",
            "/dashboards/demo",
            "/streams/signal",
            "/users",
            "/audit",
            "/account",
            "/presence",
            "/jobs/99999",
            "/tasks/nope",
            "/docs",
        ):
            page.goto(f"{demo.url}{path}")
            page.wait_for_load_state("load")
            width = page.evaluate("document.documentElement.scrollWidth")
            if width > PHONE["width"]:
                wide.append(f"{path}: {width} px")
            if path in ("/jobs", "/audit"):  # a filter form: its fields in a column, its buttons below them
                fields = page.locator("form.filters fieldset").bounding_box()
                actions = page.locator("form.filters .filter-actions").bounding_box()
                assert fields is not None and actions is not None
                assert actions["y"] >= fields["y"] + fields["height"] - 1, (path, fields, actions)
                assert fields["width"] > PHONE["width"] * 0.8, (path, fields)
        page.close()
        assert wide == [], f"pages wider than a phone: {wide}"
        assert outside == []


def test_an_error_is_a_page_with_the_header_and_a_way_back(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    page.goto(f"{server.url}/jobs/99999", referer=f"{server.url}/jobs")  # as a link on /jobs would
    assert page.locator("h1").text_content() == "Not found"
    assert "no job with id 99999" in text_of(page.locator(".error-message"))
    assert page.locator("header.topbar").get_by_role("link", name="Workers").count() == 1
    favicon = page.locator('link[rel="icon"]').get_attribute("href")
    assert favicon is not None and favicon.startswith("/static/favicon.svg?v=")
    page.locator("#error-back").click()
    page.wait_for_url(f"{server.url}/jobs")
    page.goto(f"{server.url}/tasks/nope")
    page.get_by_role("link", name="All tasks").click()
    page.get_by_role("link", name="Progress steps").first.wait_for()


def test_a_finished_job_without_output_says_so(ui: UI, server: ServerProcess) -> None:
    page, _ = ui
    job = httpx.post(f"{server.url}/api/tasks/add/jobs", json={"a": 1, "b": 2}).json()
    assert (
        httpx.get(f"{server.url}/api/jobs/{job['id']}", params={"wait": 20}, timeout=50).json()["status"] == "succeeded"
    )
    page.goto(f"{server.url}/jobs/{job['id']}")
    shown = page.locator("#log").evaluate("el => getComputedStyle(el, '::before').content")
    assert shown == '"no output"'


def test_behind_a_proxy_with_no_users_the_login_page_says_why(browser: Browser, server: ServerProcess) -> None:
    context = browser.new_context(extra_http_headers={"X-Forwarded-For": "203.0.113.7"})
    page = context.new_page()
    page.goto(f"{server.url}/jobs")
    page.wait_for_url("**/login?next=*")
    note = page.locator("#no-users")
    assert "Nobody can log in yet" in text_of(note)
    assert "mieruka users add NAME --role admin" in text_of(note)
    context.close()
