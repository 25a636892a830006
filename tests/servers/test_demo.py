"""The built-in demo app (`mieruka demo`), served by a real server process and used over HTTP."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from mieruka.demo import app as demo_app
from tests.conftest import ServerProcess, free_port, fresh_postgres_database, shared_server, wait_healthy

# Tasks that need more than one click: long_sleep runs for minutes, heartbeat runs on its schedule.
NOT_ONE_CLICK = {"long_sleep", "heartbeat"}


class DemoServer(ServerProcess):
    """`mieruka demo --port P --home HOME` in a subprocess, started in `cwd`."""

    session: dict[str, str]
    csrf: str

    def __init__(self, home: Path, cwd: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.cwd = cwd
        self.log_path = cwd.parent / f"demo-{self.port}.log"
        self._log = self.log_path.open("w")
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mieruka.cli", "demo", "--port", str(self.port), "--home", str(home), *extra],
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**environ, **(env or {})},
        )

    def log_in(self) -> None:
        """As the demo admin, with the one-time link the demo printed."""
        link = re.search(r"one-time link: (\S+)", self.output())
        assert link, self.output()
        with httpx.Client(base_url=self.url) as client:
            page = client.get(link.group(1))
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token, page.text
            done = client.post(link.group(1), data={"csrf_token": token.group(1)}, follow_redirects=True)
            assert done.status_code == 200  # the home page, logged in
            self.session = dict(client.cookies)
            self.csrf = client.get("/api/me").json()["csrf_token"]
            assert client.get(link.group(1)).status_code == 401  # void after one use

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, cookies=self.session, headers={"X-CSRF-Token": self.csrf})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[DemoServer]:
    base = tmp_path_factory.mktemp("demo")
    cwd = base / "cwd"
    cwd.mkdir()
    proc = DemoServer(base / "demo-home", cwd, "--workers", "4")
    with shared_server(proc, request):
        proc.log_in()
        yield proc


@pytest.fixture
def http(demo: DemoServer) -> Iterator[httpx.Client]:
    with demo.client() as client:
        yield client


def wait_job(http: httpx.Client, job_id: int, timeout: float = 60) -> dict[str, Any]:
    job: dict[str, Any] = http.get(f"/api/jobs/{job_id}", params={"wait": timeout}, timeout=timeout + 10).json()
    assert job["status"] not in ("queued", "running"), f"job {job_id} did not finish: {job}"
    return job


def wait_status(http: httpx.Client, job_id: int, status: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = http.get(f"/api/jobs/{job_id}").json()
        if job["status"] == status:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is not {status}: {job}"
        time.sleep(0.05)


def submit(http: httpx.Client, task: str, **kwargs: Any) -> dict[str, Any]:
    response = http.post(f"/api/tasks/{task}/jobs", **kwargs)
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def test_serves_every_task(demo: DemoServer, http: httpx.Client) -> None:
    listed = http.get("/api/tasks").json()
    names = [t["name"] for t in listed]
    assert sorted(names) == sorted(t.name for t in demo_app.tasks)
    assert {
        "hello",
        "count_slowly",
        "make_report",
        "fail_on_purpose",
        "flaky",
        "long_sleep",
        "word_count",
        "all_the_types",
        "heartbeat",
    } <= set(names)
    assert f"({len(names)} tasks)" in demo.output()
    for task in listed:
        assert http.get(f"/api/tasks/{task['name']}").json()["name"] == task["name"]


def test_every_task_runs_with_one_click(http: httpx.Client) -> None:
    every_task_runs_with_one_click(http)


def every_task_runs_with_one_click(http: httpx.Client) -> None:
    names = [t["name"] for t in http.get("/api/tasks").json() if t["name"] not in NOT_ONE_CLICK]
    assert len(names) >= 7
    # Submitted together with an empty body, as the web form's submit button does with every default.
    jobs = {name: submit(http, name, json={})["id"] for name in names}
    finished = {name: wait_job(http, job_id) for name, job_id in jobs.items()}
    for name, job in finished.items():
        if name in ("fail_on_purpose", "flaky"):
            continue
        assert job["status"] == "succeeded", f"{name}: {job['error']}\n{job['traceback']}"
        assert job["attempts"] == 1

    failed = finished["fail_on_purpose"]
    assert failed["status"] == "failed"
    assert failed["error"] == "RuntimeError: something went wrong"
    assert "RuntimeError" in failed["traceback"]
    log = http.get(f"/api/jobs/{failed['id']}/logs").json()
    assert "about to fail" in [line["text"] for line in log["lines"]]

    flaky = finished["flaky"]
    assert flaky["max_attempts"] == 3
    texts = [line["text"] for line in http.get(f"/api/jobs/{flaky['id']}/logs").json()["lines"]]
    attempts_logged = [t for t in texts if re.fullmatch(r"attempt \d of 3", t)]
    assert attempts_logged == [f"attempt {i} of 3" for i in range(1, flaky["attempts"] + 1)]
    if flaky["status"] == "succeeded":
        assert 1 <= flaky["attempts"] <= 3
        assert flaky["result"] == "lucky"
        assert flaky["error"] is None
    else:
        assert flaky["status"] == "failed"
        assert flaky["attempts"] == 3, "gives up only after its two retries"
        assert flaky["error"] == "ValueError: unlucky this time"

    hello = finished["hello"]
    assert hello["result"] == "Hello, world!"
    hello_log = [line["text"] for line in http.get(f"/api/jobs/{hello['id']}/logs").json()["lines"]]
    assert hello_log == [f"hello, world ({i}/3)" for i in range(1, 4)]

    counted = finished["count_slowly"]
    assert counted["result"] == {"steps": 20}
    assert counted["progress"] == 1.0

    types = finished["all_the_types"]["result"]
    assert types == {
        "reference": "hg38",
        "day": "2026-01-01",
        "samples": ["A1", "B2"],
        "thresholds": {"low": 0.2, "high": 0.8},
        "strict": False,
        "ratio": 0.5,
    }

    pi = finished["estimate_pi"]
    assert abs(pi["result"] - math.pi) < 0.02 and pi["progress"] == 1.0, pi


def test_the_demo_on_celery_starts_its_own_workers_and_every_task_runs(tmp_path: Path, broker_url: str) -> None:
    """`MIERUKA_EXECUTOR=celery ... mieruka demo`: PostgreSQL keeps the jobs, Redis carries them, and
    the demo's compute pools start local `mieruka worker` processes for the first job of each queue."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    with fresh_postgres_database("mieruka_demo_celery") as database_url:
        proc = DemoServer(
            tmp_path / "home",
            cwd,
            env={
                "MIERUKA_EXECUTOR": "celery",
                "MIERUKA_BROKER_URL": broker_url.rsplit("/", 1)[0] + "/9",
                "MIERUKA_DATABASE_URL": database_url,
                "MIERUKA_POOL_CHECK_INTERVAL": "0.2",
            },
        )
        try:
            proc.wait_ready()
            proc.log_in()
            with proc.client() as http:
                pools = {p["name"]: (p["state"], p["idle_stop"]) for p in http.get("/api/pools").json()}
                assert pools["compute"] == ("stopped", 120.0)
                # The default pool starts for the first job of its queue. The demo's heartbeat runs on
                # every minute's turn, so a start that spans one has started it already, for that job.
                heartbeats = http.get("/api/jobs", params={"task": "heartbeat"}).json()["jobs"]
                assert pools["default"] == ("stopped", None) or (heartbeats and pools["default"][1] is None), (
                    pools,
                    heartbeats,
                )
                first = submit(http, "estimate_pi", json={"samples": 1000})
                assert first["queue"] == "compute"
                assert first["message"] == "starting compute: pool compute is starting"
                every_task_runs_with_one_click(http)  # the default pool starts while compute does
                assert wait_job(http, first["id"])["status"] == "succeeded"
                workers = sorted((n["queues"], n["up"]) for n in http.get("/api/nodes").json() if n["kind"] != "server")
                assert workers == [(["compute"], True), (["default"], True)], workers
                assert 'data-pool="compute"' in http.get("/workers").text
        finally:
            proc.stop()


def test_flaky_that_always_fails_gives_up_after_three_attempts(http: httpx.Client) -> None:
    job = wait_job(http, submit(http, "flaky", json={"success_rate": 0})["id"])
    assert job["status"] == "failed"
    assert job["attempts"] == job["max_attempts"] == 3
    assert job["error"] == "ValueError: unlucky this time"


def test_make_report_artifacts_download(demo: DemoServer, http: httpx.Client) -> None:
    job = wait_job(http, submit(http, "make_report", json={"title": "Quarterly <numbers>", "rows": 5})["id"])
    assert job["status"] == "succeeded", job["traceback"]
    artifacts = {a["name"]: a for a in job["artifacts"]}
    assert set(artifacts) == {"report.html", "data.csv", "chart.svg"}
    assert artifacts["chart.svg"]["content_type"] == "image/svg+xml"
    job_page = http.get(f"/jobs/{job['id']}").text
    assert '<img class="artifact-image" alt="chart.svg"' in job_page  # images show inline
    assert artifacts["report.html"]["content_type"].startswith("text/html")
    assert artifacts["data.csv"]["content_type"].startswith("text/csv")

    page = http.get(artifacts["report.html"]["url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "attachment" in page.headers["content-disposition"]  # HTML never shows inline
    assert "<h1>Quarterly &lt;numbers&gt;</h1>" in page.text
    assert len(page.content) == artifacts["report.html"]["size"]

    data = http.get(artifacts["data.csv"]["url"])
    assert data.status_code == 200
    rows = list(csv.DictReader(io.StringIO(data.text)))
    assert [r["item"] for r in rows] == [f"item {i}" for i in range(1, 6)]
    mean = round(sum(float(r["value"]) for r in rows) / 5, 2)
    assert job["result"] == {"rows": 5, "mean": pytest.approx(mean, abs=0.011)}

    # Stored under --home.
    stored = [p for p in (demo.home / "artifacts").rglob("*") if p.is_file()]
    assert any(p.read_bytes() == data.content for p in stored), stored


def test_word_count_without_a_file(http: httpx.Client) -> None:
    job = wait_job(http, submit(http, "word_count", json={})["id"])
    assert job["status"] == "succeeded", job["traceback"]
    result = job["result"]
    assert result["file"] == "sample"
    assert result["words"] > 20
    assert len(result["top"]) == 5


def test_word_count_with_an_uploaded_file(demo: DemoServer, http: httpx.Client) -> None:
    text = b"the cat and the dog and the bird. The end!"
    job = submit(http, "word_count", files={"document": ("story.txt", text, "text/plain")}, data={"top": "2"})
    job = wait_job(http, job["id"])
    assert job["status"] == "succeeded", job["traceback"]
    assert job["result"] == {
        "file": "story.txt",
        "words": 10,
        "top": [{"word": "the", "count": 4}, {"word": "and", "count": 2}],
    }
    log = [line["text"] for line in http.get(f"/api/jobs/{job['id']}/logs").json()["lines"]]
    assert log == ["story.txt: 10 words, 6 distinct"]
    # The upload is kept under --home with the job.
    uploads = [p for p in (demo.home / "uploads").rglob("story.txt")]
    assert uploads and uploads[0].read_bytes() == text


def test_long_sleep_cancels_with_its_child(http: httpx.Client) -> None:
    job = submit(http, "long_sleep", json={})
    assert job["params"] == {"seconds": 300}
    job_id = job["id"]
    deadline = time.monotonic() + 15
    child_pid = worker_pid = None
    while child_pid is None:
        job = http.get(f"/api/jobs/{job_id}").json()
        lines = [line["text"] for line in http.get(f"/api/jobs/{job_id}/logs").json()["lines"]]
        found = [m for text in lines if (m := re.fullmatch(r"started sleep as process (\d+)", text))]
        if job["status"] == "running" and found and job["message"]:
            child_pid = int(found[0].group(1))
            worker = re.fullmatch(r"sleeping 300s in process (\d+)", job["message"])
            assert worker, job["message"]
            worker_pid = int(worker.group(1))
        assert time.monotonic() < deadline, f"long_sleep did not start its child: {job}, {lines}"
        time.sleep(0.05)
    child = psutil.Process(child_pid)
    assert child.cmdline() == ["sleep", "300"]
    assert child.ppid() == worker_pid
    try:
        response = http.post(f"/api/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        job = wait_status(http, job_id, "cancelled", timeout=30)  # how fast belongs to bench/, not here
        assert job["finished_at"] is not None
        gone_by = time.monotonic() + 30
        while _alive(child):
            assert time.monotonic() < gone_by, f"the sleep child {child_pid} is still running"
            time.sleep(0.05)
    finally:
        if _alive(child):
            child.kill()


def _alive(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def test_heartbeat_is_scheduled_and_runs_by_hand(http: httpx.Client) -> None:
    task = http.get("/api/tasks/heartbeat").json()
    assert task["schedule"] == "every 1m"
    others = [t for t in http.get("/api/tasks").json() if t["name"] != "heartbeat"]
    assert all(t["schedule"] is None for t in others)
    job = wait_job(http, submit(http, "heartbeat", json={})["id"])
    assert job["status"] == "succeeded", job["traceback"]
    assert set(job["result"]) == {"load1", "load5", "load15"}
    assert all(isinstance(v, float) and v >= 0 for v in job["result"].values())
    assert job["schedule"] is None  # submitted by hand, not by the scheduler


def test_home_lists_every_task_and_links_the_docs(http: httpx.Client) -> None:
    from mieruka.demo import app as demo_app

    home = http.get("/")
    assert home.status_code == 200 and "mieruka demo" in home.text
    for task in demo_app.tasks:
        assert f'href="/tasks/{task.name}"' in home.text, task.name
    assert 'href="/docs"' in home.text
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
    assets = re.findall(r"""(?:src|href)=["'](/static/[^"']+)["']""", home.text + docs.text)
    paths = [a.split("?", 1)[0] for a in assets]  # a version query may follow
    assert any(p.endswith("swagger-ui-bundle.js") for p in paths), assets
    assert any(p.endswith("mieruka.js") for p in paths), assets
    for asset in assets:
        assert http.get(asset).status_code == 200, asset
    schema = http.get("/openapi.json").json()
    assert schema["info"]["title"] == "mieruka demo"
    assert "/api/tasks/make_report/jobs" in schema["paths"]


def test_data_goes_under_home(demo: DemoServer, http: httpx.Client) -> None:
    wait_job(http, submit(http, "hello", json={"name": "home"})["id"])
    assert (demo.home / "mieruka.db").is_file()
    assert (demo.home / "artifacts").is_dir()
    assert (demo.home / "uploads").is_dir()
    # Nothing in the folder the server was started from (the default would be ./.mieruka).
    assert list(demo.cwd.iterdir()) == []
    workers = http.get("/api/workers").json()
    assert len(workers) == 4


def test_the_demo_has_a_live_dashboard_and_streams(http: httpx.Client) -> None:
    boards = http.get("/api/dashboards").json()
    assert [b["name"] for b in boards] == ["demo"]
    assert {s["name"] for s in http.get("/api/streams").json()} == {"signal", "machine"}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        tiles = http.get("/api/dashboards/demo").json()["tiles"]
        if all(t["data"] is not None for t in tiles):
            break
        time.sleep(0.2)
    assert all(t["data"] is not None and t["error"] is None for t in tiles), tiles
    line = next(t for t in tiles if t["kind"] == "line")
    assert line["data"]["total"] == 86_400 and line["data"]["shown"] <= 2400
    points = http.get("/api/streams/signal/points").json()
    assert set(points["series"]) == {"sine", "noisy"}
    assert http.get("/dashboards/demo").status_code == 200


DEMO_LANGUAGES = {"en", "ja", "zh-Hans", "ru"}


def test_the_demo_gives_its_own_words_in_every_language() -> None:
    """Each title, description and parameter help of the demo is given in the four languages (a
    nested model's field help has no per-language form: it stays English)."""
    texts: dict[str, object] = {"app": demo_app.title, "app description": demo_app.description}
    for task in demo_app.tasks:
        texts[f"{task.name}: title"] = task.title
        texts[f"{task.name}: description"] = task.description
        for param, field in task.signature.model.model_fields.items():
            if param != "thresholds":
                texts[f"{task.name}: help of {param}"] = field.description
    board = demo_app.dashboards.get("demo")
    texts.update({"dashboard: title": board.title, "dashboard: description": board.description})
    texts.update({f"dashboard: {item.title}": item.title for item in board.items})
    for stream in demo_app.streams.values():
        texts[f"stream {stream.name}: title"] = stream.title
        texts[f"stream {stream.name}: description"] = stream.description
    for source in demo_app.sources:
        texts[f"source {source.name}: title"] = source.title
    missing = {where: text for where, text in texts.items() if set(getattr(text, "translations", {})) != DEMO_LANGUAGES}
    assert missing == {}


@pytest.mark.parametrize(
    ("accept", "words"),
    [
        ("ja-JP", ["mieruka デモ", "ゆっくりカウント", "進捗を報告しながら数え", "ライブダッシュボード"]),
        ("zh-CN", ["mieruka 演示", "慢慢计数", "边计数边报告进度", "实时仪表板"]),
        ("ru-RU", ["Демонстрация mieruka", "Медленный счёт", "Считает, показывая ход выполнения", "Панель в реальном"]),
        ("en", ["mieruka demo", "Count slowly", "Count with progress", "Live dashboard"]),
    ],
)
def test_the_demo_speaks_the_readers_language(http: httpx.Client, accept: str, words: list[str]) -> None:
    headers = {"Accept-Language": accept}
    home = http.get("/", headers=headers).text
    assert [word for word in words if word not in home] == []
    form = http.get("/tasks/hello", headers=headers).text
    help_of_times = {
        "ja": "あいさつの回数",
        "zh": "问候的次数",
        "ru": "Сколько раз поздороваться",
        "en": "How many greetings",
    }
    assert help_of_times[accept.split("-")[0]] in form
    board = http.get("/dashboards/demo", headers=headers).text
    orders_today = {"ja": "本日の注文", "zh": "今日订单", "ru": "Заказы за сегодня", "en": "Orders today"}
    assert orders_today[accept.split("-")[0]] in board
    # The API speaks English whoever asks.
    assert http.get("/api/tasks/count_slowly", headers=headers).json()["title"] == "Count slowly"


def test_text_pipeline_fails_once_then_retry_runs_only_the_failed_step(http: httpx.Client) -> None:
    job = submit(http, "text_pipeline", json={"delay": 0, "fail_first_attempt": True})
    failed = wait_job(http, job["id"])
    assert failed["status"] == "failed" and "letters" in failed["error"]
    steps = {s["name"]: s for s in http.get(f"/api/jobs/{job['id']}/steps").json()}
    assert steps["letters"]["status"] == "failed" and steps["summary"]["status"] == "skipped"
    assert steps["count"]["status"] == "succeeded" and steps["split"]["status"] == "succeeded"
    assert steps["banner"]["allow_failure"]
    assert http.post(f"/api/jobs/{job['id']}/retry").status_code == 200
    done = wait_job(http, job["id"])
    assert done["status"] == "succeeded", done["error"]
    steps = {s["name"]: s for s in http.get(f"/api/jobs/{job['id']}/steps").json()}
    assert steps["split"]["reused"] and steps["count"]["reused"] and not steps["letters"]["reused"]
    assert done["result"]["top_words"][0] == {"word": "and", "count": 4}
    assert [a["name"] for a in done["artifacts"]] == ["summary.html"]


def test_the_demo_keeps_its_data_where_every_command_looks(tmp_path: Path) -> None:
    """MIERUKA_HOME (not --home) chooses the demo's data, as for every command: the demo says where,
    and `mieruka tokens create --user demo` with the same setting finds its admin."""
    cwd, home = tmp_path / "cwd", tmp_path / "data"
    cwd.mkdir()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    port = free_port()
    log_path = tmp_path / "demo.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            [sys.executable, "-m", "mieruka.cli", "demo", "--port", str(port), "--workers", "1"],
            cwd=cwd,
            env={**environ, "MIERUKA_HOME": str(home), "MIERUKA_ROOT_PATH": "/demo"},
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        try:
            wait_healthy(f"http://127.0.0.1:{port}/demo", proc, log_path.read_text, timeout=60)
            output = log_path.read_text()
            assert f"mieruka: data in {home} (from MIERUKA_HOME or the config file)" in output, output
            assert f"one-time link: http://127.0.0.1:{port}/demo/login/link/mrk_" in output, output
            token = subprocess.run(
                [sys.executable, "-m", "mieruka.cli", "tokens", "create", "--user", "demo"],
                cwd=cwd,
                env={**environ, "MIERUKA_HOME": str(home)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert token.returncode == 0 and token.stdout.startswith("mrk_"), token.stderr
            anonymous = subprocess.run(
                [sys.executable, "-m", "mieruka.cli", "jobs", "ls", "--url", f"http://127.0.0.1:{port}/demo"],
                cwd=cwd,
                env=environ,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert (
                anonymous.returncode == 1
                and "`mieruka tokens create --user NAME`, run with the server's home" in anonymous.stderr
            ), anonymous.stderr
            answer = httpx.get(
                f"http://127.0.0.1:{port}/demo/api/me",
                headers={"Authorization": f"Bearer {token.stdout.strip()}"},
                timeout=30,
            )
            assert answer.status_code == 200 and answer.json()["name"] == "demo", answer.text
            elsewhere = subprocess.run(
                [sys.executable, "-m", "mieruka.cli", "tokens", "create", "--user", "demo"],
                cwd=cwd,
                env=environ,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert elsewhere.returncode == 1 and "Traceback" not in elsewhere.stderr
            assert f"no user named 'demo': no database at {cwd / '.mieruka' / 'mieruka.db'}" in elsewhere.stderr
            assert sorted(p.name for p in cwd.iterdir()) == []
        finally:
            proc.terminate()
            proc.wait(timeout=30)
