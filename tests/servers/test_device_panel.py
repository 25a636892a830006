"""Scenario 4 end to end (examples/device_panel): a real server process drives the board (a state
file standing for GPIO) through quick tasks; its readings, streams sampled once a second, follow;
roles decide who may press what, and the audit log says who pressed what. The board's file is
shared by processes without losing a change; the systemd unit passes `systemd-analyze verify`; the
panel works behind a real nginx, its pages and event streams through it."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mieruka.settings import Settings
from tests.conftest import TESTS, ServerProcess, cli, free_port, need_service, shared_server

EXAMPLE = TESTS.parent / "examples" / "device_panel"
APP = "examples/device_panel/app.py"
ROLES = {"ada": "admin", "otto": "operator", "vera": "viewer"}


class PanelServer(ServerProcess):
    """The panel with an admin, an operator and a viewer, each with an API token."""

    def __init__(self, home: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.state = home.parent / "device.json"
        self.tokens: dict[str, str] = {}
        home.mkdir(parents=True, exist_ok=True)
        for user, role in ROLES.items():
            added = cli(
                "users",
                "add",
                user,
                "--role",
                role,
                "--password-stdin",
                "--home",
                str(home),
                stdin=f"{user}'s password\n",
            )
            assert added.returncode == 0, added.stderr
            created = cli("tokens", "create", "--user", user, "--name", "tests", "--home", str(home))
            assert created.returncode == 0, created.stderr
            self.tokens[user] = created.stdout.strip()
        super().__init__(APP, home, "--workers", "2", *extra, env={"DEVICE_STATE": str(self.state), **(env or {})})

    def client(self, user: str, base: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return httpx.Client(base_url=base or self.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def panel(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[PanelServer]:
    home = tmp_path_factory.mktemp("device-panel") / "home"
    with shared_server(PanelServer(home, "--root-path", "/panel"), request) as proc:
        yield proc


def press(client: httpx.Client, task: str, **params: Any) -> dict[str, Any]:
    response = client.post(f"/api/tasks/{task}/run", json=params, params={"wait": 30})
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    assert job["status"] == "succeeded", job
    return job


def latest(client: httpx.Client, stream: str) -> tuple[float, dict[str, float]]:
    """The stream's newest point: (its time, series -> value)."""
    batch = client.get(f"/api/streams/{stream}/points").json()
    assert batch["error"] is None, batch
    return batch["t"][-1], {name: values[-1] for name, values in batch["series"].items()}


def until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def reading_after(client: httpx.Client, stream: str, since: float) -> dict[str, float]:
    """The stream's newest point once it has one read from the board after the epoch time `since`
    (a point's time is taken before its reading: a press made before `since` is in it)."""
    found: list[dict[str, float]] = []

    def taken() -> bool:
        t, values = latest(client, stream)
        if t > since:
            found.append(values)
        return bool(found)

    until(taken, f"a {stream} reading after {since}")
    return found[0]


def test_presses_change_the_board_and_the_readings_follow(panel: PanelServer) -> None:
    with panel.client("otto") as otto, panel.client("ada") as ada:
        press(ada, "reset")
        job = press(otto, "switch", relay="lamp", on=True)
        assert job["result"] == "lamp on" and job["owner"] == "otto"
        board = json.loads(panel.state.read_text())
        assert board["relays"] == {"heater": False, "lamp": True, "pump": False}
        done = time.time()
        assert reading_after(otto, "relays", done)["lamp"] == 1.0
        assert press(otto, "set_fan", percent=40)["result"] == "fan at 40 %"
        assert press(otto, "set_led", percent=10)["result"] == "LED at 10 %"
        levels = reading_after(otto, "levels", time.time())
        assert levels == {"fan": 40.0, "led": 10.0}
        press(otto, "switch", relay="lamp", on=False)
        assert reading_after(otto, "relays", time.time())["lamp"] == 0.0
        # The thermostat: a target above the room's temperature switches the heater on, and the
        # temperature climbs; back to manual, the relay stays as the thermostat left it.
        assert press(otto, "set_target", celsius=29.5)["result"] == "target 29.5 °C"
        assert press(otto, "set_thermostat", on=True)["result"] == "thermostat keeps 29.5 °C"
        relays = reading_after(otto, "relays", time.time())
        assert relays["thermostat"] == 1.0 and relays["heater"] == 1.0
        start = reading_after(otto, "temperature", time.time())
        assert start["target"] == 29.5
        until(
            lambda: latest(otto, "temperature")[1]["temperature"] > start["temperature"] + 0.3,
            f"the heated board warmer than {start}",
        )
        press(otto, "set_thermostat", on=False)
        assert press(ada, "reset")["result"] == "every output off, manual, target 21 °C"
        board = json.loads(panel.state.read_text())
        assert board["relays"] == {"heater": False, "lamp": False, "pump": False}
        assert (board["fan"], board["led"], board["mode"], board["target"]) == (0, 0, "manual", 21.0)
        relays = reading_after(otto, "relays", time.time())
        assert relays == {"heater": 0.0, "lamp": 0.0, "pump": 0.0, "thermostat": 0.0}


def test_the_pump_runs_for_its_seconds_then_stops(panel: PanelServer) -> None:
    import threading

    with panel.client("otto") as otto:
        answers: list[httpx.Response] = []

        def run() -> None:
            answers.append(otto.post("/api/tasks/run_pump/run", json={"seconds": 2.5}, params={"wait": 30}))

        running = threading.Thread(target=run)
        running.start()
        until(lambda: latest(otto, "relays")[1]["pump"] == 1.0, "the pump running")
        running.join(30)
        assert answers and answers[0].status_code == 200, answers
        assert answers[0].json()["result"] == "pumped for 2.5 s"
        assert reading_after(otto, "relays", time.time())["pump"] == 0.0


def test_the_dashboards_controls_press_the_board(panel: PanelServer) -> None:
    """What the page's controls send: POST /api/dashboards/panel/controls/{control}."""
    with panel.client("otto") as otto, panel.client("vera") as vera, panel.client("ada") as ada:

        def control(client: httpx.Client, name: str, body: dict[str, Any]) -> httpx.Response:
            return client.post(f"/api/dashboards/panel/controls/{name}", json=body)

        assert control(ada, "reset-the-board", {}).json()["result"] == "every output off, manual, target 21 °C"
        pressed = control(otto, "lamp", {"value": True})
        assert pressed.status_code == 200, pressed.text
        assert pressed.json()["state"] == "succeeded" and pressed.json()["result"] == "lamp on"
        assert reading_after(vera, "relays", time.time())["lamp"] == 1.0
        assert control(otto, "fan", {"value": 35}).json()["result"] == "fan at 35 %"
        assert control(otto, "led", {"value": 50}).json()["result"] == "LED at 50 %"
        assert reading_after(vera, "levels", time.time()) == {"fan": 35.0, "led": 50.0}
        assert control(otto, "run-the-pump", {"params": {"seconds": 0.5}}).json()["result"] == "pumped for 0.5 s"
        refusals: list[tuple[str, dict[str, Any], str]] = [
            ("fan", {"value": 33}, "not a multiple of the step 5"),
            ("fan", {"value": 105}, "above the maximum 100"),
            ("led", {"value": 20}, "20 is not one of 0, 10, 50, 100"),
            ("lamp", {"value": "yes"}, "a toggle takes true or false"),
            ("run-the-pump", {"params": {"seconds": 99}}, "less than or equal to 30"),
        ]
        for name, body, says in refusals:
            refused = control(otto, name, body)
            assert refused.status_code == 422 and says in refused.json()["error"]["message"], (name, refused.text)
        assert control(vera, "lamp", {"value": False}).status_code == 403
        assert control(otto, "reset-the-board", {}).status_code == 403
        assert reading_after(vera, "relays", time.time())["lamp"] == 1.0  # neither refusal changed it
        entries = audit_until(ada, lambda runs: bool(runs) and runs[0] == ("otto", "run_pump"), action="control.press")
        assert entries[0]["detail"]["params"] == {"seconds": 0.5} and entries[0]["detail"]["outcome"] == "succeeded"
        assert [(e["actor"], e["detail"]["task"]) for e in entries[:5]] == [
            ("otto", "run_pump"),
            ("otto", "set_led"),
            ("otto", "set_fan"),
            ("otto", "switch"),
            ("ada", "reset"),
        ]


def test_in_one_process_with_the_threads_executor(tmp_path: Path) -> None:
    """The small board's mode (and what gpiozero's pins need): no worker process, the presses run
    on threads of the server, which owns the board."""
    import psutil

    proc = PanelServer(tmp_path / "home", env={"MIERUKA_EXECUTOR": "threads", "MIERUKA_WORKERS": "2"})
    try:
        proc.wait_ready()
        assert psutil.Process(proc.process.pid).children(recursive=True) == []
        with proc.client("otto") as otto:
            pressed = otto.post("/api/dashboards/panel/controls/heater", json={"value": True})
            assert pressed.json()["result"] == "heater on", pressed.text
            pumped = otto.post("/api/dashboards/panel/controls/run-the-pump", json={"params": {"seconds": 1}})
            assert pumped.json()["result"] == "pumped for 1 s", pumped.text
            relays = reading_after(otto, "relays", time.time())
            assert (relays["heater"], relays["pump"]) == (1.0, 0.0)
        assert psutil.Process(proc.process.pid).children(recursive=True) == []
    except BaseException:
        print(proc.output())
        raise
    finally:
        proc.stop()


def test_bad_values_are_refused_in_words(panel: PanelServer) -> None:
    with panel.client("otto") as otto:
        for task, params, says in [
            ("set_fan", {"percent": 140}, "less than or equal to 100"),
            ("switch", {"relay": "boiler", "on": True}, "'heater', 'lamp' or 'pump'"),
            ("set_target", {"celsius": "warm"}, "valid number"),
            ("run_pump", {"seconds": 0}, "greater than 0"),
        ]:
            response = otto.post(f"/api/tasks/{task}/run", json=params)
            assert response.status_code == 422, response.text
            assert says in response.json()["error"]["message"], response.text


def audit_until(
    admin: httpx.Client, seen: Callable[[list[tuple[str, str | None]]], bool], action: str = "task.run", **query: str
) -> list[Any]:
    """The newest entries of `action` once `seen` holds for their (actor, task), newest first: an
    entry is written once the answer has gone."""
    entries: list[Any] = []

    def written() -> bool:
        entries[:] = admin.get("/api/audit", params={"limit": 50, "action": action, **query}).json()["entries"]
        return seen([(e["actor"], (e["detail"] or {}).get("task")) for e in entries])

    until(written, "the audit entries")
    return entries


def test_who_may_press_what_and_the_audit_log_says_who_did(panel: PanelServer) -> None:
    with panel.client("vera") as vera, panel.client("otto") as otto, panel.client("ada") as ada:
        press(ada, "reset")
        assert vera.get("/dashboards/panel").status_code == 200  # a viewer watches
        assert latest(vera, "relays")[1].keys() == {"heater", "lamp", "pump", "thermostat"}
        refused = vera.post("/api/tasks/switch/run", json={"relay": "lamp", "on": True})
        assert refused.status_code == 403, refused.text
        refused = otto.post("/api/tasks/reset/run", json={})  # reset is for admins only
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["message"] == "otto may not use task 'reset'"
        assert "reset" not in {t["name"] for t in otto.get("/api/tasks").json()}
        assert reading_after(vera, "relays", time.time())["lamp"] == 0.0
        press(otto, "switch", relay="heater", on=True)
        press(ada, "reset")
        entries = audit_until(ada, lambda runs: runs[:2] == [("ada", "reset"), ("otto", "switch")])
        pressed = entries[1]
        assert pressed["target"] == f"job:{pressed['detail']['job']}"
        assert pressed["detail"]["params"] == {"relay": "heater", "on": True}
        assert pressed["detail"]["outcome"] == "succeeded" and pressed["detail"]["duration"] >= 0
        assert not [e for e in entries if e["actor"] == "vera" and e["action"] == "task.run"]
        assert ada.get("/api/audit", headers={"Authorization": f"Bearer {panel.tokens['otto']}"}).status_code == 403


# -- the board's state file --------------------------------------------------------------------------
WRITER = """
import sys, threading
sys.path.insert(0, {folder!r})
from device import Device
board = Device({path!r})

def work(what):
    for i in range(1, 41):
        if what in ("heater", "lamp", "pump"):
            board.switch(what, i % 2 == 1)
        elif what == "fan":
            board.set_fan(i)
        else:
            board.set_led(100 - i)

threads = [threading.Thread(target=work, args=(what,)) for what in sys.argv[1:]]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
"""
OUTPUTS = ("heater", "lamp", "pump", "fan", "led")


@pytest.mark.parametrize("apart", ["processes", "threads"])
def test_presses_at_once_lose_no_change(tmp_path: Path, apart: str) -> None:
    """Five processes (or five threads of one, as the threads executor and the streams are) change
    five outputs of one board 40 times each: every last change is kept (a read-modify-write
    without the lock loses some), and a reader never sees half a file."""
    path = tmp_path / "device.json"
    code = WRITER.format(folder=str(EXAMPLE), path=str(path))
    groups = [[what] for what in OUTPUTS] if apart == "processes" else [list(OUTPUTS)]
    writers = [subprocess.Popen([sys.executable, "-c", code, *group]) for group in groups]
    reads = 0
    while any(w.poll() is None for w in writers):
        if path.exists():
            json.loads(path.read_text())  # whole, or the one before: never a torn write
            reads += 1
    assert [w.wait() for w in writers] == [0] * len(groups)
    state = json.loads(path.read_text())
    assert state["relays"] == {"heater": False, "lamp": False, "pump": False}
    assert (state["fan"], state["led"]) == (40, 60)
    assert reads > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- systemd and nginx ---------------------------------------------------------------------------
UNIT = EXAMPLE / "mieruka-device-panel.service"


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` on the unit, its install paths (/opt/mieruka-device-panel) pointed at
    this checkout: no warning at all (verify exits 0 on unknown keys and bad values; its output
    names them)."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (a machine without systemd)")
    venv = Path(sys.executable).parent.parent
    text = UNIT.read_text()
    assert "/opt/mieruka-device-panel/venv/bin/mieruka run /opt/mieruka-device-panel/app/app.py" in text
    unit = tmp_path / UNIT.name
    unit.write_text(
        text.replace("/opt/mieruka-device-panel/venv", str(venv)).replace("/opt/mieruka-device-panel/app", str(EXAMPLE))
    )
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["User"] == "mieruka" and settings["Restart"] == "on-failure"
    assert settings["ProtectSystem"] == "strict" and settings["NoNewPrivileges"] == "yes"
    assert settings["KillMode"] == "mixed"  # SIGTERM to the server alone: it stops its workers itself
    known = {spec["env"] for spec in Settings.describe()}
    named = re.findall(r"^Environment=(MIERUKA_\w+)=", text, re.M)
    assert named and set(named) <= known, set(named) - known


def test_the_service_command_serves(tmp_path: Path) -> None:
    """The unit's ExecStart with its Environment= lines (paths in this checkout) serves the panel."""
    text = UNIT.read_text()
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    for line in text.splitlines():
        if line.startswith("Environment="):
            name, value = line.removeprefix("Environment=").split("=", 1)
            env[name] = value
    state = tmp_path / "state"
    env["MIERUKA_HOME"], env["DEVICE_STATE"] = str(state), str(state / "device.json")
    command = next(line for line in text.splitlines() if line.startswith("ExecStart=")).removeprefix("ExecStart=")
    port = free_port()
    argv = [
        str(Path(sys.executable).parent / "mieruka") if word.endswith("/venv/bin/mieruka") else word
        for word in command.replace("/opt/mieruka-device-panel/app", str(EXAMPLE)).split()
    ]
    argv[argv.index("--port") + 1] = str(port)
    log = tmp_path / "service.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=EXAMPLE, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        from tests.conftest import wait_healthy

        wait_healthy(f"http://127.0.0.1:{port}", proc, log.read_text)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
        assert health["workers"]["total"] == 1, health  # MIERUKA_WORKERS=1 from the unit
        page = httpx.get(f"http://127.0.0.1:{port}{env['MIERUKA_ROOT_PATH']}/dashboards/panel", timeout=30)
        assert page.status_code == 200 and "Device panel" in page.text
        job = httpx.post(
            f"http://127.0.0.1:{port}/api/tasks/switch/run", json={"relay": "pump", "on": True}, timeout=60
        )
        assert job.json()["status"] == "succeeded", job.text
        assert json.loads((state / "device.json").read_text())["relays"]["pump"] is True
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM), log.read_text()


NGINX_MAIN = """
daemon off;
master_process off;
worker_processes 1;
error_log {tmp}/error.log warn;
pid {tmp}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
"""


@pytest.fixture
def nginx(tmp_path: Path, panel: PanelServer) -> Iterator[str]:
    """The example's nginx.conf site in front of the panel (its ports changed to free ones); the
    panel's base URL through it."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        need_service("nginx is not installed (apt-get install nginx)")
    assert binary is not None
    port = free_port()
    site = (EXAMPLE / "nginx.conf").read_text()
    assert "listen 80;" in site and "127.0.0.1:8000" in site
    (tmp_path / "site.conf").write_text(
        site.replace("listen 80;", f"listen 127.0.0.1:{port};").replace("127.0.0.1:8000", f"127.0.0.1:{panel.port}")
    )
    (tmp_path / "nginx.conf").write_text(NGINX_MAIN.format(tmp=tmp_path))
    # -e: nginx logs to its compiled-in error log before it reads the configuration (not writable
    # unless root)
    command = [binary, "-e", str(tmp_path / "error.log"), "-c", str(tmp_path / "nginx.conf")]
    tested = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stderr
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _answers(base), "nginx listening")
        yield base + "/panel"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        errors = (tmp_path / "error.log").read_text() if (tmp_path / "error.log").exists() else ""
        assert "[emerg]" not in errors and "[crit]" not in errors, errors


def _answers(base: str) -> bool:
    try:
        httpx.get(base, timeout=10)  # a loaded machine can take over a second to answer
        return True
    except httpx.HTTPError:
        return False


def test_behind_nginx_pages_presses_and_live_readings_pass(panel: PanelServer, nginx: str) -> None:
    """Under /panel/ through nginx: the dashboard page and its links carry the prefix, a press
    works, and the readings' event stream delivers each second's point as it comes, the press
    among them."""
    with panel.client("otto", nginx) as otto:
        page = otto.get("/dashboards/panel")
        assert page.status_code == 200, page.text
        assert 'href="/panel/' in page.text and "Device panel" in page.text
        press(otto, "switch", relay="lamp", on=False)
        frames: list[tuple[float, dict[str, list[float | None]]]] = []
        with otto.stream("GET", "/api/streams/relays/events") as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if not line.startswith("data:") or '"series"' not in line:
                    continue
                frames.append((time.monotonic(), json.loads(line[5:])["series"]))
                if len(frames) == 2:
                    press(otto, "switch", relay="lamp", on=True)
                if frames[-1][1]["lamp"][-1] == 1.0:
                    break
                assert len(frames) < 30, frames
        # One point a second as it is taken, not a buffer's worth at once: the frames after the
        # first (the catch-up) came apart in time.
        arrivals = [at for at, _ in frames[1:]]
        assert len(arrivals) >= 2 and arrivals[-1] - arrivals[0] >= 0.5 * (len(arrivals) - 1), frames
    with panel.client("ada", nginx) as ada:
        entries = audit_until(ada, lambda runs: runs[:1] == [("otto", "switch")], actor="otto")
        assert entries[0]["detail"]["params"] == {"relay": "lamp", "on": True}
        assert entries[0]["address"] == "127.0.0.1"
