"""Footprint bench (issue 23): mieruka's weight and start-up beside the peers' hello-world apps, one table.

    python3 scripts/dev.py bench footprint                 # everything, 3 rounds, 60 s of idle each
    python3 scripts/dev.py bench footprint --idle 10       # a shorter idle window
    python3 scripts/dev.py bench footprint --quick --only mieruka   # a smoke run: 1 round, 1 s idle, 2 loads

Systems: mieruka's minimal app (bench/minimal_app.py: one task, one dashboard with one chart) served by
`mieruka run` with 2 local workers and with the threads executor, `mieruka demo` (pandas sources), and
examples/device_panel (local workers and threads); the peers of ../shared/peers/apps (Flask, FastAPI, Dash, Streamlit,
Gradio, NiceGUI), started with their measure.py's commands and environment from their venv
(/tmp/peers-venv-apps, made by their run_all.sh when missing).

Per start, as measure.py does: spawn, poll the page until the first 200, (mieruka) submit one job and
long-poll its result, settle 3 s, PSS of the whole process tree, CPU seconds of the tree over the idle
window, then 20 page loads in real Chromium (/usr/bin/chromium through Playwright, every non-local host
unresolvable, a fresh browser context per load, waiting until the page shows its content) and the tree's
PSS again. Local executors are also started with 4 workers: (PSS(4) - PSS(2)) / 2 is the cost of each
further worker. Rounds are interleaved (every system once per round) after one discarded warm-up start
each; each cell is the median [min-max] over the rounds. Raw figures go to --out/footprint.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = Path(os.environ.get("MIERUKA_PEERS_DIR") or ROOT.parent / "shared" / "peers") / "apps"
PEERS_VENV = Path(os.environ.get("PEERS_APPS_VENV", "/tmp/peers-venv-apps"))
MIERUKA = Path(os.environ.get("MIERUKA_PYTHON", sys.executable)).parent / "mieruka"
CHROMIUM = "/usr/bin/chromium"
PEERS = ("flask", "fastapi", "dash", "streamlit", "gradio", "nicegui")
RATIO_TO = ("flask", "fastapi", "streamlit")
START_LIMIT = 120.0
SETTLE = 3.0


@dataclass
class System:
    name: str
    label: str
    argv: Callable[[int, int], list[str]]  # (port, workers) -> command line
    page: str  # the page polled for the first 200 and loaded in the browser
    shows: str  # text the page shows once it has rendered
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = ROOT
    task: str | None = None  # a job to submit right after the first 200 (mieruka)
    busy: tuple[str, dict[str, Any]] | None = None  # a job that holds a worker for a second
    more_workers: bool = False  # measure 4 workers too (local executor)
    admin_token: bool = False  # the app has accounts: make an admin token before starting


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    base: str
    token: str
    start_s: float
    result_s: float | None


# -- the systems ------------------------------------------------------------------------------------


def mieruka_systems() -> list[System]:
    def run(app: str) -> Callable[[int, int], list[str]]:
        return lambda port, workers: [str(MIERUKA), "run", app, "--port", str(port), "--workers", str(workers)]

    systems = [
        System(
            "mieruka-minimal",
            "mieruka minimal app, `mieruka run`, 2 local workers",
            run("bench/minimal_app.py"),
            "/dashboards/hello",
            "hello",
            task="hello",
            busy=("hello", {"seconds": 1}),
            more_workers=True,
        ),
        System(
            "mieruka-minimal-threads",
            "mieruka minimal app, executor threads (one process)",
            run("bench/minimal_app.py"),
            "/dashboards/hello",
            "hello",
            env={"MIERUKA_EXECUTOR": "threads"},
            task="hello",
            busy=("hello", {"seconds": 1}),
        ),
        System(
            "mieruka-demo",
            "`mieruka demo` (pandas sources, 2 streams), 2 local workers",
            lambda port, workers: [str(MIERUKA), "demo", "--port", str(port), "--workers", str(workers)],
            "/dashboards/demo",
            "Live dashboard",
            task="hello",
            busy=("long_sleep", {"seconds": 1}),
            more_workers=True,
            admin_token=True,
        ),
    ]
    panel = ROOT / "examples" / "device_panel" / "app.py"
    if panel.exists():
        # The state file goes in the start's fresh home (MIERUKA_HOME); reset needs no parameters,
        # and a press of the pump holds a worker for the given seconds.
        for name, label, env in (
            ("mieruka-device-panel", "examples/device_panel, 2 local workers", {}),
            (
                "mieruka-device-panel-threads",
                "examples/device_panel, executor threads",
                {"MIERUKA_EXECUTOR": "threads"},
            ),
        ):
            systems.append(
                System(
                    name,
                    label,
                    run(str(panel.relative_to(ROOT))),
                    "/dashboards/panel",
                    "Device panel",
                    env=env,
                    task="reset",
                    busy=("run_pump", {"seconds": 1}),
                    more_workers=not env,
                )
            )
    return systems


def peer_argv(template: list[str]) -> Callable[[int, int], list[str]]:
    return lambda port, _workers: [arg.format(port=port) for arg in template]


def peer_systems(work: Path) -> tuple[list[System], str]:
    """The peers as their measure.py starts them (commands, environment, folder), from a copy of
    their folder (shared/ may be read-only); and a line of their versions."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        return [], f"peers skipped: no venv at {PEERS_VENV} (bash {PEERS_DIR}/run_all.sh makes it)"
    work.mkdir(parents=True, exist_ok=True)
    for script in PEERS_DIR.glob("*.py"):
        shutil.copy(script, work)
    probe = (
        "import json, importlib.metadata as m, measure\n"
        "names = ['flask', 'fastapi', 'uvicorn', 'dash', 'streamlit', 'gradio', 'nicegui', 'pandas']\n"
        "print(json.dumps({'apps': measure.APPS, 'env': measure.ENV,"
        " 'versions': {n: m.version(n) for n in names if _has(n)}}))\n"
    )
    probe = "def _has(n):\n    import importlib.metadata as m\n    try: m.version(n); return True\n" + (
        "    except m.PackageNotFoundError: return False\n" + probe
    )
    out = subprocess.run([str(python), "-c", probe], cwd=work, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        return [], f"peers skipped: their measure.py did not load ({out.stderr.strip().splitlines()[-1:]})"
    found = json.loads(out.stdout)
    env: dict[str, str] = found["env"]
    systems = []
    missing = []
    for name in PEERS:
        if name not in found["apps"] or name not in found["versions"]:
            missing.append(name)
            continue
        template: list[str] = found["apps"][name]
        systems.append(
            System(
                name,
                f"{name} hello world",
                peer_argv(template),
                "/",
                "hello",
                env=env,
                cwd=work,
            )
        )
    versions = ", ".join(f"{k} {v}" for k, v in sorted(found["versions"].items()))
    note = f"peers ({PEERS_VENV}): {versions}"
    if missing:
        note += f"; not installed, not measured: {', '.join(missing)}"
    return systems, note


# -- one start --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_pss(pid: int) -> tuple[float, int]:
    """PSS of the process and all its descendants in MB, and how many processes that is."""
    total, count = 0, 0
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_full_info().pss
            count += 1
    return total / 2**20, count


def tree_cpu(pid: int) -> dict[int, float]:
    times = {}
    for p in tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            t = p.cpu_times()
            times[p.pid] = t.user + t.system + t.children_user + t.children_system
    return times


def admin_token(home: Path) -> str:
    """An admin's API token in a fresh home, made before the server starts (not timed)."""
    env = {**os.environ, "MIERUKA_HOME": str(home)}
    subprocess.run(
        [str(MIERUKA), "users", "add", "demo", "--role", "admin", "--no-password"],
        env=env,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [str(MIERUKA), "tokens", "create", "--user", "demo", "--name", "footprint"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.split()[-1]


def start(system: System, workers: int, scratch: Path, log: Path, *, job: bool = True) -> Started:
    home = Path(tempfile.mkdtemp(prefix=f"{system.name}-", dir=scratch))
    token = admin_token(home) if system.admin_token else ""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **system.env, "PORT": str(port), "MIERUKA_HOME": str(home)}
    with log.open("ab") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            system.argv(port, workers),
            cwd=system.cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = Started(proc, base, token, 0.0, None)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=httpx.Timeout(60.0, connect=2.0)) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"exited with {proc.returncode} before answering (log: {log})")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(system.page).status_code == 200:
                        break
                if time.perf_counter() - t0 > START_LIMIT:
                    raise RuntimeError(f"no 200 within {START_LIMIT:.0f} s (log: {log})")
                time.sleep(0.05)
            started.start_s = time.perf_counter() - t0
            if job and system.task:
                submitted = client.post(f"/api/tasks/{system.task}/jobs", json={})
                submitted.raise_for_status()
                job_id = submitted.json()["id"]
                while True:
                    answer = client.get(f"/api/jobs/{job_id}", params={"wait": 30}).json()
                    if answer["status"] in ("succeeded", "failed", "cancelled"):
                        break
                    if time.perf_counter() - t0 > START_LIMIT:
                        raise RuntimeError(f"no job result within {START_LIMIT:.0f} s (log: {log})")
                if answer["status"] != "succeeded":
                    raise RuntimeError(f"the first job {answer['status']}: {answer.get('error')}")
                started.result_s = time.perf_counter() - t0
    except BaseException:
        stop(proc)
        raise
    return started


def stop(proc: subprocess.Popen[bytes]) -> None:
    kids = tree(proc.pid)[1:]
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for kid in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            kid.kill()


# -- the browser ------------------------------------------------------------------------------------


class Browser:
    """Headless /usr/bin/chromium through Playwright, every host but 127.0.0.1 unresolvable (as the
    peers' browser.py does): one fresh context per page load, so each load is a new session."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self._manager = sync_playwright()
        playwright = self._manager.start()
        self._browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--disable-dev-shm-usage"],
        )

    def load(self, url: str, shows: str, token: str) -> bool:
        """Loads the page in a new session; True once it shows `shows` (within 20 s)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        context = self._browser.new_context(extra_http_headers=headers)
        try:
            page = context.new_page()
            page.goto(url, wait_until="load", timeout=60_000)
            try:
                page.wait_for_function(
                    "s => document.body && document.body.textContent.includes(s)", arg=shows, timeout=20_000
                )
                shown = True
            except Exception:  # Playwright's TimeoutError: counted as not rendered
                shown = False
            page.wait_for_timeout(500)  # the page's own requests after it shows (streams, websockets)
            return shown
        finally:
            context.close()

    def close(self) -> None:
        self._browser.close()
        self._manager.__exit__(None, None, None)


# -- one round of one system ------------------------------------------------------------------------


def occupy(system: System, started: Started, workers: int) -> None:
    """Holds every worker with a job at once, so that all are started (the pools start them on demand)."""
    if system.busy is None:
        return
    task, params = system.busy
    headers = {"Authorization": f"Bearer {started.token}"} if started.token else {}
    with httpx.Client(base_url=started.base, headers=headers, timeout=60.0) as client:
        ids = []
        for _ in range(workers):
            submitted = client.post(f"/api/tasks/{task}/jobs", json=params)
            submitted.raise_for_status()
            ids.append(submitted.json()["id"])
        deadline = time.monotonic() + START_LIMIT
        for job_id in ids:
            while client.get(f"/api/jobs/{job_id}", params={"wait": 30}).json()["status"] in ("queued", "running"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} did not finish within {START_LIMIT:.0f} s")


def measure(system: System, args: argparse.Namespace, scratch: Path, browser: Browser | None) -> dict[str, Any]:
    log = scratch / f"{system.name}.log"
    figures: dict[str, Any] = {}
    s = start(system, 2, scratch, log)
    try:
        figures["start_s"] = s.start_s
        figures["result_s"] = s.result_s
        occupy(system, s, 2)
        time.sleep(args.settle)
        figures["idle_pss_mb"], figures["processes"] = tree_pss(s.proc.pid)
        before = tree_cpu(s.proc.pid)
        time.sleep(args.idle)
        after = tree_cpu(s.proc.pid)
        figures["idle_cpu_s"] = sum(after[pid] - before[pid] for pid in after if pid in before)
        if browser is not None and args.loads:
            shown = sum(browser.load(s.base + system.page, system.shows, s.token) for _ in range(args.loads))
            time.sleep(1)
            figures["loaded_pss_mb"] = tree_pss(s.proc.pid)[0]
            figures["loads_shown"] = shown
    finally:
        stop(s.proc)
    if system.more_workers and not args.quick:
        s = start(system, 4, scratch, log)
        try:
            occupy(system, s, 4)
            time.sleep(args.settle)
            pss4, _ = tree_pss(s.proc.pid)
            figures["per_worker_mb"] = (pss4 - figures["idle_pss_mb"]) / 2
        finally:
            stop(s.proc)
    return figures


# -- the table --------------------------------------------------------------------------------------


def cell(values: list[float], digits: int) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


def median_of(rounds: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rounds if r.get(key) is not None]
    return statistics.median(values) if values else None


def ratios(results: dict[str, list[dict[str, Any]]], name: str, key: str) -> str:
    mine = median_of(results[name], key)
    parts = []
    for peer in RATIO_TO:
        theirs = median_of(results.get(peer, []), key)
        parts.append(f"{mine / theirs:.2f}" if mine is not None and theirs else "-")
    return " / ".join(parts)


def table(
    systems: list[System],
    results: dict[str, list[dict[str, Any]]],
    errors: dict[str, list[str]],
    args: argparse.Namespace,
) -> str:
    head = [
        "system",
        "idle PSS tree MB",
        "x Flask / FastAPI / Streamlit",
        "per further worker MB",
        "start->1st 200 s",
        "x Flask / FastAPI / Streamlit",
        "start->1st job result s",
        f"idle CPU s in {args.idle:g} s",
        f"PSS after {args.loads} browser loads MB",
        "growth MB",
        "processes",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for system in systems:
        rounds = results.get(system.name, [])
        if not rounds:
            why = "; ".join(errors.get(system.name, [])[:1]) or "not measured"
            lines.append(f"| {system.name} | FAILED: {why} |" + " |" * (len(head) - 2))
            continue

        def col(key: str, digits: int, rounds: list[dict[str, Any]] = rounds) -> str:
            return cell([r[key] for r in rounds if r.get(key) is not None], digits)

        growth = [r["loaded_pss_mb"] - r["idle_pss_mb"] for r in rounds if r.get("loaded_pss_mb") is not None]
        shown = [r["loads_shown"] for r in rounds if "loads_shown" in r]
        loaded = col("loaded_pss_mb", 1)
        if shown and min(shown) < args.loads:
            loaded += f" ({min(shown)}/{args.loads} shown)"
        failed = f" ({len(errors[system.name])} rounds failed)" if errors.get(system.name) else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    system.name + failed,
                    col("idle_pss_mb", 1),
                    ratios(results, system.name, "idle_pss_mb"),
                    col("per_worker_mb", 1),
                    col("start_s", 2),
                    ratios(results, system.name, "start_s"),
                    col("result_s", 2),
                    col("idle_cpu_s", 2),
                    loaded,
                    cell(growth, 1),
                    col("processes", 0),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3, help="measured rounds (default 3)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle window for CPU seconds (default 60)")
    parser.add_argument("--loads", type=int, default=20, help="browser page loads (default 20; 0: none)")
    parser.add_argument("--only", default="", help="comma-separated systems, or 'mieruka' / 'peers'")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 1 round, 1 s idle, 2 loads, no warm-up, no 4-worker start"
    )
    parser.add_argument("--out", default=os.environ.get("BENCH_OUT", "/tmp/mieruka-footprint"), help="logs, raw JSON")
    args = parser.parse_args(argv)
    args.settle = SETTLE
    if args.quick:
        args.reps, args.idle, args.loads, args.settle = 1, 1.0, min(args.loads, 2), 0.5
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="run-", dir=out))

    wanted = {w.strip() for w in args.only.split(",") if w.strip()}
    notes: list[str] = []
    systems = mieruka_systems()
    if not any(s.name == "mieruka-device-panel" for s in systems):
        notes.append("mieruka-device-panel skipped: examples/device_panel does not exist yet")
    if not wanted or wanted - {"mieruka"} - {s.name for s in systems}:
        peers, note = peer_systems(scratch / "peers")
        systems += peers
        notes.append(note)
    if wanted:
        systems = [
            s
            for s in systems
            if s.name in wanted
            or ("mieruka" in wanted and s.name.startswith("mieruka"))
            or ("peers" in wanted and s.name in PEERS)
        ]
    browser = None
    if args.loads and Path(CHROMIUM).exists():
        browser = Browser()
    elif args.loads:
        notes.append(f"no browser loads: {CHROMIUM} is missing")

    results: dict[str, list[dict[str, Any]]] = {s.name: [] for s in systems}
    errors: dict[str, list[str]] = {}
    try:
        if not args.quick:
            for system in systems:  # discarded: .pyc compiled, the OS page cache warm
                say(f"warm-up {system.name}")
                with contextlib.suppress(Exception):
                    stop(start(system, 2, scratch, scratch / f"{system.name}.log", job=False).proc)
        for k in range(args.reps):
            for system in systems:
                say(f"round {k + 1}/{args.reps} {system.name}")
                try:
                    figures = measure(system, args, scratch, browser)
                except Exception as exc:
                    errors.setdefault(system.name, []).append(f"{type(exc).__name__}: {exc}")
                    say(f"  FAILED: {exc}")
                    continue
                results[system.name].append(figures)
                say("  " + " ".join(f"{key}={value:.2f}" for key, value in figures.items() if value is not None))
    finally:
        if browser is not None:
            browser.close()

    print(table(systems, results, errors, args))
    print()
    for note in notes:
        print(f"- {note}")
    print(
        f"- {args.reps} rounds, each cell median [min-max]; idle PSS {args.settle:g} s after the first 200 (for"
        f" mieruka: and the first job's result, then one job on each worker at once);"
        f" per further worker = (PSS with 4 workers - with 2) / 2;"
        f" {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores;"
        f" logs and raw figures in {scratch}"
    )
    (scratch / "footprint.json").write_text(
        json.dumps({"results": results, "errors": errors, "notes": notes}, indent=1)
    )
    return 1 if any(not results[s.name] for s in systems) else 0


def say(text: str) -> None:
    print(time.strftime("%H:%M:%S ") + text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
