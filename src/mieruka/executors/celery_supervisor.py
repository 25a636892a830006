"""`mieruka worker` keeps its Celery worker up: it runs it as a child process and starts it again
when it ends without being asked to.

Celery's main process (the consumer) can die of an error no one planned for (kombu 5.7 did on a
broker outage, see redis_transport.py) or be killed. Celery then shuts down warm: the jobs running
in its pool processes end first and write their outcomes to the store, and the process exits. A
consumer killed outright takes its pool processes' jobs down with it, and the servers recover them
(re-queued while attempts remain, else failed as interrupted). Either way the supervisor starts a
new worker, so the machine goes on taking jobs; a systemd or docker restart is no longer needed.

The supervisor forwards SIGTERM, SIGINT, SIGQUIT and SIGHUP to the worker and then exits with it
(SIGTERM is Celery's warm shutdown). The worker leads its own process group, so Ctrl-C in a
terminal reaches it once, through the supervisor; and it is killed when the supervisor dies
(Linux), so a kill -9 of `mieruka worker` still takes the whole worker down.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

from ..process import describe_exit

log = logging.getLogger("mieruka.worker")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)
FIRST_DELAY = 1.0  # seconds before the first restart; doubled after each quick death, up to MAX_DELAY
MAX_DELAY = 30.0
STEADY = 60.0  # a worker that lived this long died of something new: restart it after FIRST_DELAY
PR_SET_PDEATHSIG = 1


def supervise(argv: Sequence[str], say: Callable[[str], None] | None = None) -> int:
    """Run `argv` (a `mieruka worker ... --no-supervisor`) until it exits after a signal we
    forwarded or with code 0; start it again whenever else it ends. Returns its exit code."""
    say = say or _say
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED}
    delay = FIRST_DELAY
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, preexec_fn=_child_setup(os.getpid()))
            if stopping:  # asked while it was being started: the handler had no child to tell
                child.send_signal(signal.SIGTERM)
            code = _wait(child)
            if stopping or code == 0:
                return code if code >= 0 else 128 - code
            lived = time.monotonic() - started
            delay = FIRST_DELAY if lived >= STEADY else delay
            how = f"was {describe_exit(code)}" if code < 0 else describe_exit(code)
            say(f"the Celery worker (pid {child.pid}) {how} after {lived:.1f}s; starting it again in {delay:g}s")
            end = time.monotonic() + delay
            while not stopping and time.monotonic() < end:
                time.sleep(0.1)
            if stopping:
                return 0
            delay = min(delay * 2, MAX_DELAY)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            continue


def _child_setup(parent: int) -> Callable[[], None]:
    """What the child does between fork and exec; libc is loaded before the fork."""
    libc_name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    libc = ctypes.CDLL(libc_name) if libc_name else None

    def setup() -> None:
        os.setpgid(0, 0)
        if libc is not None:
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
            if os.getppid() != parent:  # the supervisor died before the line above
                os._exit(1)

    return setup


def _say(message: str) -> None:
    print(f"mieruka: {message}", file=sys.stderr, flush=True)
