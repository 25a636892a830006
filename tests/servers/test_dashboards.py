"""Dashboards end to end on a real server (tests/dash_app.py): the API of sources, dashboards and
streams, event streams with resume, and a real browser watching tiles change without a reload."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import UI_WAIT, ServerProcess, attribute_of, open_page, shared_server, text_of

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

APP = "tests/dash_app.py:app"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dash")


@pytest.fixture(scope="module")
def dash(data_dir: Path, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    proc = ServerProcess(APP, data_dir / "home", "--workers", "1", env={"DASH_DIR": str(data_dir)})
    with shared_server(proc, request) as server:
        yield server


def set_value(data_dir: Path, value: dict[str, int] | str) -> None:
    target = data_dir / "value.json"
    temp = data_dir / "value.tmp"
    temp.write_text(value if isinstance(value, str) else json.dumps(value))
    temp.replace(target)  # atomic: the source never reads half a file


def refresh(server: ServerProcess, name: str) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/sources/{name}/refresh", params={"wait": 20}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Events of an SSE response as {"event", "id", "data"} dicts."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in event:
                event["data"] = json.loads(event["data"])
                yield event
            event = {}
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            event[key] = value[1:] if value.startswith(" ") else value


# -- API -----------------------------------------------------------------------------------------
def test_sources_report_their_status_and_serve_their_data(dash: ServerProcess, data_dir: Path) -> None:
    set_value(data_dir, {"A": 3, "B": 4})
    state = refresh(dash, "counter")
    assert state["error"] is None and state["rows"] == 2 and state["kind"] == "function"
    assert state["schedule"] == "every 1s" and state["columns"] == ["ward", "patients"]
    names = [s["name"] for s in httpx.get(f"{dash.url}/api/sources").json()]
    assert names == ["counter", "wards", "lookup", "series"]
    data = httpx.get(f"{dash.url}/api/sources/wards/data").json()
    assert data["columns"] == ["ward", "patients"] and data["rows"] == [["A", 10], ["B", 20], ["C", 30]]
    page = httpx.get(f"{dash.url}/api/sources/wards/data", params={"offset": 1, "limit": 1}).json()
    assert page["rows"] == [["B", 20]] and page["total"] == 3
    csv = httpx.get(f"{dash.url}/api/sources/wards/data", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.headers["content-disposition"] == 'attachment; filename="wards.csv"'
    assert csv.text.splitlines() == ["ward,patients", "A,10", "B,20", "C,30"]


@pytest.mark.parametrize(
    "path, status, code",
    [
        ("/api/sources/nope", 404, "not_found"),
        ("/api/sources/nope/data", 404, "not_found"),
        ("/api/sources/wards/data?format=xml", 422, "validation_error"),
        ("/api/sources/wards/data?limit=0", 422, "validation_error"),
        ("/api/dashboards/nope", 404, "not_found"),
        ("/api/streams/nope/events", 404, "not_found"),
        ("/dashboards/nope", 404, "not_found"),
    ],
)
def test_bad_requests_get_the_one_error_shape(dash: ServerProcess, path: str, status: int, code: str) -> None:
    response = httpx.get(dash.url + path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]


def test_a_parameter_carrying_sql_injection_is_harmless(dash: ServerProcess, data_dir: Path) -> None:
    (data_dir / "ward.txt").write_text("B")
    state = refresh(dash, "lookup")
    assert state["rows"] == 1
    for attack in ("A' OR '1'='1", "A'; DROP TABLE wards; --", "A' UNION SELECT token, 1 FROM secrets --"):
        (data_dir / "ward.txt").write_text(attack)
        state = refresh(dash, "lookup")
        assert state["error"] is None and state["rows"] == 0, state
    with sqlite3.connect(data_dir / "wards.db") as db:
        assert db.execute("SELECT COUNT(*) FROM wards").fetchone() == (3,)
        assert db.execute("SELECT token FROM secrets").fetchall() == [("keep me",)]


def test_a_long_series_is_downsampled_on_the_server(dash: ServerProcess) -> None:
    board = httpx.get(f"{dash.url}/api/dashboards/ops", timeout=30).json()
    signal = next(t for t in board["tiles"] if t["chart"] == "signal")
    if signal["data"] is None:
        refresh(dash, "series")
        board = httpx.get(f"{dash.url}/api/dashboards/ops").json()
        signal = next(t for t in board["tiles"] if t["chart"] == "signal")
    data = signal["data"]
    assert data["total"] == 200_000 and data["shown"] <= 500
    assert max(data["series"][0]["values"]) == 50.0  # the spike survives


def test_the_dashboard_stream_sends_every_tile_then_changes(dash: ServerProcess, data_dir: Path) -> None:
    set_value(data_dir, {"A": 1})
    refresh(dash, "counter")
    with httpx.stream("GET", f"{dash.url}/api/dashboards/ops/events", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        assert next(events)["event"] == "ready"
        tiles: dict[str, Any] = {}
        while len(tiles) < 4:
            event = next(events)
            if event["event"] == "tile":
                tiles[event["data"]["chart"]] = event["data"]
        assert set(tiles) == {"patients-by-ward", "patients", "wards", "signal"}
        assert tiles["patients"]["data"]["value"] == 1
        set_value(data_dir, {"A": 7, "B": 1})
        for event in events:
            tile = event["data"]
            if event["event"] == "tile" and tile["chart"] == "patients" and tile["data"]["value"] == 8:
                assert tile["data"]["change"] == 7
                break


def test_a_stream_continues_in_order_after_a_reconnect(dash: ServerProcess) -> None:
    url = f"{dash.url}/api/streams/ticks/events"
    seqs: list[int] = []
    last_id = ""
    with httpx.stream("GET", url, timeout=30) as response:
        for event in sse_events(response):
            if event["event"] == "points":
                data = event["data"]
                assert len(data["t"]) == data["last"] - data["first"] + 1 == len(data["series"]["sin"])
                seqs.extend(range(data["first"], data["last"] + 1))
                last_id = event["id"]
                if len(seqs) >= 10:
                    break
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    time.sleep(0.5)  # points arrive while the client is away
    resumed: list[int] = []
    with httpx.stream("GET", url, headers={"Last-Event-ID": last_id}, timeout=30) as response:
        for event in sse_events(response):
            if event["event"] == "points":
                assert not event["data"]["gap"]
                resumed.extend(range(event["data"]["first"], event["data"]["last"] + 1))
                if len(resumed) >= 15:
                    break
    assert resumed[0] == int(last_id) + 1, "the first point after the reconnect follows the last one seen"
    assert resumed == list(range(resumed[0], resumed[0] + len(resumed)))
    points = httpx.get(f"{dash.url}/api/streams/ticks/points", params={"after": resumed[-1] - 3}).json()
    assert points["first"] == resumed[-1] - 2 and list(points["series"]) == ["sin", "cos"]


# -- a real browser --------------------------------------------------------------------------------
@pytest.fixture
def page(browser: Browser, dash: ServerProcess) -> Iterator[Page]:
    outside: list[str] = []
    tab = open_page(browser, dash, outside)
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield tab
    tab.close()
    assert outside == [], f"the page reached outside the server: {outside}"
    violations = [e for e in errors if "Content Security Policy" in e or "Content-Security-Policy" in e]
    assert violations == [], f"the page broke its Content-Security-Policy: {violations}"


def bar_values(page: Page) -> Any:
    return page.evaluate(
        "() => { const c = Chart.getChart(document.querySelector('#tile-patients-by-ward canvas'));"
        " return c ? c.data.datasets[0].data : null; }"
    )


def test_a_browser_sees_the_chart_change_without_a_reload(page: Page, dash: ServerProcess, data_dir: Path) -> None:
    set_value(data_dir, {"A": 2, "B": 3})
    refresh(dash, "counter")
    page.goto(f"{dash.url}/dashboards/ops")
    page.wait_for_function("() => document.querySelector('#tile-patients .kpi-value')?.textContent === '5'")
    page.evaluate("() => { window.sameDocument = true; }")
    assert bar_values(page) == [2, 3]
    set_value(data_dir, {"A": 9, "B": 1, "C": 4})
    page.wait_for_function(
        "() => document.querySelector('#tile-patients .kpi-value')?.textContent === '14'", timeout=20_000
    )
    page.wait_for_function(
        "() => Chart.getChart(document.querySelector('#tile-patients-by-ward canvas')).data.labels.length === 3"
    )
    assert bar_values(page) == [9, 1, 4]
    assert page.evaluate("() => window.sameDocument") is True
    assert "▲ +9" in text_of(page.locator("#tile-patients .kpi-change"))
    assert "updated" in text_of(page.locator("#tile-patients .freshness"))
    # the stream tile rolls along on the same event stream
    first = int(page.locator("#tile-ticks").get_attribute("data-last") or 0)
    page.wait_for_function(f"() => +document.querySelector('#tile-ticks').dataset.last > {first + 5}")


def test_a_failing_source_shows_its_error_and_keeps_the_last_data(
    page: Page, dash: ServerProcess, data_dir: Path
) -> None:
    set_value(data_dir, {"A": 4, "B": 6})
    refresh(dash, "counter")
    page.goto(f"{dash.url}/dashboards/ops")
    page.wait_for_function("() => document.querySelector('#tile-patients .kpi-value')?.textContent === '10'")
    set_value(data_dir, "fail")
    error = page.locator("#tile-patients-by-ward .tile-error")
    error.wait_for(state="visible", timeout=UI_WAIT)
    assert "RuntimeError: the warehouse is down" in text_of(error)
    assert bar_values(page) == [4, 6]
    assert page.locator("#tile-patients .kpi-value").text_content() == "10"
    # refreshed every second: past two seconds without a good refresh the data is marked stale
    page.locator("#tile-patients-by-ward .stale-badge").wait_for(state="visible", timeout=UI_WAIT)
    state = httpx.get(f"{dash.url}/api/sources/counter").json()
    assert state["error"] == "RuntimeError: the warehouse is down" and state["refreshed_at"] < state["error_at"]
    set_value(data_dir, {"A": 5})
    error.wait_for(state="hidden", timeout=UI_WAIT)
    assert bar_values(page) == [5]
    page.locator("#tile-patients-by-ward .stale-badge").wait_for(state="hidden", timeout=5_000)


def test_the_table_tile_sorts_and_pages(page: Page, dash: ServerProcess) -> None:
    page.goto(f"{dash.url}/dashboards/ops")
    table = page.locator("#tile-wards")
    table.locator("tbody tr").first.wait_for()
    assert table.locator("tbody tr").count() == 2  # page_size=2
    assert "page 1 of 2 · 3 rows" in text_of(table.locator(".page-info"))
    table.get_by_role("columnheader", name="patients").click()
    table.get_by_role("columnheader", name="patients").click()  # descending
    assert table.locator("tbody tr").first.locator("td").first.text_content() == "C"
    table.get_by_role("button", name="Next ›").click()
    assert [table.locator("tbody td").first.text_content()] == ["A"]
    link = table.locator("a.csv-link")
    assert attribute_of(link, "href").endswith("/api/sources/wards/data?format=csv")


def test_the_page_polls_when_streaming_is_blocked(browser: Browser, dash: ServerProcess, data_dir: Path) -> None:
    outside: list[str] = []
    tab = open_page(browser, dash, outside)
    # Requests of a SharedWorker are not routed by Playwright: this page opens its own stream.
    tab.add_init_script("delete window.SharedWorker;")
    tab.route("**/events*", lambda route: route.abort())
    try:
        set_value(data_dir, {"A": 1})
        refresh(dash, "counter")
        tab.goto(f"{dash.url}/dashboards/ops")
        tab.locator("#live-note").filter(has_text="polling").wait_for(timeout=UI_WAIT)
        set_value(data_dir, {"A": 21})
        tab.wait_for_function(
            "() => document.querySelector('#tile-patients .kpi-value')?.textContent === '21'", timeout=20_000
        )
        tab.wait_for_function("() => +document.querySelector('#tile-ticks').dataset.points > 5")
    finally:
        tab.close()
    assert outside == []


def test_the_dashboards_page_lists_dashboards_streams_and_sources(page: Page, dash: ServerProcess) -> None:
    page.goto(f"{dash.url}/dashboards")
    page.get_by_role("link", name="Operations").first.wait_for()
    assert page.locator("#sources tbody tr").count() == 4
    page.get_by_role("link", name="ticks").first.click()
    page.wait_for_function("() => +document.querySelector('#tile-ticks')?.dataset.points > 3")


def test_a_zoomed_chart_keeps_its_zoom_while_points_arrive(page: Page, dash: ServerProcess) -> None:
    page.goto(f"{dash.url}/dashboards/ops")
    page.wait_for_function("() => +document.querySelector('#tile-ticks').dataset.points > 40")
    rolling = page.evaluate("() => document.querySelector('#tile-ticks').uplot.scales.x.max")
    page.wait_for_function(f"() => document.querySelector('#tile-ticks').uplot.scales.x.max > {rolling + 0.5}")
    page.locator("#tile-ticks .u-over").scroll_into_view_if_needed()
    over = page.locator("#tile-ticks .u-over").bounding_box()
    assert over is not None
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.3, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.5, y, steps=5)
    page.mouse.up()
    zoomed = page.evaluate(
        "() => { const u = document.querySelector('#tile-ticks').uplot; return [u.scales.x.min, u.scales.x.max]; }"
    )
    last = int(attribute_of(page.locator("#tile-ticks"), "data-last"))
    page.wait_for_function(f"() => +document.querySelector('#tile-ticks').dataset.last > {last + 10}")
    after = page.evaluate(
        "() => { const u = document.querySelector('#tile-ticks').uplot; return [u.scales.x.min, u.scales.x.max]; }"
    )
    assert after == zoomed, "new points must not reset the user's zoom"
    # the time axis is in the app's zone (Asia/Tokyo): midnight UTC is 9 in the morning there
    assert "9:00" in page.evaluate(
        "() => { const u = document.querySelector('#tile-ticks').uplot;"
        " return u.series[0].value(u, 1767225600, 0, 0); }"
    )
    page.locator("#tile-ticks .u-over").dblclick()  # zoom out: the chart rolls again
    page.wait_for_function(f"() => document.querySelector('#tile-ticks').uplot.scales.x.max > {zoomed[1] + 1}")


def test_the_home_page_links_the_dashboards(dash: ServerProcess) -> None:
    home = httpx.get(f"{dash.url}/").text
    assert 'href="/dashboards/ops"' in home and "Operations" in home
    assert "Pick a task" not in home  # this app has no tasks


def test_numbers_tables_and_errors_show_without_javascript(
    browser: Browser, dash: ServerProcess, data_dir: Path
) -> None:
    set_value(data_dir, {"A": 6, "B": 5})
    refresh(dash, "counter")
    refresh(dash, "wards")
    context = browser.new_context(java_script_enabled=False)
    tab = context.new_page()
    try:
        tab.goto(f"{dash.url}/dashboards/ops")
        assert tab.locator("#tile-patients .kpi-value").text_content() == "11"
        assert tab.locator("#tile-wards tbody tr").count() == 2
        assert "updated" in text_of(tab.locator("#tile-patients .freshness"))
        assert tab.locator("#tile-patients-by-ward noscript").count() == 1
    finally:
        context.close()


def test_prometheus_sees_sources_and_streams(dash: ServerProcess, data_dir: Path) -> None:
    set_value(data_dir, "fail")
    refresh(dash, "counter")
    text = httpx.get(f"{dash.url}/metrics").text
    assert 'mieruka_source_failing{source="counter"} 1.0' in text
    assert 'mieruka_source_rows{source="wards"} 3.0' in text
    assert 'mieruka_source_refreshes_total{source="counter"}' in text
    assert 'mieruka_stream_points_total{stream="ticks"}' in text
    set_value(data_dir, {"A": 1})
    refresh(dash, "counter")
    assert 'mieruka_source_failing{source="counter"} 0.0' in httpx.get(f"{dash.url}/metrics").text


def test_the_cli_lists_and_refreshes_sources(dash: ServerProcess, data_dir: Path) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mieruka.cli", *args, "--url", dash.url], capture_output=True, text=True, timeout=60
        )

    set_value(data_dir, {"A": 2})
    done = cli("sources", "refresh", "counter")
    assert done.returncode == 0 and json.loads(done.stdout)["rows"] == 1, done
    listing = cli("sources", "ls")
    assert listing.returncode == 0 and "wards" in listing.stdout and "every 1h" in listing.stdout
    set_value(data_dir, "fail")
    failed = cli("sources", "refresh", "counter")
    assert failed.returncode == 1 and "the warehouse is down" in json.loads(failed.stdout)["error"]
    missing = cli("sources", "refresh", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "mieruka: no source named 'nope'"
    set_value(data_dir, {"A": 1})


def test_an_open_page_carries_on_after_the_server_restarts(
    browser: Browser, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tiles are numbered afresh in a new server process: the page must take the new tiles instead
    of waiting for numbers it has already passed. A stream's points outlive the server (kept in the
    database), so the new server continues their numbers and the chart goes on from where it was."""
    import tests.conftest as conftest

    first = ServerProcess(APP, tmp_path / "home", "--workers", "1", env={"DASH_DIR": str(data_dir)})
    outside: list[str] = []
    try:
        first.wait_ready()
        set_value(data_dir, {"A": 3})
        refresh(first, "counter")
        tab = open_page(browser, first, outside)
        tab.goto(f"{first.url}/dashboards/ops")
        tab.wait_for_function("() => +document.querySelector('#tile-ticks').dataset.last > 100")
        tab.wait_for_function("() => document.querySelector('#tile-patients .kpi-value')?.textContent === '3'")
    finally:
        first.stop()
    seen = int(tab.evaluate("() => document.querySelector('#tile-ticks').dataset.last"))
    set_value(data_dir, {"A": 4})
    monkeypatch.setattr(conftest, "free_port", lambda: first.port)  # the same address as before
    second = ServerProcess(APP, tmp_path / "home", "--workers", "1", env={"DASH_DIR": str(data_dir)})
    try:
        second.wait_ready()
        tab.wait_for_function(
            "() => document.querySelector('#tile-patients .kpi-value')?.textContent === '4'", timeout=30_000
        )
        # the stream's numbers go on from the first server's: the chart follows the new points
        tab.wait_for_function(
            f"() => +document.querySelector('#tile-ticks').dataset.last > {seen + 10}", timeout=30_000
        )
        polled = httpx.get(f"{second.url}/api/streams/ticks/points", params={"after": 10**6}).json()
        assert polled["first"] >= 1 and len(polled["t"]) > 0  # a poller from the old run starts again too
        tab.close()
        assert outside == []
    finally:
        second.stop()


def test_the_dashboards_doc_matches_the_api_and_the_charts(dash: ServerProcess) -> None:
    """docs/dashboards.md cannot drift: every route it names exists, every chart kind is described."""
    import re

    from mieruka import charts

    doc = (Path(__file__).parents[2] / "docs" / "dashboards.md").read_text()
    paths = set(httpx.get(f"{dash.url}/openapi.json").json()["paths"])
    named = {m.split("?")[0] for m in re.findall(r"`(?:GET|POST) (/api/[^`]+)`", doc)}
    assert len(named) >= 9 and named <= paths, named - paths
    live = {p for p in paths if p.startswith(("/api/sources", "/api/dashboards", "/api/streams"))}
    assert live <= named, f"routes missing from the doc: {live - named}"
    described = set(re.findall(r"`charts\.(\w+)\(", doc))
    assert described == set(charts.__all__) - {"name_of"}
    # the opening example declares what it says (declaring connects to nothing)
    namespace: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(re.findall(r"```python\n(.*?)```", doc, re.S)[0], "docs/dashboards.md", "exec"), namespace)
    app = namespace["app"]
    assert [s.name for s in app.sources] == ["census", "beds"] and [b.name for b in app.dashboards] == ["hospital"]
    assert app.sources.get("beds").adapter.kind == "odbc"


def test_dashboards_work_behind_a_path_prefix(browser: Browser, data_dir: Path, tmp_path: Path) -> None:
    """Behind IIS or nginx at /mieruka/: assets, the event stream, CSV links and polling all follow."""
    from tests.conftest import running_server

    with running_server(
        tmp_path / "home", "--workers", "1", "--root-path", "/mieruka", app_ref=APP, env={"DASH_DIR": str(data_dir)}
    ) as proc:
        set_value(data_dir, {"A": 8})
        outside: list[str] = []
        tab = open_page(browser, proc, outside)
        tab.goto(f"{proc.url}/mieruka/dashboards/ops")
        tab.wait_for_function(
            "() => document.querySelector('#tile-patients .kpi-value')?.textContent === '8'", timeout=20_000
        )
        tab.wait_for_function("() => +document.querySelector('#tile-ticks').dataset.points > 5")
        assert (
            tab.locator("#tile-wards a.csv-link").get_attribute("href") == "/mieruka/api/sources/wards/data?format=csv"
        )
        assert "polling" not in (tab.locator("#live-note").text_content() or "")
        tab.close()
        assert outside == []
