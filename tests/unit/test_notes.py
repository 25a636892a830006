"""mieruka's own texts (mieruka/notes.py, issue 22): English as a str, stored as a code and values,
read back as notes from every store (SQLite and PostgreSQL: jobs, steps, pools), across processes
(pickle, JSON records, bus events), and said in each language; every note is in every catalog;
old rows and the authors' messages stay as written."""

from __future__ import annotations

import copy
import json
import pickle
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from babel.messages.pofile import read_po
from scripts.catalogs import TEMPLATE

from mieruka import notes
from mieruka.core.clock import utcnow
from mieruka.core.events import Event, state_event
from mieruka.core.job import JobRecord
from mieruka.core.status import JobStatus
from mieruka.core.steps import StepRecord, StepStatus
from mieruka.i18n import ENGLISH, LANGUAGES, LOCALE
from mieruka.notes import Note, note, read, said, span, stored
from mieruka.notify.deliveries import event_of
from mieruka.notify.messages import compose
from mieruka.recorder import step_event
from mieruka.store import tables as t
from mieruka.store.base import JobQuery, NewJob, ProgressUpdate, StepSaved, Transition
from mieruka.store.pools import SqlPoolStore
from mieruka.store.sql import SqlJobStore

OTHERS = [language for language in LANGUAGES if language.tag != ENGLISH]
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def sample(code: str) -> Note:
    """A note of `code` with a value for each placeholder: a number, a list or a span where the
    name asks for one."""
    values: dict[str, notes.Value] = {}
    for name in PLACEHOLDER.findall(notes.TEXTS[code]):
        if name == "steps":
            values[name] = ["align", "count"]
        elif name == "time":
            values[name] = span(90)
        elif name in ("seconds", "delay", "minutes"):
            values[name] = 2.5
        elif name in ("done", "total", "attempt", "count", "code", "job", "id"):
            values[name] = 3
        else:
            values[name] = f"<{name}>"
    return Note(code, values)


def test_every_note_is_in_the_template_and_translated_in_every_language() -> None:
    with TEMPLATE.open("rb") as pot:
        template = {m.id: m for m in read_po(pot) if m.id}
    for code, text in notes.TEXTS.items():
        assert text in template, f"{code}: run `python3 scripts/dev.py i18n`"
        assert any(file.endswith("notes.py") for file, _ in template[text].locations), code
    for language in OTHERS:
        with (LOCALE / language.folder / "LC_MESSAGES" / "mieruka.po").open("rb") as po:
            catalog = read_po(po, locale=language.folder)
        for code, text in notes.TEXTS.items():
            found = catalog.get(text)
            assert found is not None and found.string and not found.fuzzy, f"{language.tag}: {code} is not translated"
            assert set(PLACEHOLDER.findall(str(found.string))) == set(PLACEHOLDER.findall(text)), (language.tag, code)


def test_a_note_is_its_english_text_and_comes_back_from_what_is_stored() -> None:
    running = note("job.steps_running", done=3, total=5, steps=["count", "align"])
    assert running == "3/5 steps done; running count, align"  # what the API and the Python API read
    assert f"{running}" == str(running) == "3/5 steps done; running count, align" and type(str(running)) is str
    text = running.stored()
    assert text == 'mieruka:job.steps_running {"done":3,"total":5,"steps":["count","align"]}' and type(text) is str
    back = read(text)
    assert isinstance(back, Note) and back == running and back.code == running.code and back.values == running.values
    idle = note("pool.idle", time=span(0.3))
    assert idle == "idle for 0.3 s" and note("pool.idle", time=span(300)) == "idle for 5 min"
    nested = read(idle.stored())
    assert (
        isinstance(nested, Note)
        and isinstance(nested.values["time"], Note)
        and nested.in_language("ru") == ("простаивал 0,3 с")
    )
    assert note("job.retrying", attempt=1, delay=5.0) == "attempt 1 failed; retrying in 5s"
    for copied in (pickle.loads(pickle.dumps(running)), copy.deepcopy(running), copy.copy(running)):
        assert isinstance(copied, Note) and copied.code == running.code and copied.values == running.values
    assert stored(running) == text and stored("written by an author") == "written by an author" and stored(None) is None


@pytest.mark.parametrize(
    "text",
    [
        "3/5 steps done; running count",  # a row of an older version: English, as it was
        "indexing reads",  # a task's own job.progress() message
        "mieruka: an author's text that starts like ours",
        "mieruka:job.from_a_newer_version {}",  # a code this version does not know
        "mieruka:job.steps_done {broken json",
        'mieruka:job.steps_done {"done": 1}',  # a value missing
        'mieruka:job.steps_done ["not", "an object"]',
    ],
)
def test_other_texts_stay_as_written(text: str) -> None:
    assert read(text) == text and not isinstance(read(text), Note)
    assert (
        said(text, "ja") == text
        and notes.json_of(text) is None
        and notes.public({"message": text}) == {"message": text}
    )


@pytest.mark.parametrize("language", OTHERS, ids=[language.tag for language in OTHERS])
def test_every_note_is_said_in_the_language(language: object) -> None:
    from mieruka.i18n import Language

    assert isinstance(language, Language)
    for code in notes.TEXTS:
        shown = sample(code).in_language(language.tag)
        english = str(sample(code))
        assert "%(" not in shown, (code, shown)
        if re.search(r"[a-z]{4}", PLACEHOLDER.sub("", notes.TEXTS[code])):  # has English words to translate
            assert shown != english, f"{language.tag}: {code} is said in English: {shown!r}"
    assert note("pool.idle", time=span(90)).in_language("ja") == "1.5 分 アイドル状態でした"
    assert note("job.steps_running", done=1, total=2, steps=["a", "b"]).in_language("ja") == (
        "2 ステップ中 1 完了、実行中: a、b"
    )
    assert note("job.retrying", attempt=2, delay=0.5).in_language("ru") == "попытка 2 не удалась; повтор через 0,5 с"


def test_the_json_and_the_events_carry_english_and_the_note() -> None:
    retrying = note("job.retrying", attempt=1, delay=5.0)
    assert (
        notes.json_of(retrying.stored())
        == notes.json_of(retrying)
        == {
            "code": "job.retrying",
            "text": "attempt %(attempt)s failed; retrying in %(delay)ss",
            "values": {"attempt": 1, "delay": 5.0},
        }
    )
    nested = notes.json_of(note("pool.idle", time=span(30)))
    assert nested is not None and nested["values"]["time"]["code"] == "time.seconds"
    # A state event keeps the stored form (a bus may carry it as JSON); a browser gets English and the note.
    event = state_event(7, "add", "queued", {"message": retrying, "error": "ValueError: x", "attempts": 1})
    assert event.data["message"] == retrying.stored() and event.data["error"] == "ValueError: x"
    sent = json.loads(json.dumps(event.to_dict()))
    assert sent["message"] == "attempt 1 failed; retrying in 5s" and sent["message_note"]["code"] == "job.retrying"
    assert "error_note" not in sent and sent["error"] == "ValueError: x"
    progress = Event("progress", 7, "add", {"progress": 0.5, "message": "indexing"})
    assert progress.to_dict()["message"] == "indexing" and "message_note" not in progress.to_dict()
    step = StepRecord(
        job_id=7,
        name="slow",
        position=0,
        kind="shell",
        status=StepStatus.FAILED,
        depends_on=[],
        description="sleep 30",
        message=note("step.failed_allowed"),
        error=note("error.timed_out", seconds=0.5),
    )
    data = step_event(step)
    assert data["message"] == note("step.failed_allowed").stored() and data["error"] == step.error.stored()  # type: ignore[union-attr]


def test_a_record_as_json_keeps_its_notes() -> None:
    record = JobRecord(
        id=1,
        task="add",
        status=JobStatus.FAILED,
        params={},
        created_at=utcnow(),
        message=note("job.cancelled"),
        error=note("error.worker_killed_oom", signal="SIGKILL"),
    )
    carried = json.loads(json.dumps(record.to_json()))
    assert carried["error"] == 'mieruka:error.worker_killed_oom {"signal":"SIGKILL"}'
    back = JobRecord.from_json(carried)
    assert back == record and isinstance(back.error, Note) and back.error.code == "error.worker_killed_oom"
    assert back.error == "the worker process was killed by SIGKILL (out of memory?)"
    assert back.to_dict()["error"] == back.error and isinstance(back.to_dict()["message"], Note)


def test_the_stores_keep_the_code_and_give_back_notes(database_url: str, tmp_path: Path) -> None:
    store = SqlJobStore(database_url)
    store.migrate()
    try:
        job, _ = store.create_job(NewJob(task="pipe", params={}))
        old, _ = store.create_job(NewJob(task="pipe", params={}))
        retrying = note("job.retrying", attempt=1, delay=600.0)
        lost = note("error.worker_exited", code=3)
        store.apply(
            [Transition(job.id, JobStatus.QUEUED, frozenset({JobStatus.QUEUED}), {"message": retrying, "error": lost})]
        )
        store.apply(
            [Transition(old.id, JobStatus.QUEUED, frozenset({JobStatus.QUEUED}), {"message": "retry requested"})]
        )
        found = store.get_job(job.id)
        assert found is not None and isinstance(found.message, Note) and found.message.code == "job.retrying"
        assert (
            found.message == "attempt 1 failed; retrying in 600s"
            and found.error == "the worker process exited with code 3"
        )
        assert found.message.in_language("ja") == "1 回目の試行が失敗しました。600 秒後に再試行します"
        plain = store.get_job(old.id)
        assert plain is not None and plain.message == "retry requested" and not isinstance(plain.message, Note)
        listed = {r.id: r for r in store.list_jobs(JobQuery(limit=10))}
        assert isinstance(listed[job.id].message, Note)
        with store.db.read() as conn:
            raw = conn.execute(sa.text("SELECT message, error FROM jobs WHERE id = :id"), {"id": job.id}).one()
        assert tuple(raw) == (retrying.stored(), lost.stored())
        # A running job's progress, as the workers' recorder writes it
        claimed = store.apply(
            [Transition(job.id, JobStatus.RUNNING, frozenset({JobStatus.QUEUED}), {"started_at": utcnow()})]
        )
        assert claimed.done == [True]
        steps_done = note("job.steps_done", done=1, total=2)
        store.apply([ProgressUpdate(job.id, 0.5, steps_done)])
        now = store.get_job(job.id)
        assert now is not None and isinstance(now.message, Note) and now.message.code == "job.steps_done"
        # A pipeline's step
        step = StepRecord(
            job_id=job.id,
            name="needs",
            position=1,
            kind="shell",
            status=StepStatus.SKIPPED,
            depends_on=["slow"],
            description="echo",
            message=note("step.input_failed"),
            error=note("error.timed_out", seconds=0.5),
        )
        store.apply([StepSaved(step)])
        (saved,) = store.list_steps(job.id)
        assert isinstance(saved.message, Note) and saved.message.code == "step.input_failed"
        assert isinstance(saved.error, Note) and saved.error == "timed out after 0.5s"
        # A pool's state and history
        pools = SqlPoolStore(store)
        pools.ensure("gpu", "stopped", utcnow())
        assert pools.move("gpu", {"stopped"}, "starting", note("pool.job_waiting", job=job.id), utcnow())
        assert pools.move("gpu", {"starting"}, "running", "started by a version before notes", utcnow())
        history = pools.history("gpu")
        assert [type(e.reason) for e in history] == [str, Note, Note]
        assert [e.reason for e in history] == [
            "started by a version before notes",
            f"job {job.id} is waiting",
            "declared",
        ]
        record = pools.get("gpu")
        assert record is not None and record.message == "started by a version before notes"
        # A notification's event: the job's error as the database's trigger copies it, told in English
        with store.db.write() as conn:
            conn.execute(
                sa.insert(t.notify_events).values(
                    kind="job.failed",
                    key="job.failed:1",
                    at=utcnow(),
                    job_id=job.id,
                    task="pipe",
                    subject="pipe",
                    message=lost.stored(),
                    routed=False,
                )
            )
            row = conn.execute(sa.select(t.notify_events)).one()
        told = event_of(row)
        assert told.message == "the worker process exited with code 3" and "exited with code 3" in told.headline() + (
            compose([told], "http://x", "k", "rule", {}, lambda _id: {}).text
        )
    finally:
        store.close()
