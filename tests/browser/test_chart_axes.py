"""Chart axes read as the tables do: ISO dates and 24-hour times in the configured time zone, and
large numbers in a compact form that a narrow axis does not cut (2.4M, 12M, 950K); in the page's
language (Japanese 2026/04/12 and 2500万, Russian 12.04.2026 and 25 млн)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import UI_WAIT, ServerProcess, open_page, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytest.importorskip("pandas")

# The labels of the time axis of a tile's uPlot chart, line by line, as [line, left, right] in CSS
# pixels where they are drawn.
TIME_LABELS = """(tile) => {
  const u = tile.uplot, axis = u.axes[0], measure = document.createElement('canvas').getContext('2d');
  measure.font = axis.font[0];
  return axis._values.flatMap((text, i) => text.split('\\n').map((line, row) => {
    const x = u.valToPos(axis._splits[i], 'x'), half = measure.measureText(line).width / devicePixelRatio / 2;
    return [row, x - half, x + half];
  }));
}"""


def overlapping(boxes: list[list[float]]) -> list[str]:
    """Where two labels of a time axis (TIME_LABELS), on the same line, run into each other."""
    problems = []
    for line in (0, 1):
        on_line = sorted((left, right) for row, left, right in boxes if row == line)
        for (left, right), (next_left, _) in zip(on_line, on_line[1:], strict=False):
            if next_left < right + 2:
                problems.append(f"line {line}: {left:.0f}..{right:.0f} runs into the next at {next_left:.0f}")
    return problems


@pytest.fixture(scope="module")
def axes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("axes") / "home"
    with running_server(home, app_ref="tests/axes_app.py:app") as server:
        yield server


def test_axes_show_iso_times_in_the_zone_and_compact_numbers(
    browser: Browser, axes: ServerProcess, tmp_path: Path
) -> None:
    outside: list[str] = []
    page = open_page(browser, axes, outside)
    page.goto(f"{axes.url}/dashboards/axes")
    page.wait_for_function(
        "() => { const t = [...document.querySelectorAll('.tile')].find(e => e.uplot);"
        " return t && t.uplot.axes[0]._values && t.uplot.axes[1]._values; }",
        timeout=20_000,
    )
    x, y = page.evaluate(
        "() => { const u = [...document.querySelectorAll('.tile')].find(e => e.uplot).uplot;"
        " return [u.axes[0]._values, u.axes[1]._values]; }"
    )
    page.screenshot(path=str(tmp_path / "axes.png"), full_page=True)
    # 20:00 to 05:50 the next day in Tokyo: 24-hour times, the ISO date under the first and where
    # the day changes.
    assert x and all(re.fullmatch(r"\d\d:\d\d(\n\d{4}-\d\d-\d\d)?", v) for v in x), x
    assert x[0].endswith("\n2026-04-12") and any(v.endswith("\n2026-04-13") for v in x), x
    assert not any(re.search(r"am|pm|/", v, re.I) for v in x), x
    assert y and all(re.fullmatch(r"0|\d+(\.\d+)?M", v) for v in y) and "25M" in y, y  # 2.4 to 26 million
    page.wait_for_function("() => window.Chart && Object.values(Chart.instances).length > 0", timeout=UI_WAIT)
    bars = page.evaluate("() => Object.values(Chart.instances)[0].scales.y.ticks.map(t => t.label)")
    assert "12M" in bars and all(re.fullmatch(r"0|\d+(\.\d+)?[KM]", v) for v in bars), bars
    page.close()
    assert outside == []


@pytest.mark.parametrize(
    ("language", "day", "number"),
    [("ja", r"2026/04/12", r"0|\d+万"), ("ru", r"12\.04\.2026", r"0|\d+(,\d+)?\xa0млн")],
)
def test_axes_speak_the_pages_language(
    browser: Browser, axes: ServerProcess, tmp_path: Path, language: str, day: str, number: str
) -> None:
    outside: list[str] = []
    page = open_page(browser, axes, outside)
    page.set_extra_http_headers({"Accept-Language": language})
    page.goto(f"{axes.url}/dashboards/axes")
    assert page.evaluate("document.documentElement.lang") == language
    page.wait_for_function(
        "() => { const t = [...document.querySelectorAll('.tile')].find(e => e.uplot);"
        " return t && t.uplot.axes[0]._values && t.uplot.axes[1]._values; }",
        timeout=20_000,
    )
    x, y, size = page.evaluate(
        "() => { const u = [...document.querySelectorAll('.tile')].find(e => e.uplot).uplot;"
        " return [u.axes[0]._values, u.axes[1]._values, u.axes[1]._size]; }"
    )
    page.screenshot(path=str(tmp_path / f"axes-{language}.png"), full_page=True)
    assert re.fullmatch(r"20:00\n" + day, x[0]), x  # 24-hour times in every language
    assert all(re.fullmatch(r"\d\d:\d\d(\n.+)?", v) for v in x), x
    assert y and all(re.fullmatch(number, v) for v in y), y
    # The value axis is as wide as its longest label: none is cut at the chart's left edge.
    widest = page.evaluate(
        "(labels) => { const c = document.createElement('canvas').getContext('2d');"
        " c.font = [...document.querySelectorAll('.tile')].find(e => e.uplot).uplot.axes[1].font[0];"
        " return Math.max(...labels.map(l => c.measureText(l).width)) / devicePixelRatio; }",
        y,
    )
    assert size >= widest, (size, widest, y)
    page.close()
    assert outside == []


# The line chart redrawn over each range of seconds (61 points ending on 2026-04-12 20:00 in Tokyo),
# and its time labels after each (TIME_LABELS). The source refreshes hourly: nothing redraws it meanwhile.
SWEEP = f"""async (ranges) => {{
  const tile = [...document.querySelectorAll('.tile')].find(e => e.uplot), u = tile.uplot, out = [];
  const end = Date.UTC(2026, 3, 12, 11) / 1000;
  for (const range of ranges) {{
    const xs = Array.from({{length: 61}}, (_, i) => end - range + range * i / 60);
    u.setData([xs, xs.map((_, i) => 1000 + i)]);
    await new Promise(resolve => setTimeout(resolve, 0));  // uPlot draws in a microtask
    out.push([range, ({TIME_LABELS})(tile)]);
  }}
  return out;
}}"""
RANGES = [20, 45, 87, 150, 300, 900, 3600, 6 * 3600, 86400, 3 * 86400, 40 * 86400]


@pytest.mark.parametrize("width", [1280, 600, 375])
def test_time_labels_keep_apart(browser: Browser, axes: ServerProcess, width: int) -> None:
    """Ticks are as far apart as their labels are wide, over seconds to weeks: at uPlot's 50 px,
    "07:09:10" ran into the next time on a narrow chart, and a date above a time into the next
    time (the date now goes under its time, as uPlot puts it)."""
    outside: list[str] = []
    page = open_page(browser, axes, outside)
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"{axes.url}/dashboards/axes")
    page.wait_for_function(
        "() => { const t = [...document.querySelectorAll('.tile')].find(e => e.uplot);"
        " return t && t.uplot.axes[0]._values; }",
        timeout=20_000,
    )
    problems = []
    for seconds, boxes in page.evaluate(SWEEP, RANGES):
        if len([box for box in boxes if box[0] == 0]) < 2:
            problems.append(f"{seconds} s: fewer than 2 labels, no scale to read")
        problems += [f"{seconds} s: {problem}" for problem in overlapping(boxes)]
    assert not problems, "\n".join(problems)
    page.close()
    assert outside == []
