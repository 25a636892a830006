"""Job functions used by the tests: importable, top-level, one app."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

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
    values = {
        "text": text,
        "count": count,
        "ratio": ratio,
        "flag": flag,
        "choice": choice,
        "colour": colour,
        "day": day,
        "moment": moment,
        "names": names,
        "window": window,
    }
    return {name: type(value).__name__ for name, value in values.items()}


@app.task
def noisy(lines: int = 3, *, job: mieruka.Job) -> int:
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
def with_artifacts(*, job: mieruka.Job) -> str:
    job.artifact("hello.txt", "hello artifact")
    job.artifact("data.bin", bytes(range(256)) * 4)
    return "ok"


@app.task
def named_artifacts(names: list[str] = [], *, job: mieruka.Job) -> int:  # noqa: B006 - read only
    for name in names:
        job.artifact(name, f"content of {name}")
    return len(names)


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
def fail_then_succeed(marker: str, failures: int = 2, *, job: mieruka.Job) -> int:
    """Fails `failures` times (counted in a marker file), then succeeds."""
    path = Path(marker)
    count = int(path.read_text()) if path.exists() else 0
    if count < failures:
        path.write_text(str(count + 1))
        raise RuntimeError(f"failure {count + 1}")
    return job.attempt


@app.task
def sleep_in_child(seconds: float = 60, pidfile: str = "", *, job: mieruka.Job) -> str:
    """Start `sleep` as a child process, write both pids to `pidfile`, wait."""
    # Waited for however the job ends: cancelled on a thread, it is told so at its progress call,
    # after its child was killed, and a Popen dropped unwaited warns whenever it is collected.
    with subprocess.Popen(["sleep", str(seconds)]) as child:
        if pidfile:
            Path(pidfile).write_text(f"{os.getpid()} {child.pid}")
        job.progress(0.1, "sleeping")
    return "slept"


@app.task
def collector() -> dict[str, Any]:
    """The garbage collector of the process the job runs in: on, and what the start made frozen."""
    return {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}


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


@app.task
def sleep_then_text(seconds: float = 0.2, size: int = 10) -> str:
    time.sleep(seconds)
    return "x" * size


def _append_line(path: str, n: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.write(fd, f"{n}\n".encode())
    os.close(fd)


@app.task(retries=2)
def chaos(n: int, runs: str, seconds: float = 0.02) -> int:
    """Appends `n` to `runs`.started as it starts and to `runs` as it returns (one O_APPEND write each):
    tests/unit/test_chaos.py counts the runs and sees which jobs are inside their function. While
    the file `runs`.slow exists, a job started takes half a second, to be caught inside."""
    _append_line(runs + ".started", n)
    time.sleep(0.5 if os.path.exists(runs + ".slow") else seconds)
    _append_line(runs, n)
    return n


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
    return {
        "name": document.filename,
        "size": document.size,
        "text": document.read_text(),
        "extra": [f.filename for f in extra],
    }


@app.task(keep_count=2)
def kept_short(x: int = 0, *, job: mieruka.Job) -> int:
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


@app.task
def shaped(
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}\d+$", min_length=4, max_length=8)],
    fives: Annotated[int, Field(ge=5, le=50, multiple_of=5)] = 10,
) -> str:
    """A form the browser checks before the server: required, length, pattern, range and step."""
    return f"{code}:{fives}"


@app.task
def spoken_language() -> str:
    """The language a job runs in (mieruka's messages written in it): never the `mieruka` command's."""
    from mieruka.i18n import current_language

    return current_language()


@app.task(quick=True)
def quick_hello(name: str = "world") -> str:
    """Greet at once: a quick action."""
    return f"Hello, {name}!"


@app.task(retries=1, retry_backoff=0)
def sleep_first_time(pidfile: str, seconds: float = 30, *, job: mieruka.Job) -> int:
    """Sleeps on its first attempt (after writing its pid), returns at once on the next."""
    if job.attempt == 1:
        Path(pidfile).write_text(str(os.getpid()))
        time.sleep(seconds)
    return job.attempt


# -- pipelines (tests/servers/test_pipelines.py) ----------------------------------------------------------
def stamp(label: str, delay: float = 0.0) -> dict[str, float | str]:
    """A step that says when it ran."""
    start = time.time()
    time.sleep(delay)
    print(f"{label} ran")
    return {"label": label, "start": start, "end": time.time()}


def combine(*parts: dict[str, float | str]) -> list[str]:
    return [str(p["label"]) for p in parts]


def meet(label: str, other: str, folder: str) -> dict[str, float | str]:
    """A step that waits for `other` to start too: it fails unless both run at the same time."""
    start = time.time()
    Path(folder, label).write_text("here")
    deadline = time.monotonic() + 30
    while not Path(folder, other).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label} never met {other}: the steps did not run in parallel")
        time.sleep(0.02)
    print(f"{label} ran")
    return {"label": label, "start": start, "end": time.time()}


@app.pipeline(parallel=2)
def pipe_diamond(meet_dir: str = "", *, pipe: mieruka.Pipeline) -> object:
    """first -> (left, right in parallel) -> last."""
    first = pipe.step(stamp, "first", name="first")
    if meet_dir:
        left = pipe.step(meet, "left", "right", meet_dir, name="left", after=[first])
        right = pipe.step(meet, "right", "left", meet_dir, name="right", after=[first])
    else:
        left = pipe.step(stamp, "left", name="left", after=[first])
        right = pipe.step(stamp, "right", name="right", after=[first])
    return pipe.step(combine, first, left, right, name="last")


def count_words(text: str, *, job: mieruka.Job) -> dict[str, object]:
    job.progress(0.5, "counting")
    Path("words.txt").write_text("\n".join(text.split()) + "\n")
    job.artifact("words.txt", Path("words.txt"))
    return {"words": len(text.split()), "first": text.split()[0]}


def read_sorted(path: Path, stats: dict[str, object]) -> dict[str, object]:
    return {"sorted": path.read_text().split(), "words": stats["words"]}


@app.pipeline
def pipe_values(text: str = "pear apple fig", *, pipe: mieruka.Pipeline) -> object:
    """Values and files flow from step to step; a shell step reports progress."""
    counted = pipe.step(count_words, text, name="count")
    ordered = pipe.shell(
        "echo '::progress 0.4 sorting'; echo \"first word: {first}\"; "
        "sort {src} > sorted.txt; echo '::artifact sorted.txt'",
        first=counted["first"],
        src=counted.file("words.txt"),
        name="sort",
    )
    return pipe.step(read_sorted, ordered.file("sorted.txt"), counted, name="read")


def counted_step(counter: str) -> str:
    with open(counter, "a") as fh:
        fh.write("ran\n")
    return "prepared"


def needs_marker(marker: str, prepared: str) -> str:
    if not os.path.exists(marker):
        raise RuntimeError("marker missing")
    return prepared + "+flaky"


@app.pipeline
def pipe_flaky(counter: str, marker: str, *, pipe: mieruka.Pipeline) -> object:
    """Fails until the marker file exists; an optional step is allowed to fail."""
    prepared = pipe.step(counted_step, counter, name="prepare")
    pipe.shell(["sh", "-c", "echo optional fails; exit 3"], name="optional", allow_failure=True)
    flaky = pipe.step(needs_marker, marker, prepared, name="flaky")
    return pipe.step(str.upper, flaky, name="after")


@app.pipeline
def pipe_sleepy(pidfile: str, *, pipe: mieruka.Pipeline) -> None:
    """A shell step that starts a grandchild and waits: cancel must kill both."""
    first = pipe.shell("echo started", name="start")
    pipe.shell(
        "sleep 120 & echo $! > {pidfile}; echo $$ >> {pidfile}; echo '::progress 0.1 sleeping'; wait",
        pidfile=pidfile,
        name="sleep",
        after=[first],
    )


WORKFLOW = Path(__file__).with_name("workflow") / "Snakefile"


def read_number(path: Path) -> int:
    return int(path.read_text())


@app.pipeline
def pipe_snake(n: int = 4, block: str = "/nonexistent", *, pipe: mieruka.Pipeline) -> object:
    """An existing Snakefile as a step, then a Python step reading its result."""
    flow = pipe.snakemake(WORKFLOW, targets=["report.txt"], config={"n": n, "block": block}, cores=2)
    return pipe.step(read_number, flow.file("report.txt"), name="read")


app.snakemake(WORKFLOW, name="snake_flow", targets=["report.txt"], config={"n": 3})


@app.pipeline
def pipe_timeout(*, pipe: mieruka.Pipeline) -> None:
    """A step over its own timeout is killed and fails; allowed to fail, the pipeline goes on."""
    slow = pipe.shell(["sleep", "30"], name="slow", timeout=0.5, allow_failure=True)
    pipe.shell(["echo", "needs slow"], name="needs", after=[slow])
    pipe.shell(["echo", "independent"], name="independent")
    pipe.shell(["no-such-program-here"], name="missing", allow_failure=True)


@app.pipeline
def pipe_ticker(ticks: int = 8, hold: str = "", *, pipe: mieruka.Pipeline) -> None:
    """A shell step that prints and reports progress over a few seconds, then (given `hold`, a
    file's path) goes on running until that file exists."""
    first = pipe.shell("echo ready", name="prepare")
    pipe.shell(
        'for i in $(seq 1 {n}); do echo "tick $i"; echo "::progress $i/{n}" | '
        "awk -F'[ /]' '{{print $1, $2/$3, \"ticking\"}}'; sleep 0.3; done; "
        "if [ -n {hold} ]; then while [ ! -e {hold} ]; do sleep 0.05; done; fi",
        n=ticks,
        hold=hold,
        name="ticker",
        after=[first],
    )


@app.task
def log_rate(rate: int = 2000, seconds: float = 10.0, nice: int = 10) -> int:
    """Print `rate` x `seconds` lines, `rate` a second (a busy log to follow), at a low CPU priority.
    Every line is printed, however late: a loaded machine slows the pace, never ends the log short."""
    os.nice(nice)
    start, written, total = time.monotonic(), 0, int(seconds * rate)
    while written < total:
        due = min(int((time.monotonic() - start) * rate) + rate // 50, total)
        while written < due:
            print(f"line {written} " + "x" * 60, flush=False)
            written += 1
        sys.stdout.flush()
        if written < total:
            time.sleep(0.02)
    return written


@app.task
def progress_until(marker: str, *, job: mieruka.Job) -> int:
    """Report progress every 0.2 s until the file `marker` exists."""
    ticks = 0
    while not Path(marker).exists():
        ticks += 1
        job.progress((ticks % 100) / 100, f"tick {ticks}")
        time.sleep(0.2)
    return ticks
