"""What a dashboard shows for a source in each state, on a real server (this module is its app) and
in a real browser: never read successfully (a clear "no data yet", not an empty box), still waiting
for its first read, and read without the read-only guardrail (the warning on the API and the tile)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

import mieruka
from mieruka import charts
from tests.conftest import ServerProcess, open_page, shared_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser

# The server process gets its folder from the fixture; the test process only imports this module.
DIR = Path(os.environ.get("STATES_DIR") or Path(tempfile.gettempdir()) / "mieruka-source-states")
SHOTS = os.environ.get("MIERUKA_SHOTS")  # a folder for screenshots, to look at the page


class UnknownDialect(SQLiteDialect_pysqlite):
    """SQLite under a dialect name mieruka's guards do not know: a database it cannot make read-only."""

    name = "unknownsql"
    supports_statement_cache = True


registry.impls["unknownsql"] = lambda: UnknownDialect

app = mieruka.App("Source states", workers=1)


@app.source(every="1s")
def broken() -> list[dict[str, Any]]:
    raise RuntimeError("the warehouse is down")


@app.source(timeout="60s")
def slow() -> list[dict[str, Any]]:
    """Its first read ends when the test says so (the file `go` appears)."""
    deadline = time.monotonic() + 50
    while not (DIR / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return [{"ward": "A", "patients": 3}, {"ward": "B", "patients": 5}]


def _wards() -> str:
    path = DIR / "wards.db"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE wards (ward TEXT, patients INTEGER)")
            db.execute("INSERT INTO wards VALUES ('A', 7)")
    return f"unknownsql:///{path}"


app.source("unguarded", url=_wards(), sql="SELECT ward, patients FROM wards", every="1h")

app.dashboard(
    "states",
    [
        charts.line(broken, x="ward", y="patients", title="Broken line"),
        charts.kpi(broken, "patients", title="Broken KPI"),
        charts.bar(slow, x="ward", y="patients", title="Slow bar"),
        charts.table("unguarded", title="Unguarded table"),
    ],
    title="Source states",
    columns=2,
)


@pytest.fixture(scope="module")
def states(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("states")
    proc = ServerProcess(
        "tests/browser/test_source_states.py:app", folder / "home", "--workers", "1", env={"STATES_DIR": str(folder)}
    )
    proc.data = folder  # type: ignore[attr-defined]
    with shared_server(proc, request) as server:
        yield server


def source(server: ServerProcess, name: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{server.url}/api/sources/{name}", timeout=10).json()
    return body


def wait_until(check: Any, what: str) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def test_a_source_without_the_read_only_guardrail_says_so(states: ServerProcess) -> None:
    state = wait_until(lambda: (s := source(states, "unguarded"))["version"] and s, "unguarded was read")
    assert "read-only is not enforced" in state["warning"] and "'unknownsql'" in state["warning"]
    assert source(states, "broken")["warning"] is None  # a Python function: nothing to guard
    tiles = httpx.get(f"{states.url}/api/dashboards/states", timeout=10).json()["tiles"]
    assert {t["chart"]: bool(t["warning"]) for t in tiles} == {
        "broken-line": False,
        "broken-kpi": False,
        "slow-bar": False,
        "unguarded-table": True,
    }


def test_a_page_says_what_a_tile_without_data_waits_for(browser: Browser, states: ServerProcess) -> None:
    outside: list[str] = []
    page = open_page(browser, states, outside)
    wait_until(lambda: source(states, "broken")["error"], "broken failed")
    page.goto(f"{states.url}/dashboards/states")
    broken = page.locator("#tile-broken-line")
    page.wait_for_function("() => document.querySelector('#tile-broken-line').dataset.error === 'true'")
    empty = broken.locator(".tile-empty")
    assert empty.is_visible()
    assert "No data yet" in empty.inner_text() and "failed so far" in empty.inner_text()
    assert broken.locator("canvas, .uplot").count() == 0  # no empty chart drawn
    assert "RuntimeError: the warehouse is down" in broken.locator(".tile-error").inner_text()
    assert not broken.locator(".csv-link").is_visible()  # no table to download yet
    assert "failed so far" in page.locator("#tile-broken-kpi .tile-empty").inner_text()
    # the slow source's first read is still running: the tile says it waits
    assert "waiting for the source's first refresh" in page.locator("#tile-slow-bar .tile-empty").inner_text()
    warning = page.locator("#tile-unguarded-table .tile-warning")
    warning.wait_for(state="visible", timeout=30_000)
    assert "read-only is not enforced" in warning.inner_text()
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/source-states.png", full_page=True)
    (states.data / "go").write_text("")  # type: ignore[attr-defined]
    page.locator("#tile-slow-bar canvas").wait_for(timeout=30_000)
    assert page.locator("#tile-slow-bar .tile-empty").count() == 0
    assert page.locator("#tile-slow-bar .csv-link").is_visible()
    page.close()
    assert outside == []


def test_without_javascript_the_empty_states_read_the_same(browser: Browser, states: ServerProcess) -> None:
    wait_until(lambda: source(states, "broken")["error"], "broken failed")
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{states.url}/dashboards/states")
    assert "failed so far" in page.locator("#tile-broken-line .tile-empty").inner_text()
    assert "read-only is not enforced" in page.locator("#tile-unguarded-table .tile-warning").inner_text()
    context.close()
