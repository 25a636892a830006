"""The refresher: one read at a time per source, the last good table kept through failures,
timeouts reported at once, files read again only when they change; and the tiles built from it."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import mieruka
from mieruka.core.dashboards import Chart, Dashboard
from mieruka.errors import ConfigError
from mieruka.live import downsample
from mieruka.live.tiles import tile
from mieruka.sources.refresher import Refresher, SourceState
from mieruka.sources.source import Source, SourceRegistry, make_source


def wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def refresher_of(*sources: Source, timeout: float = 30) -> Refresher:
    registry = SourceRegistry()
    for source in sources:
        registry.add(source)
    return Refresher(registry, timeout, 1_000_000)


def table(state: SourceState) -> Any:
    """The source's last good table (a pandas DataFrame, untyped here), which must be there."""
    assert state.frame is not None, state.error
    return state.frame


def test_refreshes_never_stack() -> None:
    gate = threading.Event()
    calls: list[float] = []
    running = []

    def slow() -> list[dict[str, int]]:
        running.append(1)
        assert len(running) == 1, "two reads of one source at once"
        calls.append(time.monotonic())
        gate.wait(10)
        running.pop()
        return [{"n": len(calls)}]

    refresher = refresher_of(make_source("slow", function=slow, every=0.05))
    refresher.start()
    try:
        wait_for(lambda: len(calls) == 1)
        for _ in range(20):  # due times pass and people press refresh: all join the running read
            refresher.refresh("slow")
            time.sleep(0.01)
        assert len(calls) == 1
        state = refresher.state("slow")
        assert state.running and state.attempts == 0
        gate.set()
        wait_for(lambda: refresher.state("slow").attempts >= 1)
    finally:
        gate.set()
        refresher.stop()


def test_a_failing_source_keeps_its_last_good_table() -> None:
    box = {"fail": False, "n": 1}

    def flaky() -> list[dict[str, int]]:
        if box["fail"]:
            raise ConnectionError("warehouse unreachable\nsecond line")
        return [{"n": box["n"]}]

    refresher = refresher_of(make_source("flaky", function=flaky))
    seen: list[SourceState] = []
    refresher.listen(lambda source, state: seen.append(state))
    refresher.start()
    try:
        wait_for(lambda: refresher.state("flaky").version == 1)
        good = refresher.state("flaky")
        box["fail"] = True
        state = refresher.refresh("flaky", wait=10)
        assert state.error == "ConnectionError: warehouse unreachable"
        assert state.error_at is not None and state.refreshed_at == good.refreshed_at
        assert state.frame is not None and state.frame["n"].tolist() == [1] and state.version == 1
        box.update(fail=False, n=2)
        state = refresher.refresh("flaky", wait=10)
        assert state.error is None and table(state)["n"].tolist() == [2] and state.version == 2
        assert [s.error is None for s in seen] == [True, False, True]
    finally:
        refresher.stop()


def test_a_read_past_its_timeout_is_reported_and_the_old_data_kept() -> None:
    release = threading.Event()
    box = {"slow": False}

    def sometimes_slow() -> list[dict[str, int]]:
        if box["slow"]:
            release.wait(10)
        return [{"n": 1}]

    refresher = refresher_of(make_source("s", function=sometimes_slow, timeout=0.3))
    refresher.start()
    try:
        wait_for(lambda: refresher.state("s").version == 1)
        box["slow"] = True
        refresher.refresh("s")
        wait_for(lambda: refresher.state("s").error is not None, timeout=10)
        state = refresher.state("s")
        assert "timed out after 0.3s" in (state.error or "") and state.running
        assert state.frame is not None and state.version == 1
        release.set()
        wait_for(lambda: not refresher.state("s").running)
        assert refresher.state("s").version == 1  # the late result of a timed-out read is not used
    finally:
        release.set()
        refresher.stop()


def test_a_file_source_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "plan.csv"
    path.write_text("ward,beds\nA,1\n")
    refresher = refresher_of(make_source("plan", file=path, every=0.05))
    refresher.start()
    try:
        wait_for(lambda: refresher.state("plan").version == 1)
        time.sleep(0.3)
        assert refresher.state("plan").attempts == 1  # unchanged: not read again
        path.write_text("ward,beds\nA,1\nB,2\n")
        wait_for(lambda: refresher.state("plan").version == 2)
        assert table(refresher.state("plan"))["ward"].tolist() == ["A", "B"]
    finally:
        refresher.stop()


def test_a_transform_shapes_the_table_and_its_errors_are_reported() -> None:
    box = {"bad": False}

    def transform(frame: Any) -> Any:
        if box["bad"]:
            return 42
        return frame.assign(double=frame["n"] * 2)

    refresher = refresher_of(make_source("t", function=lambda: [{"n": 2}], transform=transform))
    refresher.start()
    try:
        wait_for(lambda: refresher.state("t").version == 1)
        assert table(refresher.state("t"))["double"].tolist() == [4]
        box["bad"] = True
        state = refresher.refresh("t", wait=10)
        assert "expected a pandas DataFrame" in (state.error or "")
    finally:
        refresher.stop()


# -- tiles -------------------------------------------------------------------------------------
def _state(rows: list[dict[str, Any]], version: int = 1) -> SourceState:
    import pandas as pd

    return SourceState("s", frame=pd.DataFrame(rows), version=version, attempts=version)


SOURCE = make_source("s", function=lambda: [], every="10s")
TOKYO = ZoneInfo("Asia/Tokyo")


def test_a_kpi_shows_its_change_since_the_previous_refresh() -> None:
    chart = Chart("kpi", "s", value="n", aggregate="sum", format="{:,.0f} beds")
    first = tile(chart, SOURCE, _state([{"n": 10}, {"n": 5}]), TOKYO)
    assert first["data"]["text"] == "15 beds" and first["data"]["change"] is None
    second = tile(chart, SOURCE, _state([{"n": 10}, {"n": 10}], 2), TOKYO, first)
    assert second["data"]["change"] == 5 and second["data"]["change_text"] == "+5 beds"
    assert second["data"]["change_pct"] == pytest.approx(1 / 3)
    again = tile(chart, SOURCE, _state([{"n": 10}, {"n": 10}], 2), TOKYO, second)  # same refresh redrawn
    assert again["data"]["change"] == 5


def test_times_become_epoch_seconds_on_axes_and_local_text_in_tables() -> None:
    rows = [{"at": "2026-01-01T00:00:00", "n": 1}, {"at": "2026-01-01T01:00:00", "n": 2}]
    line = tile(Chart("line", "s", x="at", y=("n",)), SOURCE, _state(rows), TOKYO)
    assert line["data"]["time"] is True and line["data"]["x"] == [1767225600.0, 1767229200.0]
    import pandas as pd

    frame_rows = [{"at": pd.Timestamp("2026-01-01T00:00:00Z"), "n": 1}]
    table = tile(Chart("table", "s"), SOURCE, _state(frame_rows), TOKYO)
    assert table["data"]["rows"] == [["2026-01-01 09:00:00", 1]]
    bar = tile(Chart("bar", "s", x="at", y=("n",)), SOURCE, _state(frame_rows), TOKYO)
    assert bar["data"]["labels"] == ["2026-01-01 09:00"]


def test_a_missing_column_is_an_error_on_the_tile() -> None:
    payload = tile(Chart("bar", "s", x="ward", y=("nope",)), SOURCE, _state([{"ward": "A", "n": 1}]), TOKYO)
    assert "no column 'nope'" in payload["error"] and payload["data"] is None


def test_downsampling_keeps_the_peaks_of_a_long_series() -> None:
    import numpy as np

    x = np.arange(1_000_000, dtype=np.float64)
    y = np.sin(x / 10_000)
    y[654_321] = 99.0
    keep = downsample.indices(x, [y], 2000)
    assert 1000 <= len(keep) <= 2000
    assert 654_321 in set(keep.tolist())
    assert list(keep) == sorted(keep)


def test_dashboards_check_their_declarations() -> None:
    with pytest.raises(ConfigError, match="needs x= and y="):
        Chart("bar", "s")
    with pytest.raises(ConfigError, match="unknown chart kind"):
        Chart("radar", "s")
    with pytest.raises(ConfigError, match="invalid format"):
        Chart("kpi", "s", value="n", format="{:q}")
    board = Dashboard("d", "D", (Chart("table", "s"), Chart("table", "s")), columns=1)
    assert [c.name for c in board.charts] == ["table-s", "table-s-2"]
    with pytest.raises(ConfigError, match="invalid dashboard name"):
        Dashboard("no spaces", "D", (Chart("table", "s"),))


def test_a_read_longer_than_the_interval_does_not_spin_or_stack() -> None:
    release = threading.Event()
    calls: list[int] = []

    def long_read() -> list[dict[str, int]]:
        calls.append(1)
        release.wait(10)
        return [{"n": 1}]

    refresher = refresher_of(make_source("long", function=long_read, every=0.05))
    refresher.start()
    try:
        wait_for(lambda: len(calls) == 1)
        cpu = time.process_time()
        time.sleep(0.5)  # ten due times pass while the read runs
        assert time.process_time() - cpu < 0.25, "the scheduler spins while a read outlives its interval"
        assert len(calls) == 1
    finally:
        release.set()
        refresher.stop()


def test_a_cron_source_is_stale_after_twice_its_gap() -> None:
    from datetime import UTC, datetime

    source = make_source("c", function=lambda: [], cron="0 * * * *")  # hourly
    at = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    assert source.interval_after(at) == 5400.0  # due at 11:00, then 12:00: 1.5 h after 10:30
    assert make_source("e", function=lambda: [], every="10s").interval_after(at) == 10.0
    assert make_source("d", function=lambda: []).interval_after(at) is None
    payload = tile(Chart("table", "c"), source, SourceState("c", refreshed_at=at), TOKYO)
    assert payload["interval"] == 5400.0


def test_bars_group_or_stack_several_columns() -> None:
    rows = [{"ward": "A", "men": 1, "women": 2}, {"ward": "B", "men": 3, "women": None}]
    grouped = tile(Chart("bar", "s", x="ward", y=("men", "women")), SOURCE, _state(rows), TOKYO)["data"]
    assert grouped["labels"] == ["A", "B"] and not grouped["stacked"]
    assert [s["values"] for s in grouped["series"]] == [[1.0, 3.0], [2.0, None]]
    stacked = tile(Chart("bar", "s", x="ward", y=("men", "women"), stacked=True), SOURCE, _state(rows), TOKYO)
    assert stacked["data"]["stacked"] is True


def test_a_request_during_a_read_gets_one_more_read_after_it() -> None:
    gate = threading.Event()
    box = {"value": 1}
    calls: list[int] = []

    def read() -> list[dict[str, int]]:
        calls.append(box["value"])
        gate.wait(10)
        return [{"n": box["value"]}]

    refresher = refresher_of(make_source("r", function=read))
    refresher.start()
    try:
        wait_for(lambda: len(calls) == 1)  # the start-up read is running with the old value
        box["value"] = 2
        results: list[SourceState] = []
        waiters = [threading.Thread(target=lambda: results.append(refresher.refresh("r", wait=20))) for _ in range(5)]
        for thread in waiters:
            thread.start()
        cpu = time.process_time()
        time.sleep(0.3)
        assert time.process_time() - cpu < 0.2, "the scheduler spins while a requested read waits its turn"
        gate.set()
        for thread in waiters:
            thread.join(20)
        assert calls == [1, 2]  # five requests, one more read, never two at once
        assert [table(r)["n"].tolist() for r in results] == [[2]] * 5
    finally:
        gate.set()
        refresher.stop()


def test_the_first_read_is_waited_for_once_and_never_repeated() -> None:
    """Right after start-up a table is read once: asking for it waits for that read, and no other."""
    calls: list[float] = []

    def slow() -> list[dict[str, int]]:
        calls.append(time.monotonic())
        time.sleep(0.3)
        return [{"n": 1}]

    refresher = refresher_of(make_source("slow", function=slow), timeout=10)
    assert refresher.first_read("slow").attempts == 0  # not started: nothing to wait for
    refresher.start()
    try:
        state = refresher.first_read("slow")
        assert state.frame is not None and state.frame.to_dict("records") == [{"n": 1}]
        again = refresher.first_read("slow")
        assert again.version == state.version and len(calls) == 1
    finally:
        refresher.stop()


slow_app = mieruka.App("first read", workers=1)


@slow_app.source(every="1h")
def slow_table() -> list[dict[str, int]]:
    time.sleep(0.5)
    return [{"n": 7}]


def test_a_table_asked_for_right_after_start_up_comes_once_read(tmp_path: Path) -> None:
    """GET /api/sources/{name}/data during the start-up read answers with the table, not 409."""
    from fastapi.testclient import TestClient

    slow_app.configure(home=str(tmp_path / "home"))
    with TestClient(slow_app.asgi()) as client:
        slow_app.auth.accounts.add_user("ann", "viewer", "password-ann")
        token = slow_app.auth.accounts.create_token("ann", "t")[1]
        answer = client.get("/api/sources/slow_table/data", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["rows"] == [[7]]


def test_a_source_error_shown_to_viewers_hides_a_password_it_quotes() -> None:
    def failing() -> list[dict[str, int]]:
        raise RuntimeError("cannot connect with DRIVER={x};PWD={s3cr}}et};UID=ward to postgresql://ward:hunter2@db/x")

    refresher = refresher_of(make_source("s", function=failing))
    refresher.start()
    try:
        wait_for(lambda: refresher.state("s").error is not None, timeout=30)
        error = refresher.state("s").error or ""
        assert "s3cr" not in error and "hunter2" not in error, error
        assert "UID=ward" in error and "@db/x" in error
    finally:
        refresher.stop()


def test_an_odbc_source_is_described_without_its_password() -> None:
    from mieruka.sources.odbc import OdbcSource

    described = OdbcSource("DRIVER={PostgreSQL Unicode};PWD={a}}b;c};UID=ward;Password=plain", "SELECT 1").describe()
    assert "a}}b" not in described and "b;c" not in described and "plain" not in described, described
    assert "UID=ward" in described
