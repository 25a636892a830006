"""Dashboard controls in Chromium (tests/controls_app.py on a real server): a press in one browser
shows in another's controls; a viewer sees them disabled with why; a dangerous one asks in the
page's dialog first; a failing task's error shows in place; the panel lays out on a phone. No request
leaves the server."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest

from tests.conftest import ServerProcess, running_server, text_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

PASSWORD = "a long password"
USERS = {"vic": "viewer", "olga": "operator", "oskar": "operator"}


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from tests.controls_app import app

    folder = tmp_path_factory.mktemp("controls")
    home = folder / "home"
    app._settings = None
    app.configure(home=str(home))
    app.auth.db.migrate()
    for name, role in USERS.items():
        app.auth.accounts.add_user(name, role, PASSWORD)
    app._settings = None
    # A press waits a second at most: longer tasks are followed by the page to their end.
    env = {"CONTROLS_DIR": str(folder / "device"), "MIERUKA_RUN_WAIT_MAX": "1"}
    with running_server(home, "--workers", "2", app_ref="tests/controls_app.py:app", env=env) as server:
        yield {"server": server, "device": folder / "device" / "device.json"}


def device(panel: dict[str, Any]) -> dict[str, Any]:
    path: Path = panel["device"]
    return json.loads(path.read_text()) if path.exists() else {}


def signed_in(
    browser: Browser, server: ServerProcess, who: str, outside: list[str], width: int = 1280
) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    local = urlparse(server.url).netloc

    def guard(route: Route) -> None:
        if urlparse(route.request.url).netloc != local and not route.request.url.startswith("data:"):
            outside.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    context.route("**/*", guard)
    page = context.new_page()
    page.goto(f"{server.url}/login?next=/dashboards/panel")
    page.fill("input[name=name]", who)
    page.fill("input[name=password]", PASSWORD)
    page.click("form button[type=submit]")
    page.wait_for_url("**/dashboards/panel")
    # Live once its state tiles arrived (the page script took them over).
    page.wait_for_function("() => document.querySelector('#control-relay-1').dataset.state !== undefined")
    return context, page


def wait_until(page: Page, script: str, arg: Any = None, timeout: float = 20_000) -> None:
    page.wait_for_function(script, arg=arg, timeout=timeout)


def test_a_press_in_one_browser_shows_in_another(browser: Browser, panel: dict[str, Any]) -> None:
    server: ServerProcess = panel["server"]
    outside: list[str] = []
    first_context, first = signed_in(browser, server, "olga", outside)
    second_context, second = signed_in(browser, server, "oskar", outside)
    try:
        # A toggle: relay 2 starts on; olga switches it off, oskar's switch follows.
        on = not bool(device(panel).get("relay2", 1))
        first.locator("#control-relay-2 input[role=switch]").click()
        first.locator("#control-relay-2 .control-result", has_text="✓").wait_for()
        assert device(panel)["relay2"] == int(on)
        wait_until(second, "on => document.querySelector('#control-relay-2 input').checked === on", on)
        assert text_of(second.locator("#control-relay-2 .control-switch-text")) == ("On" if on else "Off")
        assert "job" in text_of(first.locator("#control-relay-2 .control-result"))

        # A select: the mode.
        first.locator("#control-set-mode select").select_option(label="manual")
        first.locator("#control-set-mode .control-result", has_text="✓ manual").wait_for()
        wait_until(
            second,
            "() => { const s = document.querySelector('#control-set-mode select');"
            " return s.options[s.selectedIndex].text === 'manual'; }",
        )

        # A slider whose state is a stream's series: the fan.
        slider = first.locator("#control-fan input[type=range]")
        slider.focus()
        start = int(slider.input_value())
        before = len(first_context.request.get(f"{server.url}/api/jobs?task=set_fan").json()["jobs"])
        for _ in range(3):  # three steps (5 each) up with the keyboard: one press, of where they ended
            slider.press("ArrowRight")
        first.locator("#control-fan .control-result", has_text=f"fan at {start + 15}%").wait_for()
        wait_until(second, "v => document.querySelector('#control-fan output').textContent === String(v)", start + 15)
        wait_until(second, "v => +document.querySelector('#control-fan input').value === v", start + 15)
        after = first_context.request.get(f"{server.url}/api/jobs?task=set_fan").json()["jobs"]
        assert len(after) == before + 1, after

        # A number: typed, then Set.
        first.locator("#control-set-target input[type=number]").fill("23.5")
        first.locator("#control-set-target button").click()
        first.locator("#control-set-target .control-result", has_text="✓ 23.5").wait_for()
        wait_until(second, "() => document.querySelector('#control-set-target input').value === '23.5'")

        # A small form.
        first.locator("#control-blink-led-2 input[name=times]").fill("2")
        first.locator("#control-blink-led-2 button[type=submit]").click()
        first.locator("#control-blink-led-2 .control-result", has_text="LED 2 blinked 2 times").wait_for()

        # A button is pressed once however often it is clicked while its task runs.
        warm = first.locator("#control-warm-up button")
        warm.click()
        assert warm.is_disabled()
        warm.click(force=True)  # a disabled button takes no click
        first.locator("#control-warm-up .control-result", has_text="✓ warm").wait_for()
        assert warm.is_enabled()
        jobs = first_context.request.get(f"{server.url}/api/jobs?task=warm_up").json()["jobs"]
        assert len(jobs) == 1, jobs

        # A task longer than the server's wait: the page follows its job to the end, then has its
        # state's source read again (an on-demand one here, read when the server stopped waiting).
        slow = first.locator("#control-slow-level")
        slow.locator("input").fill("9")
        # Every text the result shows, however briefly (a loaded browser may skip a frame or two).
        first.evaluate(
            """() => {
                const control = document.querySelector('#control-slow-level');
                window.slowSaid = [];
                new MutationObserver(() => {
                  const said = control.querySelector('.control-result')?.textContent || '';
                  if (said !== window.slowSaid[window.slowSaid.length - 1]) window.slowSaid.push(said);
                }).observe(control, { childList: true, subtree: true, characterData: true });
            }"""
        )
        slow.locator("button").click()
        try:
            slow.locator(".control-result", has_text="✓ 9").wait_for()
        finally:
            said = first.evaluate("() => window.slowSaid")
            print("the slow control said", said)  # shown with a failure
        # "still queued" when a busy machine's worker had not taken the job when the server stopped waiting
        assert any(re.search(r"still (queued|running)", text) for text in said), said
        wait_until(first, "() => document.querySelector('#control-slow-level .control-value')?.textContent === '9'")
        wait_until(second, "() => document.querySelector('#control-level input').value === '9'")

        # A task that fails says why, in place; the page stays.
        first.locator("#control-overheat button").click()
        failed = first.locator("#control-overheat .control-result.error")
        failed.wait_for()
        assert "the board is too hot to switch" in text_of(failed)
        assert first.url.endswith("/dashboards/panel")
    finally:
        first_context.close()
        second_context.close()
    assert outside == []


def test_a_dangerous_control_asks_first(browser: Browser, panel: dict[str, Any]) -> None:
    server: ServerProcess = panel["server"]
    outside: list[str] = []
    context, page = signed_in(browser, server, "olga", outside)
    try:
        resets = device(panel).get("resets", 0)
        page.locator("#control-reset-board button").click()
        dialog = page.locator("#control-confirm")
        dialog.wait_for(state="visible")
        assert text_of(dialog.locator(".control-question")) == "Reset the board now?"
        dialog.locator("[data-answer=cancel]").click()
        dialog.wait_for(state="hidden")
        time.sleep(1.0)  # a press would have answered by now
        assert device(panel).get("resets", 0) == resets
        assert text_of(page.locator("#control-reset-board .control-result")) == ""
        page.locator("#control-reset-board button").click()
        dialog.wait_for(state="visible")
        page.keyboard.press("Escape")  # the browser's own way out is a no too
        dialog.wait_for(state="hidden")
        assert device(panel).get("resets", 0) == resets
        page.locator("#control-reset-board button").click()
        dialog.locator("[data-answer=confirm]").click()
        page.locator("#control-reset-board .control-result", has_text="✓ hard reset").wait_for()
        assert device(panel)["resets"] == resets + 1
    finally:
        context.close()
    assert outside == []


def test_a_viewer_sees_them_disabled_with_why_and_a_phone_lays_them_out(
    browser: Browser, panel: dict[str, Any]
) -> None:
    server: ServerProcess = panel["server"]
    outside: list[str] = []
    context, page = signed_in(browser, server, "vic", outside, width=375)
    try:
        for control in ("relay-1", "fan", "set-target", "set-mode", "reset-board", "blink-led-2"):
            box = page.locator(f"#control-{control}")
            inputs = box.locator("input:not([type=hidden]), button, select")
            assert inputs.count() and all(inputs.nth(i).is_disabled() for i in range(inputs.count())), control
            assert text_of(box.locator(".control-why")) == "Operators can use this control"
            assert box.locator(".control-why").is_visible()
        before = device(panel)
        page.locator("#control-relay-1 input[role=switch]").click(force=True)
        time.sleep(1.0)
        assert device(panel) == before
        assert page.locator("#control-relay-1 input").is_checked() == bool(before.get("relay1"))
        # One column at 375 px: nothing wider than the screen, every control as wide as the grid.
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 375, f"the page is {width} px wide"
        boxes = [page.locator(f"#control-{c}").bounding_box() for c in ("relay-1", "fan", "blink-led-2")]
        assert all(b is not None and b["width"] > 300 and b["x"] + b["width"] <= 375 for b in boxes), boxes
        lefts = {round(b["x"]) for b in boxes if b is not None}
        assert len(lefts) == 1, lefts
        Path("/tmp/shots_b").mkdir(exist_ok=True)
        page.screenshot(path="/tmp/shots_b/viewer_375.png", full_page=True)
    finally:
        context.close()
    assert outside == []


def test_where_streaming_cannot_work_the_controls_poll(browser: Browser, panel: dict[str, Any]) -> None:
    """With the event stream blocked (a buffering proxy), the page polls: the states of a source's
    column and of a stream's series still follow presses made elsewhere."""
    server: ServerProcess = panel["server"]
    outside: list[str] = []
    context, page = signed_in(browser, server, "olga", outside)
    try:
        # No EventSource: the page polls (as where a proxy buffers the stream).
        page.add_init_script("delete window.EventSource;")
        page.reload()
        page.locator("#live-note", has_text="polling").wait_for(timeout=30_000)
        relay = not page.locator("#control-relay-1 input").is_checked()
        for control, body in (("relay-1", {"value": relay}), ("dial", {"value": 64})):
            answer = context.request.post(
                f"{server.url}/api/dashboards/panel/controls/{control}",
                data=json.dumps(body),
                headers={"Content-Type": "application/json", "X-CSRF-Token": csrf_of(page)},
            )
            assert answer.status == 200, answer.text()
        wait_until(page, "on => document.querySelector('#control-relay-1 input').checked === on", relay)
        wait_until(page, "() => document.querySelector('#control-dial input').value === '64'")
    finally:
        context.close()
    assert outside == []


def csrf_of(page: Page) -> str:
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token, "the page carries no CSRF token"
    return token
