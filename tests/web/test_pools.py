"""Compute pools started on demand: the state store (SQLite and PostgreSQL), the manager's rules,
the built-in hooks for real (shell commands, EC2 against moto's server, local Celery workers), and
the API and page."""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from mieruka.core.clock import utcnow
from mieruka.errors import ConflictError
from mieruka.pools import EC2Instance, LocalWorkers, PoolSpec, ShellCommand
from mieruka.pools import manager as manager_module
from mieruka.pools.base import Pool
from mieruka.pools.manager import PoolManager, PoolNotFound
from mieruka.store.pools import SqlPoolStore
from mieruka.store.sql import SqlJobStore
from tests.conftest import free_port, fresh_postgres_database
from tests.contracts.test_artifact_contract import AWS_ENV

SPEC = PoolSpec("gpu", ("gpu",), "tests/jobs.py:app", {"MIERUKA_EXAMPLE": "1"})


def until(condition: Callable[[], object], timeout: float = 20, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


@pytest.fixture
def store(database_url: str) -> Iterator[SqlJobStore]:
    s = SqlJobStore(database_url)
    s.migrate()
    yield s
    s.close()


# -- the state store -------------------------------------------------------------------------------
def test_pool_states_change_only_from_the_expected_state_and_keep_history(store: SqlJobStore) -> None:
    pools = SqlPoolStore(store)
    now = utcnow()
    pools.ensure("gpu", "stopped", now)
    pools.ensure("gpu", "running", now)  # exists already: unchanged
    gpu = pools.get("gpu")
    assert gpu is not None and gpu.state == "stopped"
    assert pools.move("gpu", {"stopped"}, "starting", "job 1 is waiting", now)
    assert not pools.move("gpu", {"stopped"}, "starting", "again", now)  # another server won
    assert pools.move("gpu", {"starting"}, "running", "started", now + timedelta(seconds=1))
    pools.touch("gpu", now + timedelta(seconds=5))
    record = pools.get("gpu")
    assert record is not None and record.state == "running" and record.message == "started"
    assert record.busy_at == now + timedelta(seconds=5) and record.changed_at == now + timedelta(seconds=1)
    assert [(e.from_state, e.to_state, e.reason) for e in pools.history("gpu")] == [
        ("starting", "running", "started"),
        ("stopped", "starting", "job 1 is waiting"),
        (None, "stopped", "declared"),
    ]
    assert [p.name for p in pools.all()] == ["gpu"] and pools.get("other") is None
    assert not pools.move("other", {"stopped"}, "starting", "x", now)


def test_pools_keep_their_times_in_utc_list_by_name_and_page_their_history(store: SqlJobStore) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    declared = datetime(2030, 1, 1, 9, 0, 0, 123456, tzinfo=tokyo)
    pools = SqlPoolStore(store)
    for name in ("zeta", "alpha", "mid"):
        pools.ensure(name, "stopped", declared)
    alpha = pools.get("alpha")
    assert alpha is not None and alpha.message is None
    assert alpha.changed_at == declared == alpha.busy_at and alpha.changed_at.utcoffset() == timedelta(0)
    for n in range(4):
        assert pools.move("alpha", {"stopped", "running"}, ["running", "stopped"][n % 2], f"r{n}", declared)
    assert [p.name for p in pools.all()] == ["alpha", "mid", "zeta"]
    assert [e.reason for e in pools.history("alpha", limit=2)] == ["r3", "r2"]
    events = pools.history("alpha")
    assert [(e.from_state, e.to_state) for e in events][-2:] == [("stopped", "running"), (None, "stopped")]
    assert all(e.at == declared and e.at.utcoffset() == timedelta(0) for e in events)
    assert pools.history("none") == [] and [e.to_state for e in pools.history("mid")] == ["stopped"]


def test_a_pool_declared_by_two_servers_at_once_is_declared_once(database_url: str) -> None:
    stores = [SqlJobStore(database_url) for _ in range(2)]
    stores[0].migrate()
    pools = [SqlPoolStore(one) for one in stores]
    try:
        for n in range(10):
            start = threading.Barrier(2)

            def declare(i: int, name: str = f"pool-{n}", start: threading.Barrier = start) -> None:
                start.wait(timeout=60)
                pools[i].ensure(name, ["stopped", "running"][i], utcnow())

            threads = [threading.Thread(target=declare, args=(i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            events = pools[0].history(f"pool-{n}")
            record = pools[1].get(f"pool-{n}")
            assert len(events) == 1 and record is not None and events[0].to_state == record.state
    finally:
        for one in stores:
            one.close()


def test_concurrent_starts_from_many_threads_let_exactly_one_win(store: SqlJobStore) -> None:
    pools = SqlPoolStore(store)
    pools.ensure("gpu", "stopped", utcnow())
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda: wins.append(pools.move("gpu", {"stopped"}, "starting", "race", utcnow())))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1


# -- the manager's rules ------------------------------------------------------------------------------
class RecordingHooks:
    """Hooks that remember their calls; a start can be made to fail or to take a while."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail_start: str | None = None
        self.gate = threading.Event()
        self.gate.set()

    def start(self, pool: PoolSpec) -> None:
        self.gate.wait(10)
        self.calls.append(f"start {pool.name}")
        if self.fail_start:
            raise RuntimeError(self.fail_start)

    def stop(self, pool: PoolSpec) -> None:
        self.calls.append(f"stop {pool.name}")


Managed = tuple[PoolManager, RecordingHooks, list[bool]]  # the manager, its hooks' calls, whether anyone is online


@pytest.fixture
def manager(store: SqlJobStore) -> Iterator[Managed]:
    hooks = RecordingHooks()
    online = [False]
    pool = Pool("gpu", hooks, ("gpu",), idle_stop=0.3, start_timeout=0.5)
    m = PoolManager([pool], SqlPoolStore(store), store, lambda p: SPEC, lambda: online[0], check_every=3600)
    m.start()
    yield m, hooks, online
    m.stop()


def state(m: PoolManager) -> str:
    return str(m.describe()[0]["state"])


def test_a_job_for_a_stopped_pool_starts_it_and_waits_with_a_message(
    manager: Managed,
) -> None:
    m, hooks, _ = manager
    assert m.job_submitted("other-queue", 1) is None
    hooks.gate.clear()
    assert m.job_submitted("gpu", 1) == "starting compute: pool gpu is starting"
    assert state(m) == "starting"
    assert m.job_submitted("gpu", 2) == "starting compute: pool gpu is starting"  # one start only
    hooks.gate.set()
    until(lambda: state(m) == "running", what="the pool runs")
    assert hooks.calls == ["start gpu"]
    assert m.job_submitted("gpu", 3) is None
    reasons = [e["reason"] for e in m.describe()[0]["history"]]
    assert reasons == ["started", "job 1 is waiting", "declared"]


def test_an_idle_pool_stops_unless_someone_is_online(
    manager: Managed, store: SqlJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    m, hooks, online = manager
    # The manager's clock is moved by hand: a loaded machine must not stretch "now" past the idle limit.
    clock = [utcnow()]
    monkeypatch.setattr(manager_module, "utcnow", lambda: clock[0])
    m.start_pool("gpu", "by hand")
    until(lambda: state(m) == "running")
    online[0] = True
    clock[0] += timedelta(seconds=0.4)
    m.check()
    assert state(m) == "running", "someone is online"
    online[0] = False
    m.check()  # busy until now: the idle time starts again
    assert state(m) == "running"
    clock[0] += timedelta(seconds=0.4)
    m.check()
    until(lambda: state(m) == "stopped", what="the idle pool stops")
    assert hooks.calls == ["start gpu", "stop gpu"]
    assert m.describe()[0]["history"][1]["reason"] == "idle for 0.3 s"


def test_queued_jobs_keep_a_pool_running_and_start_a_stopped_one(manager: Managed, store: SqlJobStore) -> None:
    from mieruka.store.base import NewJob

    m, hooks, _ = manager
    store.create_job(NewJob(task="t", params={}, queue="gpu"))
    m.check()  # a job waits (queued by another server, say): start
    until(lambda: state(m) == "running")
    time.sleep(0.4)
    m.check()
    assert state(m) == "running" and hooks.calls == ["start gpu"]


def test_a_failed_start_is_recorded_and_stops_the_pool(manager: Managed) -> None:
    m, hooks, _ = manager
    hooks.fail_start = "no capacity in eu-west-1"
    m.start_pool("gpu", "by hand")
    until(lambda: state(m) == "stopped" and len(m.describe()[0]["history"]) == 3)
    assert m.describe()[0]["message"] == "start failed: no capacity in eu-west-1"


def test_a_start_that_never_finishes_is_given_up(store: SqlJobStore) -> None:
    pools = SqlPoolStore(store)
    pool = Pool("gpu", RecordingHooks(), ("gpu",), idle_stop=None, start_timeout=0.2)
    m = PoolManager([pool], pools, store, lambda p: SPEC, None, check_every=3600)
    m.start()
    try:
        # Another server began starting it, then died.
        pools.move("gpu", {"stopped"}, "starting", "job 7 is waiting", utcnow() - timedelta(seconds=1))
        m.check()
        assert state(m) == "stopped" and m.describe()[0]["message"] == "starting did not finish within 0.2 s"
    finally:
        m.stop()


def test_start_and_stop_by_hand_refuse_what_the_state_does_not_allow(
    manager: Managed,
) -> None:
    m, _, _ = manager
    with pytest.raises(ConflictError):
        m.stop_pool("gpu", "by hand")
    m.start_pool("gpu", "by hand")
    until(lambda: state(m) == "running")
    with pytest.raises(ConflictError):
        m.start_pool("gpu", "by hand")
    m.stop_pool("gpu", "by hand")
    until(lambda: state(m) == "stopped")
    with pytest.raises(PoolNotFound):
        m.start_pool("nope", "by hand")


# -- the built-in hooks, for real -----------------------------------------------------------------
def test_shell_command_hooks_run_with_the_pool_in_their_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hooks = ShellCommand(
        start=f'echo "start $MIERUKA_POOL $MIERUKA_POOL_QUEUES $MIERUKA_EXAMPLE" >> {out}', stop=f"echo stop >> {out}"
    )
    hooks.start(SPEC)
    hooks.stop(SPEC)
    assert out.read_text().splitlines() == ["start gpu gpu 1", "stop"]
    with pytest.raises(RuntimeError, match="exited with 3: no such unit"):
        ShellCommand(start="echo no such unit >&2; exit 3", stop="true").start(SPEC)
    with pytest.raises(RuntimeError, match="did not finish within 0.2s"):
        ShellCommand(start="sleep 5", stop="true", timeout=0.2).start(SPEC)


def test_ec2_instance_hooks_start_and_stop_the_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.server import ThreadedMotoServer

    for key, value in AWS_ENV.items():
        monkeypatch.setenv(key, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        import boto3

        endpoint = f"http://127.0.0.1:{server._port}"
        ec2 = boto3.client("ec2", endpoint_url=endpoint)
        image = ec2.describe_images()["Images"][0]["ImageId"]
        instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        hooks = EC2Instance(instance, endpoint_url=endpoint, poll_seconds=0.05)
        hooks.stop(SPEC)
        assert hooks.state() == "stopped"
        hooks.start(SPEC)
        assert hooks.state() == "running"
        with pytest.raises(Exception, match="InvalidInstanceID"):
            EC2Instance("i-00000000000000000", endpoint_url=endpoint).start(SPEC)
    finally:
        server.stop()


def test_a_local_worker_pool_starts_for_a_job_and_stops_when_idle(broker_url: str, tmp_path: Path) -> None:
    """The whole loop with real processes: the Celery executor, a pool of local `mieruka worker`
    processes for the job's queue, started by the job and stopped once idle."""
    from tests.jobs import app

    hooks = LocalWorkers(concurrency=1)
    with fresh_postgres_database("mieruka_pool") as database_url:
        app._settings = None
        app.configure(
            home=str(tmp_path / "home"),
            database_url=database_url,
            executor="celery",
            broker_url=broker_url.rsplit("/", 1)[0] + "/5",
            pool_check_interval=0.2,
        )
        app.pool("default", hooks, idle_stop="1s")
        try:
            with TestClient(app.asgi()) as client:
                assert client.get("/api/pools").json()[0]["state"] == "stopped"
                job = client.post("/api/tasks/add/jobs", json={"a": 1}).json()
                assert job["message"] == "starting compute: pool default is starting"
                page = client.get(f"/jobs/{job['id']}").text
                assert "starting compute" in page
                assert job["message_note"]["code"] == "job.pool_starting"  # the page says it in the reader's words
                japanese = client.get(f"/jobs/{job['id']}", headers={"Accept-Language": "ja"}).text
                assert "計算資源を起動中: プール default を起動しています" in japanese
                done = client.get(f"/api/jobs/{job['id']}", params={"wait": 60}).json()
                assert done["status"] == "succeeded" and done["result"] == 3, done
                pids = hooks.pids("default")
                assert len(pids) == 1
                until(lambda: client.get("/api/pools/default").json()["state"] == "stopped", 30, "the idle pool stops")
                assert hooks.pids("default") == []
                history = [(e["to"], e["reason"]) for e in client.get("/api/pools/default").json()["history"]]
                assert history[:3] == [("stopped", "stopped"), ("stopping", "idle for 1 s"), ("running", "started")]
                # Started by the submission, or by the pools' loop if it saw the queued job first.
                assert history[3] in {("starting", f"job {job['id']} is waiting"), ("starting", "jobs waiting: 1")}
                # by hand, through the API and the page's buttons; no idle stop to race them from here
                manager = app.engine.pools
                assert manager is not None
                manager.pools["default"] = dataclasses.replace(manager.pools["default"], idle_stop=None)
                assert client.post("/api/pools/default/stop").status_code == 409
                assert client.post("/api/pools/default/start").json()["state"] in ("starting", "running")
                until(lambda: client.get("/api/pools/default").json()["state"] == "running")
                assert 'data-pool="default"' in client.get("/workers").text
                response = client.post("/pools/default/stop", follow_redirects=False)
                assert response.status_code == 303
                until(lambda: client.get("/api/pools/default").json()["state"] == "stopped")
                stopped = client.get("/api/pools/default").json()["history"][1]
                assert (
                    stopped["reason"] == "stopped by hand" and stopped["reason_note"]["code"] == "pool.stopped_by_hand"
                )
                workers = client.get("/workers", headers={"Accept-Language": "ja"}).text
                shown = re.sub(r"<script.*?</script>", "", workers, flags=re.S)  # not the embedded catalog
                assert "手動で停止しました" in shown and "stopped by hand" not in shown
                assert client.post("/api/pools/nope/start").json()["error"]["code"] == "pool_not_found"
        finally:
            app.pools.clear()
            app._settings = None


def test_pools_need_the_celery_executor(tmp_path: Path) -> None:
    from mieruka.errors import ConfigError as Refused
    from tests.jobs import app

    app._settings = None
    app.configure(home=str(tmp_path), workers=1)
    app.pool("gpu", ShellCommand("true", "true"))
    try:
        with pytest.raises(Refused, match="need MIERUKA_EXECUTOR=celery"):
            app.start()
        with pytest.raises(Refused, match="already declared"):
            app.pool("gpu", ShellCommand("true", "true"))
    finally:
        app.pools.clear()
        app._settings = None
