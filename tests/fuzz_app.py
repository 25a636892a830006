"""The app scripts/fuzz.py serves to schemathesis: quick tasks with every kind of parameter, a
pipeline, a data source with its dashboard and a stream, so that most routes have something to
find (compute pools need the Celery executor); nothing that sleeps long or writes outside the data directory."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, Field

import mieruka
from mieruka import charts

app = mieruka.App("fuzz")


class Window(BaseModel):
    low: float = Field(0.2, ge=0, le=1)
    high: float = Field(0.8, ge=0, le=1)


@app.task
def add(a: int, b: int = 2) -> int:
    """Add two numbers."""
    return a + b


@app.task
def echo(
    reference: Literal["hg38", "mm10"] = "hg38",
    day: date = date(2026, 1, 1),
    samples: list[str] = [],  # noqa: B006 - read only
    window: Window = Window(),
    strict: bool = False,
    ratio: float = 0.5,
    count: Annotated[int, Field(ge=1, le=10)] = 3,
    note: str | None = None,
) -> dict[str, object]:
    """Every parameter type, returned as given."""
    return {
        "reference": reference,
        "day": day.isoformat(),
        "samples": samples,
        "window": window.model_dump(),
        "strict": strict,
        "ratio": ratio,
        "count": count,
        "note": note,
    }


@app.task
def upload(document: mieruka.File | None = None, *, job: mieruka.Job) -> int:
    """Count the bytes of an upload, kept as an artifact."""
    data = document.read_bytes() if document is not None else b""
    job.artifact("copy.bin", data)
    return len(data)


@app.task(quick=True)
def fail(message: str = "boom") -> None:
    """Fail on purpose."""
    raise RuntimeError(message)


def shout(text: str) -> str:
    return text.upper()


def words(text: str) -> int:
    return len(text.split())


@app.pipeline
def two_steps(text: str = "fuzz me", *, pipe: mieruka.Pipeline) -> object:
    """Two quick steps, the second after the first."""
    loud = pipe.step(shout, text, name="shout")
    return pipe.step(words, loud, name="count")


@app.source(every="1h")
def readings() -> list[dict[str, object]]:
    return [{"ward": "A", "value": 1.5}, {"ward": "B", "value": 2.5}]


app.dashboard("overview", [charts.bar(readings, "ward", "value"), charts.table(readings)])


@app.stream(every=1.0)
def ticks() -> dict[str, float]:
    return {"value": 1.0}
