"""A stream's last window outlives the server: real server processes (tests/dash_app.py, whose
`ticks` stream makes 20 points a second) are stopped or killed and started again on the same
database, SQLite and PostgreSQL; the new one serves the old points and continues their numbers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import ServerProcess, clean_postgres

if TYPE_CHECKING:
    from playwright.sync_api import Browser

APP = "tests/dash_app.py:app"


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    values = {"DASH_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        clean_postgres(url)
        values["MIERUKA_DATABASE_URL"] = url
    yield values


def points(server: ServerProcess, after: int = 0) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/streams/ticks/points", params={"after": after}, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_points(server: ServerProcess, beyond: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = points(server)
        if body["last"] > beyond:
            return body
        time.sleep(0.1)
    raise AssertionError(f"the stream never passed point {beyond}:\n{server.output()}")


def wait_saved(tmp_path: Path, env: dict[str, str], last: int) -> None:
    """Until the server has saved the stream's points up to `last` in its database."""
    import sqlalchemy as sa

    engine = sa.create_engine(env.get("MIERUKA_DATABASE_URL") or f"sqlite:///{tmp_path / 'home' / 'mieruka.db'}")
    deadline = time.monotonic() + 30
    try:
        while True:
            with engine.connect() as conn:
                saved = conn.exec_driver_sql("SELECT max(last_seq) FROM stream_batches WHERE stream = 'ticks'").scalar()
            if saved is not None and saved >= last:
                return
            assert time.monotonic() < deadline, f"point {last} never saved (saved up to {saved})"
            time.sleep(0.1)
    finally:
        engine.dispose()


def start(tmp_path: Path, env: dict[str, str]) -> ServerProcess:
    proc = ServerProcess(APP, tmp_path / "home", "--workers", "1", env=env)
    try:
        proc.wait_ready()
    except BaseException:
        proc.stop()
        raise
    return proc


def test_a_restarted_server_shows_the_last_window(tmp_path: Path, env: dict[str, str]) -> None:
    first = start(tmp_path, env)
    try:
        before = wait_for_points(first, 20)
    finally:
        first.stop()  # SIGTERM: the server saves what is left on its way out
    second = start(tmp_path, env)
    try:
        after = points(second)
        # every point the first server had served is there, with its number and time
        assert after["boot"] == before["boot"]
        assert after["last"] >= before["last"]
        kept = dict(zip(range(after["first"], after["last"] + 1), after["t"], strict=True))
        assert all(
            kept[seq] == t for seq, t in zip(range(before["first"], before["last"] + 1), before["t"], strict=True)
        )
        assert set(after["series"]) == {"sin", "cos"}
        # the numbers go on: a client that saw the first server's last point gets only new ones
        later = wait_for_points(second, after["last"] + 20)
        newer = points(second, before["last"])
        assert newer["first"] == before["last"] + 1 and newer["last"] >= later["last"]
    finally:
        second.stop()


def test_a_killed_server_loses_at_most_the_last_moments(tmp_path: Path, env: dict[str, str]) -> None:
    first = start(tmp_path, env)
    try:
        seen = wait_for_points(first, 20)
        wait_saved(tmp_path, env, seen["last"])  # saved once a second: what is older is kept
        first.kill()
    finally:
        first.stop()
    second = start(tmp_path, env)
    try:
        after = points(second)
        assert after["boot"] == seen["boot"] and after["last"] >= seen["last"]
        assert seen["t"][-1] in after["t"]
    finally:
        second.stop()


def test_a_reloaded_page_draws_the_window_of_the_last_run(browser: Browser, tmp_path: Path) -> None:
    from tests.conftest import open_page

    env = {"DASH_DIR": str(tmp_path / "data")}
    first = start(tmp_path, env)
    try:
        before = wait_for_points(first, 20)
    finally:
        first.stop()
    second = start(tmp_path, env)
    outside: list[str] = []
    try:
        tab = open_page(browser, second, outside)
        tab.goto(f"{second.url}/streams/ticks")  # its chart shows the stream's whole window (60 s)
        tile = "document.querySelector('.tile[data-kind=stream]')"
        tab.wait_for_function(f"() => +{tile}.dataset.points > 0")
        # the chart's oldest point is one the first server made
        oldest = tab.evaluate(f"() => {tile}.uplot.data[0][0]")
        assert oldest <= before["t"][-1]
        tab.screenshot(path=str(tmp_path / "restored.png"))
        tab.close()
        assert outside == []
    finally:
        second.stop()
