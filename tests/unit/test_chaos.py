"""Chaos on the embedded engine (issue 18 item 3): a few hundred jobs through repeated kill -9 of a
real `mieruka run` server (SQLite, two local workers), one kill during a stall (SIGSTOP) taken while a
worker is inside a job the stall submitted, so that its outcome is only in the worker's spool when
the server dies; each kill is followed by a restart on the same port and home. Every job is
accounted for: none lost, none stuck, none run again after its function returned, none recorded
failed that finished. Each run of the function that returned is a line in a side file
(tests/jobs.py's `chaos`, one O_APPEND write).

Kills are paced by progress (so many new runs since the last start), not by the clock: on a slow
machine the test takes longer. On a loaded one the queue may run dry before the later kills; the
stalled kill brings its own job, so what it checks does not depend on that."""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from mieruka.executors.spool import SUFFIX, read_end
from tests.conftest import ServerProcess

JOBS = 300
KILLS = 4
STALLED = 1  # the kill that comes after a stall (by index)
EVERY = 25  # new runs between kills
WAIT = 30.0


def runs(side: Path) -> Counter[int]:
    text = side.read_text() if side.exists() else ""
    return Counter(int(line) for line in text.splitlines() if line)


def lines_after(path: Path, offset: int) -> set[int]:
    text = path.read_bytes()[offset:].decode() if path.exists() else ""
    return {int(line) for line in text.splitlines() if line}


def spooled_jobs(outcomes: Path) -> set[int]:
    """The jobs whose ends are in the workers' outcome files under `outcomes`."""
    return {end.job_id for path in outcomes.glob(f"*/*{SUFFIX}") if (end := read_end(path, quiet=True)) is not None}


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def kill_in_a_stall(
    server: ServerProcess, side: Path, since: tuple[int, int], more: Callable[[], tuple[int, int]]
) -> None:
    """SIGSTOP the server while a worker is inside a job of its own (`more` submits one ahead of the
    queue and returns its n and job id; with the flag file `runs`.slow it takes half a second, tests/jobs.py's
    `chaos`), let that job return while the server cannot save its outcome, then SIGKILL: the
    outcome is left in the worker's spool. `since`: the side files' sizes at this server's start.
    Its own job, because on a loaded machine the paced kills may come after the queue ran dry."""
    started = side.with_name(side.name + ".started")
    slow = side.with_name(side.name + ".slow")
    slow.touch()
    deadline = time.monotonic() + WAIT
    ours: dict[int, int] = {}
    try:
        while True:
            n, job_id = more()
            ours[n] = job_id
            while not lines_after(started, since[0]) & ours.keys():  # until it starts (the server runs meanwhile)
                assert time.monotonic() < deadline, f"jobs {ours} never started"
                time.sleep(0.005)
            server.process.send_signal(signal.SIGSTOP)
            inside = (lines_after(started, since[0]) & ours.keys()) - lines_after(side, since[1])
            if inside:
                break
            server.process.send_signal(signal.SIGCONT)  # it returned already: one more
        spooled = {ours[n] for n in inside}
        while not spooled <= spooled_jobs(server.home / "outcomes"):  # written just after it returned
            assert time.monotonic() < deadline, f"jobs {inside} left no end in a spool while the server was stopped"
            time.sleep(0.01)
        server.kill()
    finally:
        slow.unlink()


def test_kill_9_loses_no_finished_outcome(tmp_path: Path, request: Any) -> None:
    side = tmp_path / "runs.txt"
    server = ServerProcess("tests/jobs.py:app", tmp_path / "home", "--workers", "2")
    failed_before = request.session.testsfailed
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=WAIT) as http:
            ids = {
                n: http.post("/api/tasks/chaos/jobs", json={"n": n, "runs": str(side)}).json()["id"]
                for n in range(JOBS)
            }
        since = (0, 0)
        for kill in range(KILLS):
            seen = sum(runs(side).values())
            deadline = time.monotonic() + WAIT
            while sum(runs(side).values()) < min(seen + EVERY, JOBS) and time.monotonic() < deadline:
                time.sleep(0.01)
            if kill == STALLED:

                def one_more() -> tuple[int, int]:
                    n = JOBS + len(ids)
                    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
                        answer = http.post("/api/tasks/chaos/jobs?priority=100", json={"n": n, "runs": str(side)})
                    ids[n] = answer.json()["id"]
                    return n, ids[n]

                kill_in_a_stall(server, side, since, one_more)
            else:
                server.kill()
            since = (size(side.with_name(side.name + ".started")), size(side))
            server.restart()
        statuses: dict[int, dict[str, Any]] = {}
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=server.url, timeout=WAIT) as http:
            while time.monotonic() < deadline:  # every job in one listing (there were 300 requests a look)
                listed = http.get("/api/jobs", params={"task": "chaos", "limit": 500}).json()["jobs"]
                by_id = {job["id"]: job for job in listed}
                statuses = {n: by_id.get(job, {"status": "missing", "error": None}) for n, job in ids.items()}
                if all(s["status"] in ("succeeded", "failed") for s in statuses.values()):
                    break
                time.sleep(0.2)
        counted = runs(side)
        stuck = {n: s["status"] for n, s in statuses.items() if s["status"] not in ("succeeded", "failed")}
        assert not stuck, f"jobs left unfinished: {stuck}"
        twice = {n: c for n, c in counted.items() if c > 1}
        assert not twice, f"functions that returned and ran again: {twice}"
        failed_after_return = {n: s["error"] for n, s in statuses.items() if s["status"] == "failed" and counted[n]}
        assert not failed_after_return, f"recorded failed though their function returned: {failed_after_return}"
        lost = [n for n, s in statuses.items() if s["status"] == "succeeded" and counted[n] != 1]
        assert not lost, f"succeeded without a run on record: {lost}"
        for s in statuses.values():
            if s["status"] == "failed":  # killed while running on each of its attempts: never returned
                assert "interrupted" in (s["error"] or ""), s
        # The stall made sure an outcome was only in a spool when the server died.
        assert "left by a server that was killed" in server.output()
    finally:
        server.stop()
        if request.session.testsfailed > failed_before:
            print(server.output())
