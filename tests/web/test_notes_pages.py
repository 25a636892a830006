"""mieruka's own messages on the pages, in the reader's language (issue 22, mieruka/notes.py): a job
cancelled before it started, waiting to retry, timed out; a pipeline's "steps done" and its steps
that timed out, were allowed to fail or were skipped; shown on the job page and the jobs monitor in
Japanese, Russian and Chinese, while the API keeps its English `message` with the note beside it.
The dashboards' JSON carries an author's title in each language it was given in."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import mieruka
from mieruka import charts

app = mieruka.App("notes", executor="threads", workers=1)
HOLD = threading.Event()  # set: the held job ends
STOP = threading.Event()  # set: the stuck job's thread ends (a timed-out thread cannot be killed)


@app.task
def hold() -> str:
    HOLD.wait(60)
    return "held"


@app.task
def add(a: int) -> int:
    return a + 1


@app.task(retries=1, retry_backoff=3600)
def flaky() -> None:
    raise RuntimeError("boom")


@app.task(retries=1, retry_backoff=0)
def twice() -> None:
    raise RuntimeError("boom")


@app.task(timeout=0.3)
def stuck() -> None:
    STOP.wait(30)


@app.source(every="1h")
def sales() -> list[dict[str, int]]:
    return [{"day": 1, "total": 2}]


app.dashboard(
    "board",
    [charts.line(sales, x="day", y="total", title={"en": "Sales", "ja": "売上"})],
    title={"en": "Board", "ja": "ボード"},
)


def until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return found


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    HOLD.clear()
    STOP.clear()
    app._settings = None
    app.configure(home=str(tmp_path / "home"))
    try:
        with TestClient(app.asgi()) as client:
            yield client
    finally:
        HOLD.set()
        STOP.set()
        app._settings = None


def page(client: TestClient, path: str, language: str) -> str:
    answer = client.get(path, headers={"Accept-Language": language, "Accept": "text/html"})
    assert answer.status_code == 200, answer.text
    return str(answer.text)


def message_of(html: str) -> str:
    found = re.search(r'<p class="message" data-field="message">([^<]*)</p>', html)
    assert found, html[:500]
    return found.group(1)


def test_a_job_cancelled_before_it_started_says_so_in_each_language(client: TestClient) -> None:
    held = client.post("/api/tasks/hold/jobs", json={}).json()
    until(lambda: client.get(f"/api/jobs/{held['id']}").json()["status"] == "running", "the worker is busy")
    waiting = client.post("/api/tasks/add/jobs", json={"a": 1}).json()
    cancelled = client.post(f"/api/jobs/{waiting['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["message"] == "cancelled before it started"  # the API: English, as before
    assert cancelled["message_note"] == {
        "code": "job.cancelled_before_start",
        "text": "cancelled before it started",
        "values": {},
    }
    path = f"/jobs/{waiting['id']}"
    assert message_of(page(client, path, "ja")) == "開始前にキャンセルされました"
    assert message_of(page(client, path, "ru")) == "отменено до начала"
    assert message_of(page(client, path, "zh-CN")) == "在开始前已取消"
    assert message_of(page(client, path, "en")) == "cancelled before it started"
    assert "開始前にキャンセルされました" in page(client, "/jobs", "ja")  # the monitor's row
    retried = client.post(f"/api/jobs/{waiting['id']}/retry").json()
    assert retried["message"] == "retry requested" and retried["message_note"]["code"] == "job.retry_requested"
    assert message_of(page(client, path, "ja")) == "再試行が要求されました"
    HOLD.set()


def test_a_job_waiting_to_retry_and_one_that_timed_out(client: TestClient) -> None:
    flaky = client.post("/api/tasks/flaky/jobs", json={}).json()
    waits = until(
        lambda: (
            (job := client.get(f"/api/jobs/{flaky['id']}").json())["attempts"] == 1
            and job["status"] == "queued"
            and job["message"]
            and job
        ),
        "the first attempt fails",
    )
    assert waits["message"] == "attempt 1 failed; retrying in 300s"  # the backoff is capped at 300 s
    assert waits["message_note"] == {
        "code": "job.retrying",
        "text": "attempt %(attempt)s failed; retrying in %(delay)ss",
        "values": {"attempt": 1, "delay": 300.0},
    }
    assert waits["error"].startswith("RuntimeError: boom") and waits["error_note"] is None  # the task's own words
    assert (
        message_of(page(client, f"/jobs/{flaky['id']}", "ja")) == "1 回目の試行が失敗しました。300 秒後に再試行します"
    )
    stuck = client.post("/api/tasks/stuck/jobs", json={}).json()
    ended = client.get(f"/api/jobs/{stuck['id']}", params={"wait": 30}).json()
    assert ended["status"] == "failed" and ended["error"] == "timed out after 0.3s"
    assert ended["error_note"]["code"] == "error.timed_out"
    assert "0.3 秒でタイムアウトしました" in page(client, f"/jobs/{stuck['id']}", "ja")
    assert "превышено время ожидания: 0,3 с" in page(client, f"/jobs/{stuck['id']}", "ru")
    assert "0.3 秒でタイムアウトしました" in page(client, "/jobs", "ja")  # the monitor shows the error


def test_a_pipelines_messages_in_japanese(tmp_path: Path) -> None:
    from tests.jobs import app as jobs_app

    jobs_app._settings = None
    jobs_app.configure(home=str(tmp_path / "home"), executor="threads", workers=1)
    try:
        with TestClient(jobs_app.asgi()) as client:
            job = client.post("/api/tasks/pipe_timeout/jobs", json={}).json()
            done = client.get(f"/api/jobs/{job['id']}", params={"wait": 60}).json()
            assert done["status"] == "succeeded" and done["message"] == "4/4 steps done"
            assert done["message_note"]["values"] == {"done": 4, "total": 4}
            steps = {s["name"]: s for s in client.get(f"/api/jobs/{job['id']}/steps").json()}
            assert steps["slow"]["message"] == "failed (allowed)" and steps["slow"]["error"] == "timed out after 0.5s"
            assert steps["slow"]["message_note"]["code"] == "step.failed_allowed"
            assert steps["slow"]["error_note"]["code"] == "error.timed_out"
            assert steps["needs"]["message_note"]["code"] == "step.input_failed"
            assert steps["missing"]["error_note"] is None or steps["missing"]["error_note"]["code"].startswith("error.")
            shown = re.sub(r"<script.*?</script>", "", page(client, f"/jobs/{job['id']}", "ja"), flags=re.S)
            assert message_of(shown) == "4 ステップ中 4 完了"
            for japanese in (
                "失敗しました（許容）",
                "0.5 秒でタイムアウトしました",
                "入力となるステップが成功しませんでした",
            ):
                assert japanese in shown, japanese
            for english in ("steps done", "failed (allowed)", "timed out after", "an input step did not succeed"):
                assert english not in shown, english
            assert "4 ステップ中 4 完了" in page(client, "/jobs", "ja")
    finally:
        jobs_app._settings = None


def test_the_dashboards_json_carries_the_authors_titles_in_each_language(client: TestClient) -> None:
    board = client.get("/api/dashboards/board").json()
    assert board["title"] == "Board" and board["titles"] == {"en": "Board", "ja": "ボード"}
    assert board["description"] == "" and board["descriptions"] is None  # one text for all
    assert board["charts"][0]["titles"] == {"en": "Sales", "ja": "売上"}
    tile = until(
        lambda: (t := client.get("/api/dashboards/board").json()["tiles"]) and t[0].get("data") and t[0], "a tile"
    )
    assert tile["title"] == "Sales" and tile["titles"] == {"en": "Sales", "ja": "売上"}  # the same for every reader
    assert tile["error"] is None and tile["error_note"] is None
    source = client.get("/api/sources/sales").json()
    assert source["titles"] is None and source["error_note"] is None


def test_the_error_page_says_what_is_not_found_in_the_readers_language(client: TestClient) -> None:
    html = {"Accept": "text/html"}
    assert (
        "ID 987654 のジョブはありません" in client.get("/jobs/987654", headers={**html, "Accept-Language": "ja"}).text
    )
    russian = client.get("/tasks/nope", headers={**html, "Accept-Language": "ru"}).text
    assert "нет задачи с именем 'nope'" in unescape(russian)
    assert "no job with id 987654" in client.get("/jobs/987654", headers=html).text
    api = client.get("/api/jobs/987654", headers={"Accept-Language": "ja"}).json()["error"]
    assert api == {"code": "job_not_found", "message": "no job with id 987654"}  # the API's words stay English


def test_the_logs_line_before_an_attempt_is_in_the_readers_language(client: TestClient) -> None:
    job = client.post("/api/tasks/twice/jobs", json={}).json()
    assert client.get(f"/api/jobs/{job['id']}", params={"wait": 30}).json()["status"] == "failed"
    logged = client.get(f"/api/jobs/{job['id']}/logs").json()["lines"]
    # The log itself keeps English (downloads, the CLI, the API); the page says it in the reader's language.
    assert any(line["stream"] == "system" and line["text"] == "--- attempt 2 of 2 ---" for line in logged)
    assert '<span class="line system">--- 2 回中 2 回目の試行 ---' in page(client, f"/jobs/{job['id']}", "ja")
    assert "--- попытка 2 из 2 ---" in page(client, f"/jobs/{job['id']}", "ru")
    assert "--- attempt 2 of 2 ---" in page(client, f"/jobs/{job['id']}", "en")
