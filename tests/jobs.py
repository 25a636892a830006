"""Job functions used by the tests: importable, top-level, one app."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field

import mieruka

app = mieruka.App("test jobs")


class Colour(str, Enum):
    RED = "red"
    BLUE = "blue"


class Window(BaseModel):
    start: int = 0
    end: int = 10


@dataclass
class Summary:
    total: int
    label: str


@app.task
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


@app.task
def echo_types(
    text: str = "x",
    count: int = 1,
    ratio: float = 0.5,
    flag: bool = False,
    choice: Literal["hg38", "mm10"] = "hg38",
    colour: Colour = Colour.RED,
    day: date = date(2026, 1, 1),
    moment: datetime = datetime(2026, 1, 1, 12, 0),
    names: list[str] = ["a"],  # noqa: B006
    window: Window = Window(),
) -> dict[str, object]:
    """Return every parameter with its Python type name, to check what the function received."""
    values = {"text": text, "count": count, "ratio": ratio, "flag": flag, "choice": choice,
              "colour": colour, "day": day, "moment": moment, "names": names, "window": window}
    return {name: type(value).__name__ for name, value in values.items()}


@app.task
def noisy(lines: int = 3, job: mieruka.Job = None) -> int:
    """Print lines, log, report progress, write to stderr and from a child process."""
    import logging

    for i in range(lines):
        print(f"line {i}")
    print("to stderr", file=sys.stderr)
    logging.getLogger("noisy").warning("a warning")
    job.log("from job.log")
    subprocess.run(["echo", "from a child process"], check=True)
    job.progress(0.5, "half way")
    return lines


@app.task
def many_lines(lines: int = 100_000) -> int:
    for i in range(lines):
        print(f"line {i} " + "x" * 40)
    return lines


@app.task
def with_artifacts(job: mieruka.Job = None) -> str:
    job.artifact("hello.txt", "hello artifact")
    job.artifact("data.bin", bytes(range(256)) * 4)
    return "ok"


@app.task
def big_result(size: int = 2_000_000) -> str:
    return "x" * size


@app.task
def model_result() -> Window:
    return Window(start=1, end=2)


@app.task
def dataclass_result() -> Summary:
    return Summary(total=3, label="three")


@app.task
def not_json() -> object:
    return object()


@app.task
async def async_add(a: int, b: int = 1) -> int:
    await asyncio.sleep(0.01)
    return a + b


@app.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@app.task(retries=2, retry_backoff=0.2)
def fail_then_succeed(marker: str, failures: int = 2, job: mieruka.Job = None) -> int:
    """Fails `failures` times (counted in a marker file), then succeeds."""
    path = Path(marker)
    count = int(path.read_text()) if path.exists() else 0
    if count < failures:
        path.write_text(str(count + 1))
        raise RuntimeError(f"failure {count + 1}")
    return job.attempt


@app.task
def sleep_in_child(seconds: float = 60, pidfile: str = "", job: mieruka.Job = None) -> str:
    """Start `sleep` as a child process, write both pids to `pidfile`, wait."""
    child = subprocess.Popen(["sleep", str(seconds)])
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()} {child.pid}")
    job.progress(0.1, "sleeping")
    child.wait()
    return "slept"


@app.task(timeout=0.5)
def too_slow(seconds: float = 30) -> str:
    time.sleep(seconds)
    return "never"


@app.task(retries=1, retry_backoff=0, timeout=0.5)
def too_slow_retried(seconds: float = 30) -> str:
    time.sleep(seconds)
    return "never"


@app.task
def exit_hard(code: int = 1) -> None:
    os._exit(code)


@app.task
def segfault() -> None:
    ctypes.string_at(0)


@app.task
def sleep(seconds: float = 0.2) -> float:
    time.sleep(seconds)
    return seconds


@app.task(concurrency=1)
def one_at_a_time(seconds: float = 0.3, marker: str = "") -> float:
    """Records its start and end so the test can check that runs never overlap."""
    start = time.time()
    time.sleep(seconds)
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{start} {time.time()}\n")
    return seconds


@app.task
def read_upload(document: mieruka.File, extra: list[mieruka.File] = []) -> dict[str, object]:  # noqa: B006
    """Read uploaded files."""
    return {"name": document.filename, "size": document.size, "text": document.read_text(),
            "extra": [f.filename for f in extra]}



@app.task(keep_count=2)
def kept_short(x: int = 0, job: mieruka.Job = None) -> int:
    """Only the newest two finished jobs of this task are kept."""
    print(f"x={x}")
    job.artifact("x.txt", str(x))
    return x


@app.task
def progress_steps(steps: int = 5, delay: float = 0.3, *, job: mieruka.Job) -> int:
    """Report progress step by step, with a log line each."""
    for i in range(1, steps + 1):
        time.sleep(delay)
        job.progress(i / steps, f"step {i} of {steps}")
        print(f"step {i}")
    return steps


@app.task
def bounded(count: Annotated[int, Field(ge=1, le=10, description="How many, 1 to 10.")] = 3) -> int:
    return count


@app.task(quick=True)
def quick_hello(name: str = "world") -> str:
    """Greet at once: a quick action."""
    return f"Hello, {name}!"


@app.task(retries=1, retry_backoff=0)
def sleep_first_time(pidfile: str, seconds: float = 30, job: mieruka.Job = None) -> int:
    """Sleeps on its first attempt (after writing its pid), returns at once on the next."""
    if job.attempt == 1:
        Path(pidfile).write_text(str(os.getpid()))
        time.sleep(seconds)
    return job.attempt
