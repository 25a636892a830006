"""The README's quick start as a newcomer meets it: `python3 scripts/dev.py demo` in a venv that has
only what the demo installs (no dev extras, which would bring pandas and hide a missing extra),
every dashboard tile with data, and the CLI beside it finding the demo's data and user.

The venv is made by scripts/dev.py itself under a cache folder (MIERUKA_DEV_VENV), one per clone and
pyproject.toml, so only the first run pays for the install. It needs the package index: without
it the test skips, or fails when MIERUKA_REQUIRE_SERVICES=1."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, need_service, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "scripts" / "dev.py"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mieruka-tests"
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")


def quickstart_venv() -> Path:
    """One venv per clone and pyproject.toml: a changed list of extras gets a fresh one."""
    key = hashlib.sha256(str(ROOT).encode() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return CACHE / f"quickstart-{key}"


def newcomer_environment(venv: Path) -> dict[str, str]:
    """A shell outside any venv, with no mieruka settings and nothing of this test run's paths."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MIERUKA_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    here = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != here)
    env["MIERUKA_DEV_VENV"] = str(venv)
    return env


class QuickStart:
    """`python3 scripts/dev.py demo --port P` started in a folder of its own."""

    def __init__(self, cwd: Path, venv: Path) -> None:
        self.cwd, self.venv = cwd, venv
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = newcomer_environment(venv)
        self.log_path = cwd.parent / "quickstart.log"
        self._log = self.log_path.open("w")
        # dev.py replaces itself with the server (exec): this process is the demo.
        self.process = subprocess.Popen(
            [sys.executable, str(DEV), "demo", "--port", str(self.port), "--workers", "2"],
            cwd=cwd,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def mieruka(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The `mieruka` command the quick start installed, run in the demo's folder."""
        return subprocess.run(
            [str(self.venv / "bin" / "mieruka"), *args],
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env={**self.env, **(env or {})},
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C, as the newcomer stops it
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[QuickStart]:
    venv = quickstart_venv()
    if not (venv / ".installed-demo").exists():
        try:
            httpx.get(f"{INDEX.rstrip('/')}/pip/", timeout=15, follow_redirects=True).raise_for_status()
        except httpx.HTTPError as exc:
            need_service(f"the package index {INDEX} is unreachable ({exc}): the quick start installs from it")
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv of an interrupted run
        for old in CACHE.glob("quickstart-*"):  # venvs of earlier pyproject.tomls, unused for a week
            if time.time() - old.stat().st_mtime > 7 * 86400:
                shutil.rmtree(old, ignore_errors=True)
    else:
        os.utime(venv)  # in use: not pruned by the cleaning above
    cwd = tmp_path_factory.mktemp("quickstart") / "clone"
    cwd.mkdir()
    demo = QuickStart(cwd, venv)
    failed_before = request.session.testsfailed
    try:
        # The first run installs mieruka[demo] and its dependencies: minutes on a slow network.
        wait_healthy(demo.url, demo.process, demo.output, timeout=900)
        yield demo
    finally:
        demo.stop()
        if request.session.testsfailed > failed_before:
            print(demo.output())


def log_in(demo: QuickStart, client: httpx.Client) -> None:
    """As the demo admin, through the one-time link the demo printed."""
    link = re.search(r"one-time link: (\S+)", demo.output())
    assert link, demo.output()
    page = client.get(link.group(1))
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf, page.text
    assert client.post(link.group(1), data={"csrf_token": csrf.group(1)}, follow_redirects=True).status_code == 200


@pytest.mark.timeout(1200)
def test_the_demo_installs_everything_its_dashboard_uses(quickstart: QuickStart) -> None:
    with httpx.Client(base_url=quickstart.url, timeout=30) as http:
        log_in(quickstart, http)
        deadline = time.monotonic() + 120
        while True:
            tiles = http.get("/api/dashboards/demo").json()["tiles"]
            if all(t["data"] is not None for t in tiles) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        broken = [(t.get("title"), t["error"]) for t in tiles if t["data"] is None or t["error"] is not None]
        assert broken == [], broken
        assert len(tiles) == 6  # the source tiles; the two stream tiles are their streams, below
        for stream in ("signal", "machine"):
            deadline = time.monotonic() + 60
            while not (points := http.get(f"/api/streams/{stream}/points").json())["series"] or not any(
                points["series"].values()
            ):
                assert time.monotonic() < deadline, f"stream {stream} has no points: {points}"
                time.sleep(0.5)
    output = quickstart.output()
    assert "MissingExtraError" not in output and "No module named" not in output, output
    # Installed as the README says: mieruka[demo], not the test tools.
    no_pytest = subprocess.run(
        [str(quickstart.venv / "bin" / "python"), "-c", "import pytest"], capture_output=True, timeout=60
    )
    assert no_pytest.returncode != 0, "the quick start's venv must not have the dev extras"


@pytest.mark.timeout(1200)
def test_the_cli_beside_the_demo_finds_its_data_and_user(quickstart: QuickStart) -> None:
    output = quickstart.output()
    assert f"the `mieruka` command is {quickstart.venv}/bin/mieruka" in output, output
    assert f"data in {quickstart.cwd / '.mieruka'} (the default home" in output, output
    created = quickstart.mieruka("tokens", "create", "--user", "demo", "--name", "newcomer")
    assert created.returncode == 0, created.stderr
    submitted = quickstart.mieruka(
        "submit",
        "hello",
        "--url",
        quickstart.url,
        "--wait",
        "name=newcomer",
        env={"MIERUKA_TOKEN": created.stdout.strip()},
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["result"] == "Hello, newcomer!"
    assert sorted(p.name for p in quickstart.cwd.iterdir()) == [".mieruka"]
