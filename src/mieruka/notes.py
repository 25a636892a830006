"""The texts mieruka writes itself where a person reads them later (issue 22): a job's message while
its compute pool starts or before a retry, a pipeline's "3/5 steps done", why a step was skipped or
a pool stopped, why a job failed when its process died, why a live topic was refused.

Each is a `Note`: as a str it is the English text, which the API, the logs, the Python API and the
notifications show, so code that reads it as text sees no change. It is stored as its code and
values (`mieruka:job.retrying {"attempt":1,"delay":5}`), read back as a Note, and said in the
reader's language where a page shows it: Jinja writes what `__html__` gives, and the JSON for the
pages' scripts carries it as `<field>_note` (`{"code", "text", "values"}`), which static/i18n.js's
`said` translates. Old rows and the authors' own messages are plain texts, shown as written.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from typing import Any, TypeAlias

from .i18n import BY_TAG, ENGLISH, N_, current_language, translations

PREFIX = "mieruka:"

# Every note by its code (stable: stored in databases, named in the API) and its English text.
TEXTS: dict[str, str] = {
    # a job's message
    "job.steps_done": N_("%(done)s/%(total)s steps done"),
    "job.steps_running": N_("%(done)s/%(total)s steps done; running %(steps)s"),
    "job.pool_starting": N_("starting compute: pool %(pool)s is starting"),
    "job.retrying": N_("attempt %(attempt)s failed; retrying in %(delay)ss"),
    "job.retry_requested": N_("retry requested"),
    "job.cancelled": N_("cancelled"),
    "job.cancelled_before_start": N_("cancelled before it started"),
    "job.requeued_server_stopped": N_("re-queued: the server stopped while it ran"),
    "job.requeued_server_lost": N_("re-queued: interrupted when its server stopped"),
    "job.requeued_worker_lost": N_("re-queued: interrupted when its worker stopped"),
    # why a job or step failed, when mieruka ended it
    "error.timed_out": N_("timed out after %(seconds)ss"),
    "error.interrupted_server": N_("interrupted: its server stopped while it ran"),
    "error.interrupted_worker": N_("interrupted: its worker stopped while it ran"),
    "error.no_task": N_("no task named %(task)s in this app"),
    "error.worker_no_task": N_("the worker's app has no task named %(task)s"),
    "error.worker_vanished": N_("the worker process vanished"),
    "error.worker_killed": N_("the worker process was killed by %(signal)s"),
    "error.worker_killed_oom": N_("the worker process was killed by %(signal)s (out of memory?)"),
    "error.worker_exited": N_("the worker process exited with code %(code)s"),
    "error.worker_died": N_("the worker process died while running the job"),
    "error.worker_died_saying": N_("the worker process died (%(said)s)"),
    "error.result_not_json": N_(
        "the result cannot be stored as JSON (%(error)s); return JSON data, a pydantic model or a dataclass, "
        "or save it with job.artifact()"
    ),
    "error.step_result_not_json": N_("the step's result cannot be stored as JSON: %(error)s"),
    "error.thread_stopped": N_("stopped in the server process"),
    "error.killed": N_("killed by %(signal)s"),
    "error.exited": N_("exited with code %(code)s"),
    "error.no_result": N_("the step ended without a result"),
    "error.workflow_stopped": N_("the workflow stopped while it ran"),
    "error.step_failed": N_("step %(step)s failed: %(error)s"),
    "error.raised": N_("%(kind)s: %(error)s"),
    # a pipeline step's message
    "step.reused": N_("reused from an earlier attempt"),
    "step.done_before": N_("done in an earlier attempt"),
    "step.not_run": N_("not run: an earlier step failed"),
    "step.input_failed": N_("an input step did not succeed"),
    "step.failed_allowed": N_("failed (allowed)"),
    "step.jobs_done": N_("%(done)s of %(total)s jobs done"),
    # why a compute pool changed state
    "pool.declared": N_("declared"),
    "pool.job_waiting": N_("job %(job)s is waiting"),
    "pool.jobs_waiting": N_("jobs waiting: %(count)s"),
    "pool.idle": N_("idle for %(time)s"),
    "pool.start_late": N_("starting did not finish within %(time)s"),
    "pool.stop_late": N_("stopping did not finish within %(time)s"),
    "pool.start_failed": N_("start failed: %(error)s"),
    "pool.stop_failed": N_("stop failed: %(error)s"),
    "pool.started": N_("started"),
    "pool.stopped": N_("stopped"),
    "pool.started_by_hand": N_("started by hand"),
    "pool.stopped_by_hand": N_("stopped by hand"),
    "pool.server_stopped": N_("its server stopped"),
    # why no job can run (the workers page)
    "workers.cannot_load": N_("cannot load app %(app)s: %(error)s"),
    "workers.die_at_start": N_("worker processes die at start-up (%(why)s)"),
    # a source's error on its tiles, or why a tile cannot be drawn
    "source.timed_out": N_("timed out after %(seconds)ss (the last good data is kept)"),
    "tile.no_column": N_("no column %(missing)s in the table (columns: %(columns)s)"),
    # why a live topic was refused (the pages then poll, and say why)
    "topic.no_task": N_("no task named %(task)s"),
    "topic.no_job": N_("no job with id %(id)s"),
    "topic.dashboard_denied": N_("%(user)s may not use dashboard %(name)s"),
    "topic.stream_denied": N_("%(user)s may not use stream %(name)s"),
    "topic.unknown": N_("no such topic: %(topic)s"),
    # a span of time inside another note
    "time.minutes": N_("%(minutes)s min"),
    "time.seconds": N_("%(seconds)s s"),
}

Value: TypeAlias = "str | int | float | list[str] | Note"


class Note(str):
    """A text of mieruka's own: the English text as a str, its code and values besides."""

    code: str
    values: dict[str, Value]

    def __new__(cls, code: str, values: Mapping[str, Value]) -> Note:
        kept = dict(values)
        self = super().__new__(cls, _fill(TEXTS[code], kept, ENGLISH))
        self.code, self.values = code, kept
        return self

    def __reduce__(self) -> tuple[Any, ...]:  # pickle (the workers' pipe), copy, dataclasses.asdict
        return (Note, (self.code, self.values))

    def in_language(self, tag: str | None = None) -> str:
        """The note in language `tag` (default: the current request's)."""
        tag = tag or current_language()
        if tag == ENGLISH or tag not in BY_TAG:
            return str.__str__(self)
        return _fill(translations(tag).gettext(TEXTS[self.code]), self.values, tag)

    def __html__(self) -> str:
        return html.escape(self.in_language(), quote=True)

    def stored(self) -> str:
        """The text a database keeps: `mieruka:CODE {values}`."""
        return (
            f"{PREFIX}{self.code} {json.dumps(_stored_values(self.values), ensure_ascii=False, separators=(',', ':'))}"
        )

    def to_json(self) -> dict[str, Any]:
        """What the pages' scripts translate (static/i18n.js `said`): the code, the English text
        as the catalogs know it, and the values (a list or a nested note stays one)."""
        return {"code": self.code, "text": TEXTS[self.code], "values": _json_values(self.values)}


def note(code: str, /, **values: Value) -> Note:
    """A note of `code` (one of TEXTS) with its placeholders' values."""
    return Note(code, values)


def span(seconds: float) -> Note:
    """A span of time as the pools have always said it: "5 min" from a minute on, else "30 s"."""
    return note("time.minutes", minutes=seconds / 60) if seconds >= 60 else note("time.seconds", seconds=seconds)


def stored(text: str | None) -> str | None:
    """What to write for a text: a note's stored form, any other text as it is."""
    return text.stored() if isinstance(text, Note) else text


def read(text: str | None) -> str | None:
    """A stored text as written: a Note for a note's stored form, any other text as it is (also a
    note this version does not know, or a damaged one: shown as stored rather than lost)."""
    if text is None or isinstance(text, Note) or not text.startswith(PREFIX):
        return text
    code, _space, values = text[len(PREFIX) :].partition(" ")
    if code not in TEXTS:
        return text
    try:
        parsed = json.loads(values) if values else {}
        return Note(code, {key: _read_value(value) for key, value in parsed.items()})
    except (ValueError, TypeError, KeyError, AttributeError):
        return text


def json_of(text: str | None) -> dict[str, Any] | None:
    """The `<field>_note` of a text in JSON: its note's code, text and values, None for a plain text."""
    found = read(text)
    return found.to_json() if isinstance(found, Note) else None


def public(data: Mapping[str, Any], fields: tuple[str, ...] = ("message", "error")) -> dict[str, Any]:
    """`data` as the API and the event streams send it: each of `fields` holding a note (or its
    stored form) becomes its English text, with `<field>_note` beside it."""
    out = dict(data)
    for key in fields:
        found = read(out.get(key)) if isinstance(out.get(key), str) else None
        if isinstance(found, Note):
            out[key], out[f"{key}_note"] = str.__str__(found), found.to_json()
    return out


def said(text: str | None, tag: str | None = None) -> str:
    """A stored text in language `tag` (default: the current one): a note translated, any other
    text as it is."""
    found = read(text)
    return found.in_language(tag) if isinstance(found, Note) else (found or "")


def _fill(template: str, values: Mapping[str, Value], tag: str) -> str:
    return template % {key: _shown(value, tag) for key, value in values.items()}


def _shown(value: Value, tag: str) -> str:
    """One value as the language writes it: a note in it, a list joined as it joins lists, a
    fraction with its decimal sign; whole numbers (ids, counts, codes) as they are."""
    if isinstance(value, Note):
        return value.in_language(tag)
    if isinstance(value, list):
        items = [_shown(item, tag) for item in value]
        if tag == ENGLISH:
            return ", ".join(items)
        from babel.lists import format_list

        return str(format_list(items, locale=BY_TAG[tag].folder))
    if isinstance(value, float) and not value.is_integer():
        if tag == ENGLISH:
            return f"{value:g}"
        from babel.numbers import format_decimal

        return str(format_decimal(value, locale=BY_TAG[tag].folder))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _stored_values(values: Mapping[str, Value]) -> dict[str, Any]:
    return {
        k: {"note": v.code, "values": _stored_values(v.values)} if isinstance(v, Note) else v for k, v in values.items()
    }


def _json_values(values: Mapping[str, Value]) -> dict[str, Any]:
    return {k: v.to_json() if isinstance(v, Note) else v for k, v in values.items()}


def _read_value(value: Any) -> Value:
    if isinstance(value, dict):
        return Note(value["note"], {key: _read_value(item) for key, item in value["values"].items()})
    if isinstance(value, list):
        return [str(item) for item in value]
    if isinstance(value, str | int | float):
        return value
    raise TypeError(f"not a note's value: {value!r}")
