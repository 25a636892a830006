"""Scenario 4 in real browsers (examples/device_panel): an admin presses every control of the panel
and a viewer's page, open at the same time in another browser session, sees the readings change,
with its own controls disabled and saying why."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.test_chart_axes import TIME_LABELS, overlapping
from tests.browser.test_ui_browser import log_in
from tests.conftest import open_page, shared_server, text_of
from tests.servers.test_device_panel import PanelServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WAIT = 30_000  # ms: a reading is taken once a second; a loaded machine may lag


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[PanelServer]:
    home = tmp_path_factory.mktemp("device-panel-browser") / "home"
    with shared_server(PanelServer(home), request) as proc:
        yield proc


def signed_in(browser: Browser, panel: PanelServer, user: str, outside: list[str]) -> Page:
    """The user's own browser session on the panel; an error in its console (a script's, or a
    Content-Security-Policy violation) is added to `outside` too."""
    page = open_page(browser, panel, outside)
    page.on("console", lambda message: outside.append(message.text) if message.type == "error" else None)
    log_in(page, panel, user, f"{user}'s password")
    page.goto(f"{panel.url}/dashboards/panel")
    page.locator('.tile[data-points]:not([data-points="0"])').first.wait_for(timeout=WAIT)
    return page


def reads(page: Page, control: str, value: str) -> None:
    """Waits until the page's control shows the device's state `value` (as the stream read it)."""
    page.locator(f'#control-{control}[data-state="{value}"]').wait_for(timeout=WAIT)


def charted(page: Page, chart: str, series: str, value: str) -> None:
    """Waits until the chart titled `chart` shows `value` as the newest reading of `series` (its
    legend, with the pointer off the chart)."""
    page.wait_for_function(
        """([chart, series, value]) => [...document.querySelectorAll('.tile')].some(tile =>
          tile.querySelector('.tile-title').textContent === chart && [...tile.querySelectorAll('.u-legend tr')]
            .some(row => row.querySelector('th').textContent.trim() === series
              && row.querySelector('.u-value').textContent === value))""",
        arg=[chart, series, value],
        timeout=WAIT,
    )


def answered(page: Page, control: str, text: str) -> None:
    page.locator(f"#control-{control} .control-result.ok", has_text=text).wait_for(timeout=WAIT)


def test_every_control_pressed_in_one_browser_shows_in_the_other(browser: Browser, panel: PanelServer) -> None:
    outside: list[str] = []
    # Two sessions (new_page: each its own context), as two people at two screens.
    admin = signed_in(browser, panel, "ada", outside)
    viewer = signed_in(browser, panel, "vera", outside)

    # The viewer watches: every control is there, disabled, and says why.
    assert viewer.locator(".control").count() == admin.locator(".control").count() == 9
    assert viewer.locator('.control[data-disabled="true"] fieldset[disabled]').count() == 9
    assert text_of(viewer.locator("#control-lamp .control-why")) == "Operators can use this control"
    assert text_of(viewer.locator("#control-reset-the-board .control-why")) == "Admins can use this control"
    assert admin.locator('.control[data-disabled="true"]').count() == 0
    for control in ("heater", "lamp", "pump", "thermostat"):
        reads(viewer, control, "0")

    for control in ("heater", "lamp", "pump"):
        admin.locator(f"#control-{control} .control-input").click()
        answered(admin, control, f"{control} on")
        reads(viewer, control, "1")
        assert viewer.locator(f"#control-{control} .control-input").is_checked()
        assert text_of(viewer.locator(f"#control-{control} .control-value")) == "on"
        charted(viewer, "Relays (1 on, 0 off)", control, "1")  # the chart's newest reading too

    admin.locator("#control-pump .control-input").click()  # off again, for the timed run below
    reads(viewer, "pump", "0")

    admin.locator("#control-thermostat .control-input").click()
    answered(admin, "thermostat", "thermostat keeps 21 °C")
    reads(viewer, "thermostat", "1")

    admin.locator("#control-target-c .control-input").fill("24.5")
    admin.locator("#control-target-c button", has_text="Set").click()
    answered(admin, "target-c", "target 24.5 °C")
    reads(viewer, "target-c", "24.5")
    charted(viewer, "Temperature (°C)", "target", "24.5")
    assert viewer.locator("#control-target-c .control-input").input_value() == "24.5"

    slider = admin.locator("#control-fan .control-input")
    slider.evaluate(
        "(el) => { el.value = 40; el.dispatchEvent(new Event('input')); el.dispatchEvent(new Event('change')); }"
    )
    answered(admin, "fan", "fan at 40 %")
    reads(viewer, "fan", "40")
    assert viewer.locator("#control-fan .control-input").input_value() == "40"
    charted(viewer, "Fan and LED (%)", "fan", "40")

    admin.locator("#control-led .control-input").select_option(label="50")
    answered(admin, "led", "LED at 50 %")
    reads(viewer, "led", "50")
    assert viewer.locator("#control-led .control-input option:checked").inner_text() == "50"

    # The form: the pump runs for its seconds, then stops; the viewer sees it on, then off.
    admin.locator('#control-run-the-pump [name="seconds"]').fill("3")
    admin.locator("#control-run-the-pump button", has_text="Run the pump").click()
    reads(viewer, "pump", "1")
    answered(admin, "run-the-pump", "pumped for 3 s")
    reads(viewer, "pump", "0")

    # The dangerous button asks first: cancelled, nothing changes; confirmed, everything is off.
    admin.locator("#control-reset-the-board .control-press").click()
    dialog = admin.locator("#control-confirm")
    assert "Switch every output off" in text_of(dialog)
    dialog.locator('[data-answer="cancel"]').click()
    admin.wait_for_timeout(1500)
    assert admin.locator("#control-reset-the-board .control-result").inner_text() == ""
    reads(viewer, "lamp", "1")
    admin.locator("#control-reset-the-board .control-press").click()
    dialog.locator('[data-answer="confirm"]').click()
    answered(admin, "reset-the-board", "every output off")
    for control, value in [("heater", "0"), ("lamp", "0"), ("thermostat", "0"), ("fan", "0"), ("led", "0")]:
        reads(viewer, control, value)
    reads(viewer, "target-c", "21")
    assert not viewer.locator("#control-lamp .control-input").is_checked()
    admin.close()
    viewer.close()
    assert outside == []


def test_the_audit_page_says_who_pressed_what(browser: Browser, panel: PanelServer) -> None:
    """The entry of a press names the pressing user, the task and its parameters."""
    outside: list[str] = []
    admin = signed_in(browser, panel, "ada", outside)
    admin.locator("#control-lamp .control-input").click()
    answered(admin, "lamp", "lamp")
    row = admin.locator("tbody tr").first  # newest first
    deadline = time.monotonic() + 30
    while True:  # an entry is written once the answer has gone
        admin.goto(f"{panel.url}/audit")
        if "control.press" in text_of(row) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [text_of(cell).strip() for cell in row.locator("td").all()[1:3]] == ["ada", "control.press"]
    what = text_of(row.locator(".audit-what"))
    assert "switch" in what and "lamp" in what, what  # the task and its parameters
    admin.close()
    assert outside == []


# Each uPlot chart of the page with points, drawn at its tile's width: its time axis' labels
# (TIME_LABELS), its axis type's size, its legend's values, and where its tile ends beside the grid's.
CHARTS = f"""() => [...document.querySelectorAll('.tile')].filter(e => e.uplot && e.uplot.axes[0]._values
    && +e.dataset.points > 0 && e.uplot.width <= e.getBoundingClientRect().width).map(e => {{
  const box = e.getBoundingClientRect(), grid = e.parentElement.getBoundingClientRect();
  return {{title: e.querySelector('.tile-title').textContent, boxes: ({TIME_LABELS})(e),
    legend: [...e.querySelectorAll('.u-legend .u-value')].map(v => v.textContent),
    px: parseFloat(e.uplot.axes[0].font[0]) / devicePixelRatio, top: box.top, right: box.right, end: grid.right}};
}})"""


def charts_of(page: Page) -> list[dict[str, Any]]:
    page.wait_for_function(f"() => ({CHARTS})().length === 3", timeout=WAIT)
    charts: list[dict[str, Any]] = page.evaluate(CHARTS)
    return charts


@pytest.mark.parametrize("width", [1280, 375])
def test_the_readings_read_clearly(browser: Browser, panel: PanelServer, width: int) -> None:
    """The charts a stranger looks at first: each time label clear of the next (they ran into each
    other at 375 px and on the half-width charts), and the legend saying each reading's newest
    value (it said "--" until the pointer was on the chart); nothing wider than the window."""
    outside: list[str] = []
    page = signed_in(browser, panel, "vera", outside)
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_function(f"() => document.documentElement.scrollWidth <= {width}", timeout=WAIT)
    problems = []
    for chart in charts_of(page):
        problems += [f"{chart['title']}: {problem}" for problem in overlapping(chart["boxes"])]
        if not chart["legend"] or "--" in chart["legend"]:
            problems.append(f"{chart['title']}: the legend shows {chart['legend']}")
    assert not problems, "\n".join(problems)
    temperature = next(c for c in charts_of(page) if c["title"].startswith("Temperature"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", temperature["legend"][0]), temperature["legend"]
    assert float(temperature["legend"][2]) == 21  # the target, as the board starts
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.close()
    assert outside == []


def test_the_kiosk_layout_fills_its_rows_in_large_type(browser: Browser, panel: PanelServer) -> None:
    """Without its controls (a wall screen), the panel's charts close the gaps the controls left: the
    temperature chart, three columns of four beside the reset button, runs the width of the screen;
    the axes' type grows with the screen's."""
    outside: list[str] = []
    page = signed_in(browser, panel, "vera", outside)
    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{panel.url}/dashboards/panel?kiosk=1")
    charts = charts_of(page)
    for chart in charts:
        assert abs(chart["right"] - chart["end"]) < 2 or any(
            c["top"] == chart["top"] and c["right"] > chart["right"] for c in charts
        ), f"{chart['title']} leaves a hole to its right: {charts}"
        assert chart["px"] > 12, chart
        assert not overlapping(chart["boxes"]), (chart["title"], overlapping(chart["boxes"]))
    assert page.locator(".control").count() == 0
    page.close()
    assert outside == []
