"""The examples shown in the README run as documented."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from tests.conftest import ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_lab_tools_example(tmp_path: Path) -> None:
    proc = ServerProcess(str(EXAMPLES / "lab_tools" / "app.py"), tmp_path / "home", "--workers", "1")
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=30) as client:
            reads = b">r1\nACGTACGT\n>r2\nTTGACA\n"
            response = client.post(
                "/api/tasks/align/jobs", files={"reads": ("reads.fa", reads)}, data={"reference": "mm10"}
            )
            assert response.status_code == 202, response.text
            job = client.get(response.headers["location"], params={"wait": 30}).json()
            assert job["status"] == "succeeded", job
            assert job["result"] == {"mapped": 0.97, "reads": 2, "min_quality": 20}
            assert [a["name"] for a in job["artifacts"]] == ["report.html"]
            logs = client.get(f"/api/jobs/{job['id']}/logs").json()["lines"]
            assert logs[0]["text"] == "indexed mm10; 2 reads"
            task = client.get("/api/tasks/align").json()
            assert task["description"].startswith("Align reads")
            assert task["params_schema"]["properties"]["reference"]["enum"] == ["hg38", "mm10"]
    finally:
        proc.stop()


def test_a_script_that_serves_itself_at_module_level(tmp_path: Path) -> None:
    """`python myapp.py` with app.serve() unguarded: workers import the file, but must not serve."""
    import subprocess
    import sys

    from tests.conftest import free_port, wait_healthy

    port = free_port()
    script = tmp_path / "myapp.py"
    script.write_text(
        "import mieruka\n"
        f"app = mieruka.App('script', home={str(tmp_path / 'home')!r}, workers=1)\n"
        "@app.task\n"
        "def double(x: int = 2) -> int:\n"
        "    return 2 * x\n"
        f"app.serve(port={port})\n"
    )
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(script)], stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log.read_text)
        job = httpx.post(f"{url}/api/tasks/double/run", json={"x": 21}, timeout=30).json()
        assert job["status"] == "succeeded" and job["result"] == 42, (job, log.read_text())
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- scenario 1 and 3: live dashboards -----------------------------------------------------------
HOSPITAL = EXAMPLES / "hospital_dashboard"


def _sources(url: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in httpx.get(f"{url}/api/sources", timeout=30).json()}


def _refresh_all(url: str) -> dict[str, dict[str, Any]]:
    for name in ("census", "admissions_per_hour", "occupancy", "recent_admissions"):
        response = httpx.post(f"{url}/api/sources/{name}/refresh", params={"wait": 30}, timeout=60)
        assert response.status_code == 200 and response.json()["error"] is None, response.text
    return _sources(url)


def _tiles(url: str) -> dict[str, dict[str, Any]]:
    return {t["chart"]: t for t in httpx.get(f"{url}/api/dashboards/hospital", timeout=30).json()["tiles"]}


def test_realtime_chart_example(tmp_path: Path, browser: Browser) -> None:
    from tests.conftest import attribute_of, open_page

    proc = ServerProcess(str(EXAMPLES / "realtime_chart" / "app.py"), tmp_path / "home", "--workers", "1")
    try:
        proc.wait_ready()
        with httpx.stream("GET", f"{proc.url}/api/streams/random_series/events", timeout=30) as response:
            frames = []
            for line in response.iter_lines():
                if line.startswith("data:") and '"series"' in line:
                    frames.append(json.loads(line[5:]))
                    if sum(len(f["t"]) for f in frames) >= 3:
                        break
        points = [t for f in frames for t in f["t"]]
        pace = (points[-1] - points[0]) / (len(points) - 1)
        assert 0.7 < pace < 1.5, points  # about one a second (a loaded machine may lag a little)
        assert set(frames[0]["series"]) == {"series_a", "series_b"}
        outside: list[str] = []
        page = open_page(browser, proc, outside)
        page.goto(f"{proc.url}/dashboards/realtime")
        page.wait_for_function("() => +document.querySelector('#tile-two-random-series')?.dataset.points >= 2")
        seen = int(attribute_of(page.locator("#tile-two-random-series"), "data-last"))
        page.wait_for_function(f"() => +document.querySelector('#tile-two-random-series').dataset.last > {seen}")
        assert page.locator("#tile-two-random-series .uplot").count() == 1
        page.close()
        assert outside == []
    finally:
        proc.stop()


def test_hospital_dashboard_example_on_sqlite(tmp_path: Path, browser: Browser) -> None:
    import runpy
    import sqlite3
    from datetime import UTC, datetime, timedelta

    from tests.conftest import open_page, text_of

    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    count = runpy.run_path(str(HOSPITAL / "generate.py"))["generate"](url)
    assert 15_000 < count < 25_000  # a year of admissions
    proc = ServerProcess(str(HOSPITAL / "app.py"), tmp_path / "home", "--workers", "1", env={"HOSPITAL_DB_URL": url})
    try:
        proc.wait_ready()
        sources = _refresh_all(proc.url)
        assert {s["schedule"] for s in sources.values()} == {"every 10s"}
        tiles = _tiles(proc.url)
        census = {
            w: p
            for w, p in zip(
                tiles["census-by-ward"]["data"]["labels"], tiles["census-by-ward"]["data"]["series"][0]["values"]
            )
        }
        inpatients = tiles["inpatients-now"]["data"]["value"]
        assert sum(census.values()) == inpatients and 0.3 < tiles["bed-occupancy"]["data"]["value"] < 1.2
        per_hour = tiles["admissions-per-hour-last-7-days"]["data"]
        assert per_hour["time"] and 160 <= len(per_hour["x"]) <= 170
        # A patient arrives in the ICU: the next refresh shows it, with the change on the KPI. The
        # sources also refresh by themselves every 10 s: when one of those comes between the insert
        # and ours, it showed the change and ours has none, so a patient is admitted again.
        now = (datetime.now(UTC) - timedelta(seconds=5)).replace(tzinfo=None, microsecond=0)
        for arrived in range(1, 4):
            with sqlite3.connect(tmp_path / "warehouse.db") as db:
                db.execute(
                    "INSERT INTO admissions (id, patient_id, ward_id, admitted_at, discharged_at, age, sex, "
                    "diagnosis) VALUES (?, 1, 8, ?, NULL, 40, 'F', 'Sepsis')",
                    (999_998 + arrived, now.isoformat(" ")),
                )
            _refresh_all(proc.url)
            tiles = _tiles(proc.url)
            bars = tiles["census-by-ward"]["data"]
            after = dict(zip(bars["labels"], bars["series"][0]["values"]))
            assert after["ICU"] == census["ICU"] + arrived
            assert tiles["inpatients-now"]["data"]["value"] == inpatients + arrived
            if tiles["inpatients-now"]["data"]["change"] == 1:
                break
        assert tiles["inpatients-now"]["data"]["change"] == 1
        recent = tiles["recent-admissions"]["data"]
        newest = recent["rows"][:arrived]  # admitted at the same time: in any order
        assert {row[0] for row in newest} == {999_998 + n for n in range(1, arrived + 1)}
        assert {row[2] for row in newest} == {"ICU"}
        outside: list[str] = []
        page = open_page(browser, proc, outside)
        page.goto(f"{proc.url}/dashboards/hospital")
        page.wait_for_function("() => document.querySelectorAll('.tile[data-version]').length === 5")
        assert page.locator(".tile-error:visible").count() == 0
        assert text_of(page.locator("#tile-bed-occupancy .kpi-value")).endswith("%")
        page.close()
        assert outside == []
    finally:
        proc.stop()


HITS = """
CREATE EXTENSION IF NOT EXISTS dblink;
CREATE TABLE hits (pid INTEGER, at TIMESTAMPTZ, query TEXT);
-- Each statement reading a view below records itself, through a second connection (dblink), so the
-- record survives the reader's read-only transaction. Counted at the database, not in mieruka.
CREATE FUNCTION hit() RETURNS INTEGER LANGUAGE sql VOLATILE AS $$
  SELECT dblink_exec('{conn}', format('INSERT INTO hits VALUES (%s, %L, %L)', pg_backend_pid(),
                     statement_timestamp(), current_query()));
  SELECT 1
$$;
ALTER TABLE wards RENAME TO wards_data;
ALTER TABLE admissions RENAME TO admissions_data;
CREATE VIEW wards AS SELECT * FROM wards_data WHERE (SELECT hit()) = 1;
CREATE VIEW admissions AS SELECT * FROM admissions_data WHERE (SELECT hit()) = 1;
"""
QUERIES = {
    "census": "COUNT(a.id)",
    "admissions_per_hour": "admitted_at >= ",
    "occupancy": "SUM(beds)",
    "recent_admissions": "LIMIT 200",
}


def test_hospital_dashboard_over_odbc_on_postgres_one_query_per_refresh(tmp_path: Path) -> None:
    """The same dashboard through a raw ODBC connection string (Debian's psqlodbc), watched by 20
    clients: the database sees exactly one query per source per refresh."""
    import runpy
    import threading

    import sqlalchemy as sa

    from tests.conftest import fresh_postgres_database, need_service
    from tests.unit.test_sources import odbc_string

    with fresh_postgres_database("mieruka_hospital") as url:
        connection = odbc_string(url)
        runpy.run_path(str(HOSPITAL / "generate.py"))["generate"](url, days=60)
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        database = url.rsplit("/", 1)[1]
        import psycopg

        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as raw:
            try:
                raw.execute(b"CREATE EXTENSION IF NOT EXISTS dblink")
            except psycopg.Error as exc:
                need_service(f"PostgreSQL's dblink extension is not available (postgresql-contrib): {exc}")
            raw.execute(HITS.replace("{conn}", f"host=127.0.0.1 user=postgres dbname={database}").encode())
        proc = ServerProcess(
            str(HOSPITAL / "app.py"),
            tmp_path / "home",
            "--workers",
            "1",
            env={"HOSPITAL_ODBC": connection, "HOSPITAL_REFRESH": "1h"},
        )
        stop = threading.Event()
        received: list[list[int]] = [[] for _ in range(20)]

        failures: list[str] = []

        def watch(i: int) -> None:
            try:
                with httpx.stream("GET", f"{proc.url}/api/dashboards/hospital/events", timeout=60) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:") and '"chart":"census-by-ward"' in line:
                            received[i].append(json.loads(line[5:])["version"])
            except httpx.HTTPError as exc:
                if not stop.is_set():  # the server stopping at the end ends every stream
                    failures.append(repr(exc))

        try:
            proc.wait_ready()
            first = _refresh_all(proc.url)
            assert all(s["kind"] == "odbc" and "PWD=(hidden)" in str(s["reads"]) for s in first.values())
            watchers = [threading.Thread(target=watch, args=(i,), daemon=True) for i in range(20)]
            for thread in watchers:
                thread.start()
            for _ in range(20):  # page views and API reads: none of them may query the warehouse
                assert httpx.get(f"{proc.url}/dashboards/hospital", timeout=30).status_code == 200
                assert len(_tiles(proc.url)) == 5
                assert httpx.get(f"{proc.url}/api/sources/census/data", timeout=30).status_code == 200
            sources = _refresh_all(proc.url)
            sources = _refresh_all(proc.url)
            deadline = time.monotonic() + 30
            version = sources["census"]["version"]
            while time.monotonic() < deadline and not all(r and r[-1] == version for r in received):
                time.sleep(0.05)
            assert all(r and r[-1] == version for r in received), (received, failures)
            assert failures == []
            with engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT DISTINCT pid, at, query FROM hits").fetchall()
                census: dict[str, int] = dict(
                    conn.exec_driver_sql(
                        "SELECT w.name, COUNT(a.id) FROM wards_data w LEFT JOIN admissions_data a ON a.ward_id = w.id "
                        "AND a.discharged_at IS NULL GROUP BY w.name"
                    ).fetchall()
                )
            for name, marker in QUERIES.items():
                executed = sum(1 for row in rows if marker in row.query)
                assert executed == sources[name]["refreshes"], (name, executed, sources[name])
            assert sources["census"]["refreshes"] >= 3
            tiles = _tiles(proc.url)
            shown = dict(
                zip(tiles["census-by-ward"]["data"]["labels"], tiles["census-by-ward"]["data"]["series"][0]["values"])
            )
            assert shown == {k: float(v) for k, v in census.items()}
        finally:
            stop.set()
            proc.stop()
            engine.dispose()
