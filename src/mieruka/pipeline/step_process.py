"""A pipeline step's process as the run sees it (pipeline/run.py starts it): the program it names,
the events pipe of a Snakemake workflow, the wait within the step's timeout, and what its end
means for the step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..notes import note, read
from ..process import exit_note, kill_tree
from .graph import StepDef

Outcome = tuple[bool, Any, str | None]  # (succeeded, output, error)


def find_program(name: str) -> str | None:
    """The executable `name` stands for (a path, or a name looked up on PATH); None if there is none."""
    program = name if "/" in name else shutil.which(name)
    return program if program is not None and os.access(program, os.X_OK) else None


def close(*fds: int) -> None:
    """Closes the descriptors given that are open (-1 is none)."""
    for fd in fds:
        if fd >= 0:
            os.close(fd)


def wait(proc: subprocess.Popen[bytes], timeout: float | None) -> tuple[int, bool]:
    """The process's exit code, and whether it outlived `timeout` (its whole tree is killed then)."""
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        return proc.wait(), True


def read_events(fd: int, handle: Callable[[dict[str, Any]], None]) -> None:
    """Hands each JSON object of the events pipe to `handle`, until the pipe closes."""
    with os.fdopen(fd, "rb") as stream:
        for raw in stream:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                handle(event)


def outcome(step: StepDef, result_file: Path, code: int, timed_out: bool) -> Outcome:
    """What the end of a step's process means: a timeout, a Python step's result file, or the
    exit code of any other."""
    if timed_out:
        return False, None, note("error.timed_out", seconds=step.timeout or 0.0)
    if step.kind == "python":
        return _python_result(result_file, code)
    if code == 0:
        return True, None, None
    return False, None, exit_note(code)


def _python_result(result_file: Path, code: int) -> Outcome:
    try:
        data = json.loads(result_file.read_text())
    except (OSError, ValueError):
        return False, None, exit_note(code) if code else note("error.no_result")
    if data.get("ok"):
        return True, data.get("output"), None
    return False, None, read(str(data.get("error") or "failed"))  # the child's note comes as stored
