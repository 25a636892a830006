"""The line protocol any step's program can speak on its stdout (documented in docs/pipelines.md):

    ::progress 0.4 aligning      fraction in [0, 1] (or 40%) and an optional message
    ::progress - indexing        a message alone
    ::artifact report.html       attach a file from the step's folder as a job artifact
    ::artifact out/plot.png plot.png    ... under another name

Such lines are read, not logged. Anything else is an ordinary log line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    fraction: float | None
    message: str | None


@dataclass(frozen=True)
class ArtifactLine:
    path: str
    name: str


Directive = Progress | ArtifactLine


def parse(line: str) -> Directive | None:
    """The directive a line carries, or None for an ordinary line (also a malformed directive,
    which is then simply logged)."""
    if not line.startswith("::"):
        return None
    head, _, rest = line[2:].partition(" ")
    rest = rest.strip()
    if head == "progress":
        value, _, message = rest.partition(" ")
        fraction: float | None
        if value in ("-", ""):
            fraction = None
        else:
            try:
                fraction = float(value[:-1]) / 100 if value.endswith("%") else float(value)
            except ValueError:
                return None
            if fraction != fraction:  # NaN
                return None
            fraction = min(max(fraction, 0.0), 1.0)
        text = message.strip() or None
        if fraction is None and text is None:
            return None
        return Progress(fraction, text[:1000] if text else None)
    if head == "artifact" and rest:
        path, _, name = rest.partition(" ")
        return ArtifactLine(path, name.strip() or path.rsplit("/", 1)[-1])
    return None


def progress_line(fraction: float | None, message: str | None) -> str:
    value = "-" if fraction is None else f"{min(max(float(fraction), 0.0), 1.0):.4g}"
    text = f" {message}" if message else ""
    return f"::progress {value}{text}".replace("\n", " ")
