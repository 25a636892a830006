"""Local workers forked from the zygote (executors/zygote.py, zygote_process.py), and the fresh
interpreters they fall back to: who the workers' parent is, that a worker killed by a cancel is
forked again, that `mieruka run` forks the zygote from the server itself (the app imported once),
that an app starting threads at import is never forked, and that a killed server takes its zygote
and workers with it. The jobs' behaviours themselves are the executor contract's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import mieruka
from mieruka import JobStatus
from mieruka.client import Client
from mieruka.errors import ConfigError
from mieruka.executors.local import LocalExecutor
from mieruka.process import alive
from tests.conftest import ServerProcess, free_port, wait_healthy

WAIT = 30.0


def _eventually(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def _worker_pids(app: mieruka.App, count: int) -> list[int]:
    def ready() -> list[int]:
        return [pid for w in app.engine.executor.workers() if w["ready"] and isinstance(pid := w["pid"], int)]

    _eventually(lambda: len(ready()) == count, f"{count} workers ready")
    return ready()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Callable[[mieruka.App, str], mieruka.App]]:
    apps: list[mieruka.App] = []

    def start(app: mieruka.App, worker_start: str) -> mieruka.App:
        app._settings = None
        app.configure(
            home=str(tmp_path / "home"), executor="local", workers=2, worker_start=worker_start, poll_interval=0.2
        )
        app.start()
        apps.append(app)
        return app

    yield start
    for app in apps:
        app.stop()
        app._settings = None


def test_workers_are_forked_from_one_zygote_and_again_after_a_cancel(
    started: Callable[[mieruka.App, str], mieruka.App],
) -> None:
    from tests.jobs import app as jobs_app

    app = started(jobs_app, "fork")
    first = _worker_pids(app, 2)
    zygotes = {psutil.Process(pid).ppid() for pid in first}
    assert len(zygotes) == 1 and os.getpid() not in zygotes
    (zygote,) = zygotes
    assert psutil.Process(zygote).ppid() == os.getpid()
    assert app.wait(app.submit("add", a=2, b=3), WAIT).result == 5

    job = app.submit("sleep", seconds=60)
    _eventually(lambda: app.get_job(job.id).status is JobStatus.RUNNING, "the job runs")
    app.engine.cancel(job.id)
    assert app.wait(job, WAIT).status is JobStatus.CANCELLED
    _eventually(lambda: set(_worker_pids(app, 2)) != set(first), "a worker replaces the killed one")
    assert {psutil.Process(pid).ppid() for pid in _worker_pids(app, 2)} == {zygote}


def test_spawn_starts_each_worker_as_an_interpreter_of_its_own(
    started: Callable[[mieruka.App, str], mieruka.App],
) -> None:
    from tests.jobs import app as jobs_app

    app = started(jobs_app, "spawn")
    assert {psutil.Process(pid).ppid() for pid in _worker_pids(app, 2)} == {os.getpid()}
    assert app.wait(app.submit("add", a=2, b=3), WAIT).result == 5


def test_an_app_that_starts_threads_at_import_is_never_forked(
    started: Callable[[mieruka.App, str], mieruka.App],
) -> None:
    from tests.threaded_app import app as threaded_app

    app = started(threaded_app, "fork")
    assert {psutil.Process(pid).ppid() for pid in _worker_pids(app, 2)} == {os.getpid()}
    assert app.wait(app.submit("double", x=21), WAIT).result == 42
    executor = app.engine.executor
    assert isinstance(executor, LocalExecutor) and executor.broken is None


def test_a_killed_server_takes_its_zygote_and_workers_with_it(tmp_path: Path) -> None:
    server = ServerProcess("tests/jobs.py:app", tmp_path / "home", "--workers", "2")
    try:
        server.wait_ready()
        root = psutil.Process(server.process.pid)
        _eventually(lambda: len(root.children(recursive=True)) == 3, "a zygote and two workers")
        family = root.children(recursive=True)
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        _eventually(lambda: not any(alive(p.pid) for p in family), "the zygote and workers end")
    finally:
        server.stop()


def test_a_server_forks_its_zygote_from_itself_and_imports_the_app_once(tmp_path: Path) -> None:
    imports = tmp_path / "imports"
    server = ServerProcess("tests/counted_app.py:app", tmp_path / "home", env={"COUNTED_APP_LOG": str(imports)})
    try:
        server.wait_ready()
        root = psutil.Process(server.process.pid)
        _eventually(lambda: len(root.children(recursive=True)) == 3, "a zygote and two workers")
        (zygote,) = root.children()
        assert zygote.cmdline() == root.cmdline()  # a fork of the server, no interpreter of its own
        assert {worker.ppid() for worker in zygote.children()} == {zygote.pid}
        assert os.getpgid(zygote.pid) == zygote.pid  # Ctrl-C in the terminal is the server's alone
        with Client(server.url) as client:
            assert client.submit("pid", {}, wait=WAIT)["result"] in {worker.pid for worker in zygote.children()}
            # Forked before the server imported its store and web layer: those are the server's alone.
            assert client.submit("heavy", {}, wait=WAIT)["result"] == []
        assert imports.read_text().split() == [str(root.pid)]
        assert server.output().count("mieruka: serving") == 1  # the fork did not print the server's lines again
        with Client(server.url) as client:  # a step imports the app from its own folder: by an absolute path
            assert client.submit("steps", {}, wait=WAIT)["status"] == "succeeded"
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_the_workers_share_asyncio_from_the_zygote_only_when_a_task_is_a_coroutine(tmp_path: Path) -> None:
    server = ServerProcess(
        "tests/counted_app.py:app",
        tmp_path / "home",
        env={"COUNTED_APP_LOG": str(tmp_path / "imports"), "COUNTED_APP_ASYNC": "1"},
    )
    try:
        server.wait_ready()
        with Client(server.url) as client:  # before any coroutine ran
            assert client.submit("heavy", {}, wait=WAIT)["result"] == ["asyncio"]
            assert client.submit("pause", {}, wait=WAIT)["status"] == "succeeded"
    finally:
        server.stop()
    assert "Traceback" not in server.output()


def test_a_server_whose_app_starts_threads_at_import_starts_its_workers_afresh(tmp_path: Path) -> None:
    server = ServerProcess("tests/threaded_app.py:app", tmp_path / "home")
    try:
        server.wait_ready()
        root = psutil.Process(server.process.pid)
        fresh = "from mieruka.executors.fresh import worker; worker()"

        def one_fresh_worker() -> bool:  # the zygote the executor tried first refuses and ends
            try:
                children = root.children()
                return len(children) == 1 and fresh in children[0].cmdline()
            except psutil.NoSuchProcess:
                return False

        _eventually(one_fresh_worker, "a worker of its own, the zygote gone")
        with Client(server.url) as client:
            assert client.submit("double", {"x": 21}, wait=WAIT)["result"] == 42
    finally:
        server.stop()


def test_an_app_that_holds_a_file_from_its_import_gets_a_zygote_of_its_own(tmp_path: Path) -> None:
    imports = tmp_path / "imports"
    env = {"COUNTED_APP_LOG": str(imports), "COUNTED_APP_HOLD": "1"}
    server = ServerProcess("tests/counted_app.py:app", tmp_path / "home", env=env)
    try:
        server.wait_ready()
        root = psutil.Process(server.process.pid)
        _eventually(lambda: len(root.children(recursive=True)) == 3, "a zygote and two workers")
        (zygote,) = root.children()
        assert "mieruka.executors.fresh import zygote" in " ".join(zygote.cmdline())  # a fresh interpreter
        with Client(server.url) as client:
            assert client.submit("pid", {}, wait=WAIT)["result"] in {worker.pid for worker in zygote.children()}
        assert imports.read_text().split() == [str(root.pid), str(zygote.pid)]
    finally:
        server.stop()


def test_an_embedded_start_that_fails_leaves_no_zygote_behind(tmp_path: Path) -> None:
    from tests.jobs import app as jobs_app

    def zygotes() -> list[psutil.Process]:
        children: list[psutil.Process] = psutil.Process().children()
        return children  # a zygote forked from this process, or a fresh one

    before = {p.pid for p in zygotes()}
    jobs_app._settings = None
    try:
        jobs_app.configure(home=str(tmp_path / "home"), executor="local", database_url="sqlite:////proc/no/such.db")
        with pytest.raises(ConfigError, match="/proc/no"):
            jobs_app.start()
        assert {p.pid for p in zygotes()} == before
    finally:
        jobs_app.stop()
        jobs_app._settings = None


def test_files_a_server_was_started_with_do_not_keep_its_zygote_from_being_forked(tmp_path: Path) -> None:
    imports, log = tmp_path / "imports", (tmp_path / "server.log").open("w")
    kept_r, kept_w = os.pipe()  # as a shell, an IDE or a supervisor may pass a process more than 0-2
    port = free_port()
    command = [sys.executable, "-m", "mieruka.cli", "run", "tests/counted_app.py:app", "--port", str(port)]
    env = {**os.environ, "COUNTED_APP_LOG": str(imports), "PYTHONPATH": str(Path(__file__).parents[2])}
    server = subprocess.Popen(
        [*command, "--home", str(tmp_path / "home")],
        cwd=Path(__file__).parents[2],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        pass_fds=(kept_r, kept_w),
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", server, (tmp_path / "server.log").read_text)
        root = psutil.Process(server.pid)
        _eventually(lambda: len(root.children(recursive=True)) == 3, "a zygote and two workers")
        (zygote,) = root.children()
        assert zygote.cmdline() == root.cmdline()
        assert imports.read_text().split() == [str(root.pid)]
    finally:
        server.terminate()
        server.wait(30)
        log.close()
        os.close(kept_r)
        os.close(kept_w)


SCRIPT = """
import json, os, sys
sys.path.insert(0, sys.argv[1])
import psutil
from tests.counted_app import app

if __name__ == "__main__":
    app.configure(home=sys.argv[2], workers=2)
    held = open(os.devnull) if os.environ.get("OPEN_BEFORE_START") else None
    app.start()
    done = app.wait(app.submit("pid"), timeout=60)
    heavy = app.wait(app.submit("heavy"), timeout=60).result
    me = psutil.Process()
    (zygote,) = me.children()
    print(json.dumps({
        "status": done.status.value, "result": done.result, "me": me.pid, "cmdline": me.cmdline(),
        "zygote": zygote.cmdline(), "workers": [w.pid for w in zygote.children()], "heavy": heavy,
    }))
    app.stop()
"""


def run_script(tmp_path: Path, pass_fds: tuple[int, ...] = (), **extra_env: str) -> tuple[dict[str, Any], list[str]]:
    """SCRIPT's findings, and the pids of the processes that imported the app."""
    tmp_path.mkdir(exist_ok=True)
    imports, script = tmp_path / "imports", tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIERUKA_")}
    ran = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parents[2]), str(tmp_path / "home")],
        env={**env, "COUNTED_APP_LOG": str(imports), **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
        pass_fds=pass_fds,
    )
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    seen: dict[str, Any] = json.loads(ran.stdout.strip().splitlines()[-1])
    assert seen["status"] == "succeeded" and seen["result"] in seen["workers"]
    return seen, imports.read_text().split()


def test_a_script_forks_its_zygote_at_app_start_and_imports_the_app_once(tmp_path: Path) -> None:
    seen, imported = run_script(tmp_path)
    assert seen["zygote"] == seen["cmdline"]  # a fork of the script, no interpreter of its own
    assert imported == [str(seen["me"])]
    assert seen["heavy"] == []  # forked before the script's engine imported its store


def test_a_server_that_refuses_to_serve_after_forking_its_zygote_leaves_none_behind(tmp_path: Path) -> None:
    """The zygote is forked before the server reads what its runtime needs; a setting found wrong
    then is one line, and the zygote ends with the server."""
    port = free_port()
    command = [sys.executable, "-m", "mieruka.cli", "run", "tests/counted_app.py:app", "--port", str(port)]
    env = {**os.environ, "COUNTED_APP_LOG": str(tmp_path / "imports"), "MIERUKA_TRUSTED_PROXIES": "proxy.example"}
    ran = subprocess.run(
        [*command, "--home", str(tmp_path / "home")],
        cwd=Path(__file__).parents[2],
        env={**env, "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode != 0 and "proxy.example" in ran.stderr and "Traceback" not in ran.stderr, ran.stderr
    forked = [int(pid) for pid in (tmp_path / "imports").read_text().split()]
    assert len(forked) == 1  # imported once, by the server

    def strays() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if str(port) in (process.info["cmdline"] or []) and process.pid not in forked:
                found.append(process)
        return found

    _eventually(lambda: not strays(), "the zygote ends with the server")


def test_files_a_script_was_started_with_do_not_keep_its_zygote_from_being_forked(tmp_path: Path) -> None:
    """A supervisor, a test runner or make's job server may pass a script more than 0-2; a file the
    script opened itself before `app.start()` still gets a zygote of its own."""
    kept_r, kept_w = os.pipe()
    os.set_inheritable(kept_r, True)
    os.set_inheritable(kept_w, True)
    try:
        seen, imported = run_script(tmp_path / "passed", pass_fds=(kept_r, kept_w))
        assert seen["zygote"] == seen["cmdline"] and imported == [str(seen["me"])]
        seen, imported = run_script(tmp_path / "opened", pass_fds=(kept_r, kept_w), OPEN_BEFORE_START="1")
        assert "mieruka.executors.fresh import zygote" in " ".join(seen["zygote"])
        assert len(imported) == 2 and imported[0] == str(seen["me"])
    finally:
        os.close(kept_r)
        os.close(kept_w)
