"""Process control (mieruka.process) on real processes: a tree is killed whole, whether its members
stayed in the leader's group or left it, and every way a process ends is worded one way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from mieruka.process import alive, describe_exit, kill_tree, signal_name, worker_lost

# A parent that starts a child in its own group and one in a session of its own, then waits.
TREE = """
import subprocess, sys, time
same = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
apart = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
print(same.pid, apart.pid, flush=True)
time.sleep(60)
"""


def _gone(pid: int, within: float = 30.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("leads_group", [True, False])
def test_kill_tree_takes_the_whole_tree(leads_group: bool) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", TREE], stdout=subprocess.PIPE, process_group=0 if leads_group else None
    ) as leader:
        assert leader.stdout is not None
        same, apart = (int(pid) for pid in leader.stdout.readline().split())
        try:
            kill_tree(leader.pid)
            assert leader.wait(timeout=30) == -signal.SIGKILL
            assert _gone(same) and _gone(apart)
        finally:
            for pid in (same, apart):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_kill_tree_with_the_members_found_before() -> None:
    """The Celery worker finds a pool process's children before Celery kills the process (the
    children are orphaned then): the list found before is what is killed."""
    with subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, process_group=0) as leader:
        assert leader.stdout is not None
        same, apart = (int(pid) for pid in leader.stdout.readline().split())
        found = psutil.Process(leader.pid).children(recursive=True)
        leader.kill()
        leader.wait(timeout=30)
    assert alive(apart)  # orphaned, out of the group: only the list found before reaches it
    kill_tree(leader.pid, found)
    assert _gone(same) and _gone(apart)
    kill_tree(None)  # no process: nothing to do


def test_how_a_process_ended_is_worded_one_way() -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as killed:
        killed.send_signal(signal.SIGTERM)
        assert describe_exit(killed.wait(timeout=30)) == "killed by SIGTERM"
    exited = subprocess.run([sys.executable, "-c", "raise SystemExit(3)"], check=False)
    assert describe_exit(exited.returncode) == "exited with code 3"
    assert describe_exit(-77) == "killed by signal 77" and signal_name(9) == "SIGKILL"
    assert worker_lost(-signal.SIGKILL) == "the worker process was killed by SIGKILL (out of memory?)"
    assert worker_lost(-signal.SIGSEGV) == "the worker process was killed by SIGSEGV"
    assert worker_lost(3) == "the worker process exited with code 3"
    assert worker_lost(None) == "the worker process vanished"
