"""The built-in demo app (`mieruka demo`): one task for each thing mieruka does, every parameter
with a default, so each runs with one click."""

from __future__ import annotations

import csv
import html
import io
import logging
import math
import os
import random
import subprocess
import time
from collections.abc import Iterator
from datetime import date
from enum import Enum
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, Field

import mieruka
from mieruka import charts, controls

app = mieruka.App("mieruka demo", description="Try every kind of task: click one, submit, watch it run.")
log = logging.getLogger("demo")

SAMPLE = """mieruka (見える化) means "making it visible".
Point it at Python functions and it serves a REST API, a durable job queue and a web UI.
Jobs keep their logs, progress, results and artifacts, and survive a restart of the server.
"""


class Colour(str, Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Row(NamedTuple):
    item: str
    value: float


class Thresholds(BaseModel):
    low: float = Field(0.2, ge=0, le=1, description="Below this is low.")
    high: float = Field(0.8, ge=0, le=1, description="Above this is high.")


@app.task(quick=True)
def hello(name: str = "world", times: Annotated[int, Field(ge=1, le=10)] = 3) -> str:
    """Say hello: a quick task that answers at once.

    Args:
        name: Who to greet.
        times: How many greetings, 1 to 10.
    """
    for i in range(times):
        print(f"hello, {name} ({i + 1}/{times})")
    return f"Hello, {name}!"


@app.task(timeout="5m")
def count_slowly(
    steps: Annotated[int, Field(ge=1, le=1000)] = 20, delay: float = 0.3, *, job: mieruka.Job
) -> dict[str, int]:
    """Count with progress and a line of log per step.

    Args:
        steps: How many steps.
        delay: Seconds per step.
    """
    for i in range(1, steps + 1):
        time.sleep(delay)
        job.progress(i / steps, f"step {i} of {steps}")
        log.info("step %d done", i)
    return {"steps": steps}


@app.task
def make_report(
    title: str = "Demo report",
    rows: Annotated[int, Field(ge=1, le=10000)] = 12,
    colour: Colour = Colour.BLUE,
    *,
    job: mieruka.Job,
) -> dict[str, object]:
    """Build an HTML report and a CSV file as downloadable artifacts.

    Args:
        title: The report's title.
        rows: Rows of random data.
        colour: Colour of the bars.
    """
    data = [Row(f"item {i + 1}", round(random.random() * 100, 1)) for i in range(rows)]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["item", "value"])
    writer.writerows((r.item, r.value) for r in data)
    job.artifact("data.csv", buffer.getvalue(), "text/csv")
    bars = "".join(
        f'<tr><td>{html.escape(r.item)}</td><td><div style="background:{colour.value};height:1em;'
        f'width:{r.value}%"></div></td><td>{r.value}</td></tr>'
        for r in data
    )
    page = f"<!doctype html><title>{html.escape(title)}</title><h1>{html.escape(title)}</h1><table>{bars}</table>"
    job.artifact("report.html", page, "text/html")
    job.artifact("chart.svg", _bar_chart(data, colour.value), "image/svg+xml")
    return {"rows": rows, "mean": round(sum(r.value for r in data) / rows, 2)}


def _bar_chart(rows: list[Row], colour: str) -> str:
    width, bar = 480, 18
    bars = "".join(
        f'<rect x="90" y="{i * (bar + 4)}" width="{r.value / 100 * (width - 100):.1f}" height="{bar}" fill="{colour}"/>'
        f'<text x="0" y="{i * (bar + 4) + 13}" font-size="12">{html.escape(r.item)}</text>'
        for i, r in enumerate(rows)
    )
    height = len(rows) * (bar + 4)
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{bars}</svg>'


@app.task
def fail_on_purpose(message: str = "something went wrong") -> None:
    """Raise an error, to see how a failed job looks (error, traceback, log)."""
    print("about to fail")
    raise RuntimeError(message)


@app.task(retries=2, retry_backoff="1s")
def flaky(success_rate: Annotated[float, Field(ge=0, le=1)] = 0.3, *, job: mieruka.Job) -> str:
    """Fail at random; retried twice with backoff before it gives up.

    Args:
        success_rate: Chance that one attempt succeeds.
    """
    print(f"attempt {job.attempt} of {job.max_attempts}")
    if random.random() > success_rate:
        raise ValueError("unlucky this time")
    return "lucky"


@app.task(timeout="1h")
def long_sleep(seconds: Annotated[int, Field(ge=1, le=3600)] = 300, *, job: mieruka.Job) -> str:
    """Sleep in a child process: long enough to cancel it (the child process is stopped too).

    Args:
        seconds: How long to sleep.
    """
    job.progress(0.0, f"sleeping {seconds}s in process {os.getpid()}")
    child = subprocess.Popen(["sleep", str(seconds)])
    print(f"started sleep as process {child.pid}")
    child.wait()
    return "rested"


@app.task
def word_count(document: mieruka.File | None = None, top: int = 5) -> dict[str, object]:
    """Count the words of an uploaded text file (or of a built-in sample when none is given).

    Args:
        document: A text file.
        top: How many of the most frequent words to return.
    """
    text = document.read_text(errors="replace") if document is not None else SAMPLE
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    counts: dict[str, int] = {}
    for word in filter(None, words):
        counts[word] = counts.get(word, 0) + 1
    name = document.filename if document is not None else "sample"
    print(f"{name}: {len(words)} words, {len(counts)} distinct")
    best = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return {"file": name, "words": len(words), "top": [{"word": w, "count": c} for w, c in best]}


@app.task
def all_the_types(
    reference: Literal["hg38", "mm10"] = "hg38",
    day: date = date(2026, 1, 1),
    samples: list[str] = ["A1", "B2"],  # noqa: B006 - read only
    thresholds: Thresholds = Thresholds(),
    strict: bool = False,
    ratio: float = 0.5,
) -> dict[str, object]:
    """Show how each parameter type becomes a field and comes back validated."""
    return {
        "reference": reference,
        "day": day.isoformat(),
        "samples": samples,
        "thresholds": thresholds.model_dump(),
        "strict": strict,
        "ratio": ratio,
    }


def _split_words(text: str) -> int:
    words = [w.strip(".,;:!?()\"'").lower() for w in text.split()]
    words = [w for w in words if w]
    with open("words.txt", "w") as out:
        out.write("\n".join(words) + "\n")
    print(f"{len(words)} words")
    return len(words)


def _letters(words_file: str, delay: float, fail_first_attempt: bool, *, job: mieruka.Job) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(words_file) as fh:
        text = fh.read()
    for i, letter in enumerate("aeiou"):
        time.sleep(delay / 2)
        counts[letter] = text.count(letter)
        job.progress((i + 1) / 5, f"counted {letter!r}")
    if fail_first_attempt and job.attempt == 1:
        raise RuntimeError("failing on the first attempt, as asked: press Retry to run only what failed")
    return counts


def _summary(top_file: str, letters: dict[str, int], *, job: mieruka.Job) -> dict[str, object]:
    with open(top_file) as fh:
        top = [line.split() for line in fh if line.strip()]
    rows = "".join(f"<tr><td>{html.escape(w)}</td><td>{n}</td></tr>" for n, w in top)
    job.artifact("summary.html", f"<h1>Top words</h1><table>{rows}</table><p>vowels: {letters}</p>")
    return {"top_words": [{"word": w, "count": int(n)} for n, w in top], "vowels": letters}


@app.pipeline(parallel=2, timeout="10m")
def text_pipeline(
    text: str = SAMPLE,
    top: Annotated[int, Field(ge=1, le=100)] = 5,
    delay: Annotated[float, Field(ge=0, le=10)] = 0.5,
    fail_first_attempt: bool = False,
    *,
    pipe: mieruka.Pipeline,
) -> object:
    """A pipeline: Python and shell steps with dependencies, two at a time, each with its own log.

    Tick "fail first attempt", then press Retry on the failed job: only the step that failed runs
    again, the others are reused. The "banner" step is allowed to fail (it needs figlet).

    Args:
        text: The text to analyse.
        top: How many of the most frequent words to report.
        delay: Seconds each counting round waits, to watch the steps run.
        fail_first_attempt: Make the "letters" step fail on the job's first attempt.
    """
    words = pipe.step(_split_words, text, name="split")
    counts = pipe.shell(
        'for i in 1 2 3 4; do echo "::progress 0.$((i * 2)) counting"; sleep {delay}; done; '
        "sort {words} | uniq -c | sort -rn | head -n {top} > top.txt; cat top.txt",
        words=words.file("words.txt"),
        top=top,
        delay=delay,
        name="count",
    )
    letters = pipe.step(_letters, words.file("words.txt"), delay, fail_first_attempt, name="letters")
    pipe.shell(
        "figlet mieruka || (echo 'figlet is not installed: this step may fail' >&2; exit 1)",
        name="banner",
        allow_failure=True,
    )
    return pipe.step(_summary, counts.file("top.txt"), letters, name="summary")


@app.task(queue="compute", timeout="10m")
def estimate_pi(samples: Annotated[int, Field(ge=1000, le=50_000_000)] = 2_000_000, *, job: mieruka.Job) -> float:
    """Estimates pi from random points, with progress. On Celery it runs on the demo's compute pool,
    which this job starts and which stops after 2 idle minutes with nobody online."""
    rng = random.Random()
    inside, chunk = 0, max(1, samples // 10)
    for done in range(0, samples, chunk):
        n = min(chunk, samples - done)
        inside += sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
        job.progress((done + n) / samples, f"{done + n:,} of {samples:,} points")
    print(f"{inside:,} of {samples:,} points fell inside the circle")
    return 4 * inside / samples


# On Celery (MIERUKA_EXECUTOR=celery, a broker and a database) the demo brings its own workers:
# `mieruka worker` processes on this machine, started by the first job for their queue.
if app.settings.executor == "celery":
    from mieruka.pools import LocalWorkers

    app.pool("default", LocalWorkers(concurrency=2))
    app.pool("compute", LocalWorkers(concurrency=1), idle_stop="2m")


@app.task(every="1m", keep_count=100)
def heartbeat() -> dict[str, float]:
    """Runs every minute on its own: the system load, as a scheduled job."""
    load1, load5, load15 = os.getloadavg()
    return {"load1": load1, "load5": load5, "load15": load15}


# -- a live dashboard and a stream ----------------------------------------------------------------
# Sources need pandas (`pip install 'mieruka[data]'`); without it each tile says so.
REGIONS = ["North", "South", "East", "West", "Central"]


@app.source(every="5s", title="Orders by region")
def orders() -> list[dict[str, object]]:
    """A made-up order book that changes at each refresh."""
    rng = random.Random(int(time.time() // 5))
    return [{"region": r, "orders": rng.randint(20, 120), "returns": rng.randint(0, 15)} for r in REGIONS]


@app.source(every="1m", title="A day of sensor readings")
def readings() -> dict[str, object]:
    """86,400 readings (one a second for a day): downsampled on the server to what a chart can show."""
    import numpy as np

    now = time.time()
    seconds = np.arange(86_400, dtype=np.float64)
    rng = np.random.default_rng(int(now // 60))
    values = 20 + 5 * np.sin(seconds / 86_400 * 2 * np.pi) + rng.normal(0, 0.4, seconds.size)
    values[rng.integers(0, seconds.size, 3)] += 12  # three spikes that must stay visible
    return {"time": (now - 86_400 + seconds).astype("datetime64[s]"), "temperature": values}


@app.stream(every=0.1, window="30s", title="Signal at 10 Hz")
def signal() -> dict[str, float]:
    """A sine and a noisy copy, ten points a second."""
    now = time.time()
    clean = math.sin(now * 2)
    return {"sine": round(clean, 4), "noisy": round(clean + random.gauss(0, 0.15), 4)}


@app.stream(every=1.0, window="2m", title="This machine's load")
def machine() -> Iterator[dict[str, float]]:
    """CPU and memory use, once a second."""
    import psutil

    psutil.cpu_percent(interval=0.5)  # the first reading only starts the measurement
    while True:
        yield {"cpu %": psutil.cpu_percent(), "memory %": psutil.virtual_memory().percent}


app.dashboard(
    "demo",
    [
        charts.kpi(orders, "orders", aggregate="sum", title={"en": "Orders today", "ja": "本日の注文"}),
        charts.kpi(orders, "returns", aggregate="sum", title={"en": "Returns", "ja": "返品"}),
        charts.bar(
            orders,
            x="region",
            y=["orders", "returns"],
            title={"en": "Orders and returns by region", "ja": "地域別の注文と返品"},
        ),
        charts.doughnut(orders, x="region", y="orders", title={"en": "Share of orders", "ja": "注文の割合"}),
        charts.line(
            readings,
            x="time",
            y="temperature",
            title={"en": "Temperature, last 24 h (86,400 points)", "ja": "過去24時間の気温（86,400点）"},
            span=2,
        ),
        charts.stream(signal, title={"en": "Signal at 10 Hz", "ja": "10 Hz の信号"}, window=30),
        charts.stream(machine, title={"en": "This machine's load", "ja": "このマシンの負荷"}, window=120),
        charts.table(orders, title={"en": "Orders", "ja": "注文"}, page_size=5, span=2),
        controls.form(
            hello, title={"en": "Say hello", "ja": "あいさつ"}
        ),  # a control runs its task at once and answers in place
        controls.button(
            count_slowly, params={"steps": 5, "delay": 0.2}, title={"en": "Count to five", "ja": "5まで数える"}
        ),
    ],
    # The author's strings may be given per language: each reader sees theirs (docs/i18n.md).
    title={"en": "Live dashboard", "ja": "ライブダッシュボード"},
    description={
        "en": "Sources refreshed on the server and streams, pushed live to every browser.",
        "ja": "サーバーで更新されるデータソースとストリームを、すべてのブラウザーにライブで届けます。",
    },
)
