"""Scenario 2 end to end (examples/business_api): a slow business function behind submit, status,
result and cancel endpoints, run on Celery workers of a compute pool that a job starts and that
stops once idle and nobody is online; PostgreSQL keeps the jobs, Redis carries them; times are
shown in Asia/Tokyo. A real server process with real `mieruka worker` processes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa

from tests.conftest import TESTS, ServerProcess, cli, free_port, fresh_postgres_database, shared_server
from tests.contracts.test_artifact_contract import AWS_ENV

APP = "examples/business_api/app.py"
IDLE_STOP = 2.0
PRESENCE_EXPIRY = 8.0


class BusinessServer(ServerProcess):
    def __init__(self, home: Path, database_url: str, broker_url: str, **env: str) -> None:
        self.database_url = database_url
        self.settings = {
            "MIERUKA_EXECUTOR": "celery",
            "MIERUKA_BROKER_URL": broker_url,
            "MIERUKA_DATABASE_URL": database_url,
            "MIERUKA_POOL_CHECK_INTERVAL": "0.2",
            "MIERUKA_PRESENCE_EXPIRY": f"{PRESENCE_EXPIRY:g}s",
            "CORE_IDLE_STOP": f"{IDLE_STOP:g}s",
            **env,
        }
        self.home = home
        self.headers = self.token("aiko", "operator")
        super().__init__(APP, home, env=self.settings)

    def token(self, user: str, role: str) -> dict[str, str]:
        """A user made with the CLI, and an API token of theirs as request headers."""
        added = cli(
            "users",
            "add",
            user,
            "--role",
            role,
            "--password-stdin",
            "--home",
            str(self.home),
            stdin=f"{user}'s long password\n",
            **self.settings,
        )
        assert added.returncode == 0, added.stderr
        created = cli(
            "tokens", "create", "--user", user, "--name", "frontend", "--home", str(self.home), **self.settings
        )
        assert created.returncode == 0, created.stderr
        return {"Authorization": f"Bearer {created.stdout.strip()}"}

    def pool_state(self) -> str:
        """Read in the database: asking the API would mark the token's user as online."""
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return str(conn.execute(sa.text("SELECT state FROM pools WHERE name = 'core'")).scalar_one())
        finally:
            engine.dispose()

    def pool_workers(self) -> list[psutil.Process]:
        """The `mieruka worker` processes this server started for the pool (and their pool children)."""
        ref = str((TESTS.parent / APP).resolve())
        return [
            p
            for p in psutil.Process(self.process.pid).children(recursive=True)
            if "worker" in p.cmdline() and ref in p.cmdline()
        ]


@pytest.fixture(scope="module")
def business(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, broker_url: str
) -> Iterator[BusinessServer]:
    home = tmp_path_factory.mktemp("business") / "home"
    with (
        fresh_postgres_database("mieruka_business") as database_url,
        shared_server(BusinessServer(home, database_url, broker_url.rsplit("/", 1)[0] + "/7"), request) as proc,
    ):
        yield proc
        for worker in proc.pool_workers():  # a failed test may leave the pool running
            worker.kill()


@pytest.fixture
def api(business: BusinessServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=business.url, headers=business.headers, timeout=90) as client:
        yield client


def until(condition: Callable[[], object], timeout: float, what: str, output: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}\n{output()}")
        time.sleep(0.1)


def test_a_job_starts_the_compute_node_and_the_idle_node_stops_once_nobody_is_online(
    business: BusinessServer, api: httpx.Client
) -> None:
    until(lambda: business.pool_state() == "stopped", 30, "a stopped pool to begin with", business.output)
    response = api.post("/api/tasks/staffing_plan/jobs", json={"horizon_days": 7, "simulations": 2000})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["queue"] == "core" and job["message"] == "starting compute: pool core is starting"
    assert "starting compute" in api.get(f"/jobs/{job['id']}").text

    done = api.get(f"/api/jobs/{job['id']}", params={"wait": 90}).json()
    assert done["status"] == "succeeded", (done, business.output())
    plan = done["result"]
    assert [d["weekday"] for d in plan] == ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    assert all(isinstance(d["staff"], int) and d["staff"] * 40 >= d["orders_at_service_level"] for d in plan)
    assert plan[0]["expected_orders"] < plan[1]["expected_orders"]  # Sundays are quieter
    csv_lines = api.get(f"/api/jobs/{job['id']}/artifacts/plan.csv").text.splitlines()
    assert csv_lines[0] == "date,weekday,expected_orders,orders_at_service_level,staff" and len(csv_lines) == 8
    logs = [line["text"] for line in api.get(f"/api/jobs/{job['id']}/logs").json()["lines"]]
    assert "120 days of history, 2026-08-01 to 2026-11-28" in logs

    # The node is a Celery worker serving the queue `core`, shown like Flower shows it.
    nodes = [n for n in api.get("/api/nodes").json() if n["kind"] != "server"]
    assert [(n["queues"], n["up"]) for n in nodes] == [(["core"], True)], nodes
    assert business.pool_workers()
    # Stored in UTC, shown in Asia/Tokyo.
    created = datetime.fromisoformat(done["created_at"].replace("Z", "+00:00"))
    page = api.get(f"/jobs/{job['id']}").text
    assert (created + timedelta(hours=9)).strftime("%Y-%m-%d %H:%M:%S") in page
    assert "times in Asia/Tokyo" in page
    # Who is using it now: aiko, through the front end's token, with automatic expiry.
    presence = api.get("/api/presence").json()
    assert [p["user"] for p in presence["online"]] == ["aiko"] and presence["expiry_seconds"] == PRESENCE_EXPIRY
    last_request = time.monotonic()

    # Idle for longer than idle_stop, but aiko was seen lately: the node stays up.
    time.sleep(max(0.0, last_request + IDLE_STOP * 2 - time.monotonic()))
    assert business.pool_state() == "running"
    # Once her presence expires, nobody is online and the idle node is stopped.
    until(lambda: business.pool_state() == "stopped", PRESENCE_EXPIRY + 30, "the idle pool stops", business.output)
    until(lambda: not business.pool_workers(), 30, "its worker processes exit", business.output)
    history = [(e["to"], e["reason"]) for e in api.get("/api/pools/core").json()["history"]]
    assert history[:3] == [("stopped", "stopped"), ("stopping", f"idle for {IDLE_STOP:g} s"), ("running", "started")]
    # Started by the submission, or by the pools' loop if it saw the queued job first.
    assert history[3] in {("starting", f"job {job['id']} is waiting"), ("starting", "jobs waiting: 1")}


def test_cancel_stops_a_running_plan_and_the_node_goes_on_serving(business: BusinessServer, api: httpx.Client) -> None:
    big = api.post("/api/tasks/staffing_plan/jobs", json={"horizon_days": 30, "simulations": 200_000}).json()
    until(
        lambda: api.get(f"/api/jobs/{big['id']}").json()["progress"] or 0, 90, "the plan is under way", business.output
    )
    cancelled = api.post(f"/api/jobs/{big['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    ended = api.get(f"/api/jobs/{big['id']}", params={"wait": 30}).json()
    assert ended["status"] == "cancelled" and ended["progress"] < 1, ended
    assert api.post(f"/api/jobs/{big['id']}/cancel").json()["error"]["code"] == "conflict"

    small = api.post("/api/tasks/staffing_plan/jobs", json={"horizon_days": 3, "simulations": 500}).json()
    done = api.get(f"/api/jobs/{small['id']}", params={"wait": 60}).json()
    assert done["status"] == "succeeded" and len(done["result"]) == 3, done


def test_bad_input_is_refused_before_anything_runs(business: BusinessServer, api: httpx.Client) -> None:
    refused = api.post("/api/tasks/staffing_plan/jobs", json={"horizon_days": 0, "service_level": 1.5})
    assert refused.status_code == 422
    assert sorted(f["field"] for f in refused.json()["error"]["fields"]) == ["horizon_days", "service_level"]
    bad_file = b"date,orders\n2026-01-01,many\n"
    job = api.post(
        "/api/tasks/staffing_plan/jobs", files={"orders": ("orders.csv", bad_file)}, data={"horizon_days": "3"}
    ).json()
    failed = api.get(f"/api/jobs/{job['id']}", params={"wait": 60}).json()
    assert failed["status"] == "failed" and failed["attempts"] == 1, failed
    assert re.search(r"invalid orders file: line 2: '2026-01-01', 'many'", failed["error"]), failed["error"]


def test_on_ec2_the_pool_starts_and_stops_the_instance_and_only_admins_stop_it_by_hand(
    tmp_path: Path, broker_url: str
) -> None:
    """The example's EC2 configuration (CORE_INSTANCE_ID) against moto's EC2 API: a job starts the
    stopped instance and waits queued for the worker its boot would start; an admin stops it."""
    import boto3
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    try:
        endpoint = f"http://127.0.0.1:{moto._port}"
        ec2 = boto3.client(
            "ec2",
            endpoint_url=endpoint,
            region_name=AWS_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        image = ec2.describe_images()["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        ec2.stop_instances(InstanceIds=[instance])

        def instance_state() -> str:
            found = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]
            return str(found["State"]["Name"])

        with fresh_postgres_database("mieruka_business_ec2") as database_url:
            proc = BusinessServer(
                tmp_path / "home",
                database_url,
                broker_url.rsplit("/", 1)[0] + "/8",
                CORE_INSTANCE_ID=instance,
                CORE_EC2_ENDPOINT=endpoint,
                **AWS_ENV,
            )
            try:
                proc.wait_ready()
                admin = proc.token("kenji", "admin")
                with httpx.Client(base_url=proc.url, headers=proc.headers, timeout=60) as api:
                    pool = api.get("/api/pools/core").json()
                    assert pool["state"] == "stopped" and pool["hooks"] == f"EC2Instance({instance!r})"
                    job = api.post("/api/tasks/staffing_plan/jobs", json={"simulations": 500}).json()
                    assert job["message"] == "starting compute: pool core is starting"
                    until(
                        lambda: api.get("/api/pools/core").json()["state"] == "running",
                        60,
                        "the instance is started",
                        proc.output,
                    )
                    assert instance_state() == "running"
                    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"

                    refused = api.post("/api/pools/core/stop")
                    assert refused.status_code == 403 and instance_state() == "running"
                    # A waiting job would start it again: it is cancelled first.
                    assert api.post(f"/api/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
                    stopped = api.post("/api/pools/core/stop", headers=admin)
                    assert stopped.status_code == 202 and stopped.json()["state"] == "stopping", stopped.text
                    until(
                        lambda: api.get("/api/pools/core").json()["state"] == "stopped",
                        60,
                        "the instance is stopped",
                        proc.output,
                    )
                    assert instance_state() == "stopped"
                    audit = api.get("/api/audit", params={"action": "pool."}, headers=admin).json()["entries"]
                    entries = [(e["actor"], e["action"], e["target"]) for e in audit]
                    assert entries == [("kenji", "pool.stop", "name:core")]
            finally:
                proc.stop()
    finally:
        moto.stop()


def test_without_celery_settings_the_app_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    result = cli("run", APP, "--home", str(tmp_path / "home"), "--port", str(free_port()))
    assert result.returncode == 1, result.stdout
    assert result.stderr == "mieruka: compute pools (core) start Celery workers: they need MIERUKA_EXECUTOR=celery\n"
    assert "Traceback" not in result.stdout
