"""Chart axes read as the tables do: ISO dates and 24-hour times in the configured time zone, and
large numbers in a compact form that a narrow axis does not cut (2.4M, 12M, 950K); in the page's
language (Japanese 2026/04/12 and 2500万, Russian 12.04.2026 and 25 млн)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import ServerProcess, open_page, running_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytest.importorskip("pandas")


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
    # 20:00 to 05:50 the next day in Tokyo: ISO dates where the day changes, 24-hour times.
    assert x and all(re.fullmatch(r"(\d{4}-\d\d-\d\d\n)?\d\d:\d\d", v) for v in x), x
    assert x[0].startswith("2026-04-12\n") and any(v.startswith("2026-04-13\n") for v in x), x
    assert not any(re.search(r"am|pm|/", v, re.I) for v in x), x
    assert y and all(re.fullmatch(r"0|\d+(\.\d+)?M", v) for v in y) and "25M" in y, y  # 2.4 to 26 million
    page.wait_for_function("() => window.Chart && Object.values(Chart.instances).length > 0", timeout=20_000)
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
    assert re.fullmatch(day + r"\n20:00", x[0]), x  # 24-hour times in every language
    assert all(re.fullmatch(r"(.+\n)?\d\d:\d\d", v) for v in x), x
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
