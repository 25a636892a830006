"""The JobStore contract (mieruka.store.base.JobStore), run against every implementation.

Every test takes the `database_url` fixture, so each runs on SQLite and on PostgreSQL. A new store
implementation only has to be added to the `store` fixture below to be held to the same contract.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict, Unpack
from zoneinfo import ZoneInfo

import pytest

from mieruka.auth.audit import AuditLog, AuditQuery
from mieruka.core.clock import utcnow
from mieruka.core.job import ArtifactInfo, JobRecord
from mieruka.core.status import JobStatus
from mieruka.core.steps import StepRecord, StepStatus
from mieruka.store.base import (
    ArtifactAdded,
    Claim,
    Deleted,
    ForeignUploads,
    JobQuery,
    JobStore,
    LogAppend,
    NewJob,
    ProgressUpdate,
    StepSaved,
    StepsClosed,
    StepsPlanned,
    Transition,
    WouldWait,
)
from mieruka.store.database import Database
from mieruka.store.sql import SqlJobStore

QUEUED, RUNNING = JobStatus.QUEUED, JobStatus.RUNNING
SUCCEEDED, FAILED, CANCELLED = JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED
TOKYO = ZoneInfo("Asia/Tokyo")


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    s = SqlJobStore(database_url)
    s.migrate()
    try:
        yield s
    finally:
        s.close()


# -- helpers -----------------------------------------------------------------------------------
class JobOptions(TypedDict, total=False):
    """NewJob's optional fields, as `new` passes them on."""

    max_attempts: int
    priority: int
    queue: str
    owner: str | None
    idempotency_key: str | None
    run_after: datetime | None
    schedule: str | None
    uploads: tuple[str, ...]


def new(store: JobStore, task: str = "t", params: dict[str, Any] | None = None, **kw: Unpack[JobOptions]) -> JobRecord:
    record, created = store.create_job(NewJob(task=task, params=params if params is not None else {}, **kw))
    assert created
    return record


def claim(
    store: JobStore, *ids: int, engine: str = "engine-1", worker: str = "w1", now: datetime | None = None
) -> list[JobRecord]:
    the_claim = Claim(job_ids=list(ids), worker=worker, engine_id=engine, now=now or utcnow())
    return store.apply([], the_claim).claimed


def finish(store: JobStore, job_id: int, status: JobStatus = SUCCEEDED, at: datetime | None = None) -> None:
    """Run a queued job to a finished state, with `finished_at` = `at`."""
    assert [j.id for j in claim(store, job_id)] == [job_id]
    done = store.apply([Transition(job_id, status, frozenset({RUNNING}), {"finished_at": at or utcnow()})]).done
    assert done == [True]


def assert_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None, f"{value!r} is naive"
    assert value.utcoffset() == timedelta(0), f"{value!r} is not in UTC"


def stored_job(store: JobStore, job_id: int) -> JobRecord:
    """The job as the store has it, which must be there."""
    record = store.get_job(job_id)
    assert record is not None, f"job {job_id} is not in the store"
    return record


def ids(records: list[JobRecord]) -> list[int]:
    return [r.id for r in records]


def line(text: str, stream: str = "stdout") -> tuple[datetime, str, str]:
    return (utcnow(), stream, text)


# -- create / get ------------------------------------------------------------------------------
def test_create_job_returns_a_queued_record(store: JobStore) -> None:
    before = utcnow()
    job, created = store.create_job(
        NewJob(task="align", params={"n": 3, "name": "x"}, max_attempts=3, priority=5, queue="gpu", owner="alice")
    )
    after = utcnow()
    assert created is True
    assert job.id > 0
    assert job.task == "align"
    assert job.status is QUEUED
    assert job.params == {"n": 3, "name": "x"}
    assert (job.max_attempts, job.priority, job.queue, job.owner) == (3, 5, "gpu", "alice")
    assert job.attempts == 0
    assert job.started_at is None and job.finished_at is None and job.run_after is None
    assert job.log_lines == 0 and job.cancel_requested is False
    assert_utc(job.created_at)
    assert before - timedelta(seconds=1) <= job.created_at <= after + timedelta(seconds=1)
    assert store.get_job(job.id) == job


def test_ids_increase(store: JobStore) -> None:
    a, b, c = new(store), new(store), new(store)
    assert a.id < b.id < c.id


def test_a_job_started_now_and_stored_later(store: JobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a store can (PostgreSQL), a job's id is known before its row is stored; the row is
    exactly the record, ids keep increasing within a process, ids held too long are not used."""
    if store.start_create_job(NewJob(task="t", params={}, idempotency_key="k")) is not None:
        pytest.fail("a job with an idempotency key is never started ahead: its key may name another")
    start = utcnow()
    pending = store.start_create_job(
        NewJob(
            task="align",
            params={"n": 3, "text": "ü'\\"},
            max_attempts=2,
            priority=-1,
            queue="gpu",
            owner="alice",
            run_after=start,
            schedule="nightly",
        )
    )
    if pending is None:  # SQLite: create_job only (its inserts do not wait on a network)
        assert isinstance(store, SqlJobStore) and store.is_sqlite
        return
    pending.finish()
    stored = store.get_job(pending.record.id)
    assert stored == pending.record and stored.run_after == start and stored.status is QUEUED
    ids = [pending.record.id]
    for _ in range(20):  # beyond the ids held at once: each write takes more
        more = store.start_create_job(NewJob(task="t", params={}))
        assert more is not None
        more.finish()
        ids.append(more.record.id)
    ids.append(new(store).id)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    from mieruka.store import job_ids

    later = time.monotonic() + job_ids.FRESH_FOR + 1
    monkeypatch.setattr("mieruka.store.job_ids.time.monotonic", lambda: later)
    held_too_long = store.start_create_job(NewJob(task="t", params={}))
    assert held_too_long is not None
    held_too_long.finish()
    assert held_too_long.record.id > ids[-1]  # a new one: those held were reserved before ids[-1]
    assert store.get_job(held_too_long.record.id) == held_too_long.record


def test_jobs_started_now_and_then_get_ids_that_follow_each_other(
    store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:

    clock = [time.monotonic()]
    monkeypatch.setattr("mieruka.store.job_ids.time.monotonic", lambda: clock[0])
    ids = []
    for _ in range(3):
        pending = store.start_create_job(NewJob(task="t", params={}))
        if pending is None:
            return
        pending.finish()
        ids.append(pending.record.id)
        clock[0] += 2  # a quiet process holds no ids ahead: none are wasted
    assert ids == [ids[0], ids[0] + 1, ids[0] + 2]


def test_a_job_started_and_refused_raises_at_finish(store: JobStore) -> None:
    pending = store.start_create_job(NewJob(task="x" * 300, params={}))  # longer than the column holds
    if pending is None:
        return
    with pytest.raises(Exception, match="too long"):
        pending.finish()
    assert store.get_job(pending.record.id) is None
    assert new(store).id > 0  # the connection is fine for the next


def test_idempotency_key_returns_the_existing_job(store: JobStore) -> None:
    first, created = store.create_job(NewJob(task="t", params={"a": 1}, idempotency_key="k-1"))
    again, created_again = store.create_job(NewJob(task="t", params={"a": 2}, idempotency_key="k-1"))
    other, created_other = store.create_job(NewJob(task="t", params={"a": 3}, idempotency_key="k-2"))
    assert created is True and created_again is False and created_other is True
    assert again.id == first.id
    assert again.params == {"a": 1}
    assert other.id != first.id
    assert len(store.list_jobs(JobQuery())) == 2


def test_jobs_without_idempotency_key_are_all_created(store: JobStore) -> None:
    a, b = new(store), new(store)
    assert a.id != b.id
    assert a.idempotency_key is None and b.idempotency_key is None


def test_idempotency_keys_are_per_owner_and_task(store: JobStore) -> None:
    """Another user, or another task, with the same key gets a job of its own; jobs without an
    owner (the open mode) are all one owner's."""
    scopes = [("alice", "t"), ("bob", "t"), (None, "t"), ("alice", "u"), (None, "u")]
    first = {
        scope: store.create_job(NewJob(task=scope[1], params={}, owner=scope[0], idempotency_key="k"))
        for scope in scopes
    }
    assert all(created for _, created in first.values())
    assert len({job.id for job, _ in first.values()}) == len(scopes)
    for (owner, task), (job, _) in first.items():
        again, created = store.create_job(NewJob(task=task, params={"x": 1}, owner=owner, idempotency_key="k"))
        assert (again.id, again.owner, again.task, created) == (job.id, owner, task, False)


@pytest.mark.parametrize("owners", [["alice"], [None], ["alice", "bob", None]])
def test_one_key_submitted_at_once_makes_one_job_per_owner(database_url: str, owners: list[str | None]) -> None:
    """Twenty submissions at the same moment, from two processes' stores: one job per owner and task."""
    stores = [SqlJobStore(database_url) for _ in range(2)]
    stores[0].migrate()
    submitters = [(owner, task) for owner in owners for task in ("t", "u")]
    per_submitter = max(20 // len(submitters), 4)
    start = threading.Barrier(per_submitter * len(submitters))

    def submit(n: int) -> tuple[str | None, str, int, bool]:
        owner, task = submitters[n % len(submitters)]
        start.wait(timeout=60)
        job, created = stores[n % 2].create_job(
            NewJob(task=task, params={"n": n}, owner=owner, idempotency_key="same key")
        )
        return owner, task, job.id, created

    try:
        with ThreadPoolExecutor(per_submitter * len(submitters)) as pool:
            results = list(pool.map(submit, range(per_submitter * len(submitters))))
        for submitter in submitters:
            mine = [(job_id, created) for owner, task, job_id, created in results if (owner, task) == submitter]
            assert len(mine) == per_submitter
            assert len({job_id for job_id, _ in mine}) == 1, f"{submitter} got several jobs"
            assert sum(created for _, created in mine) == 1
        assert len({job_id for _, _, job_id, _ in results}) == len(submitters)
        assert len(stores[0].list_jobs(JobQuery(limit=1000))) == len(submitters)
    finally:
        for one in stores:
            one.close()


def test_get_job_unknown_is_none(store: JobStore) -> None:
    assert store.get_job(12345) is None
    job = new(store)
    assert store.get_job(job.id + 1) is None
    assert store.get_job(job.id) is not None


def test_rows_along_a_new_job_are_stored_with_it_or_not_at_all(store: JobStore, database_url: str) -> None:
    """`along` writes in the job's own transaction: its rows are there with the job; when it fails
    the job is not stored either; a job that was there already (a repeated key) takes none."""
    log = AuditLog(Database(database_url))
    told: list[JobRecord] = []

    def entry(cur: Any, job: JobRecord) -> None:
        told.append(job)
        log.write_on(cur, [("alice", "submit", f"job:{job.id}", "10.0.0.1", utcnow(), {"n": job.params["n"]})])

    try:
        job, created = store.create_job(NewJob(task="t", params={"n": 1}, owner="alice", idempotency_key="k"), entry)
        assert created and told == [job] and stored_job(store, job.id) == job
        assert [(e.target, e.detail) for e in log.query(AuditQuery(actor="alice"))] == [(f"job:{job.id}", {"n": 1})]
        again, created = store.create_job(NewJob(task="t", params={"n": 1}, owner="alice", idempotency_key="k"), entry)
        assert not created and again.id == job.id and told == [job]

        def broken(cur: Any, job: JobRecord) -> None:
            entry(cur, job)
            raise RuntimeError("the entry cannot be written")

        with pytest.raises(RuntimeError):
            store.create_job(NewJob(task="t", params={"n": 2}, owner="alice"), broken)
        assert [j.params for j in store.list_jobs(JobQuery(limit=10))] == [{"n": 1}]
        assert len(log.query(AuditQuery(actor="alice"))) == 1
    finally:
        log.db.close()


def test_get_job_now_answers_as_get_job_or_would_wait(store: JobStore, database_url: str) -> None:
    """The event loop's read: the same job as get_job, from a database file here even while another
    connection holds its write lock; a database server is a round trip away, so WouldWait there."""
    job = new(store, params={"n": 1})
    report = ArtifactInfo(name="report.txt", size=3, content_type="text/plain", created_at=utcnow())
    assert store.apply([ArtifactAdded(job.id, report)]).done == [True]
    if not database_url.startswith("sqlite"):
        with pytest.raises(WouldWait):
            store.get_job_now(job.id)
        return
    assert store.get_job_now(job.id) == store.get_job(job.id) == stored_job(store, job.id)
    assert store.get_job_now(job.id + 1) is None
    writer = sqlite3.connect(database_url.split("///", 1)[1], isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE jobs SET priority = 9 WHERE id = ?", (job.id,))
        now = store.get_job_now(job.id)  # the committed job, not a wait for the writer
        assert now is not None and now.priority == job.priority
        writer.execute("COMMIT")
        now = store.get_job_now(job.id)
        assert now is not None and now.priority == 9
    finally:
        writer.close()


# -- list_jobs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("number", [2**31 - 1, 2**31, 2**63 - 1, 10**30])
def test_numbers_past_the_integer_columns_name_nothing(store: JobStore, number: int) -> None:
    """PostgreSQL's INTEGER is 32 bits: a bigger id, cursor or log position is "none", never an error."""
    job = new(store)
    assert store.get_job(number) is None
    assert store.read_logs(number) == [] and store.read_logs(job.id, after=number) == []
    assert [r.id for r in store.list_jobs(JobQuery(before_id=number))] == [job.id]
    assert store.delete_job(number) == Deleted() and store.list_steps(number) == []


def test_list_jobs_newest_first_with_limit_and_cursor(store: JobStore) -> None:
    jobs = [new(store, params={"i": i}) for i in range(5)]
    newest_first = list(reversed(ids(jobs)))
    assert ids(store.list_jobs(JobQuery())) == newest_first
    assert ids(store.list_jobs(JobQuery(limit=2))) == newest_first[:2]
    page2 = store.list_jobs(JobQuery(limit=2, before_id=newest_first[1]))
    assert ids(page2) == newest_first[2:4]
    assert ids(store.list_jobs(JobQuery(before_id=jobs[0].id))) == []


def test_list_jobs_filters_task_status_owner(store: JobStore) -> None:
    a = new(store, task="a", owner="alice")
    b = new(store, task="b", owner="bob")
    c = new(store, task="a", owner="bob")
    claim(store, c.id)
    d = new(store, task="a")
    finish(store, d.id, FAILED)
    assert ids(store.list_jobs(JobQuery(task="a"))) == [d.id, c.id, a.id]
    assert ids(store.list_jobs(JobQuery(task="nope"))) == []
    assert ids(store.list_jobs(JobQuery(status=[QUEUED]))) == [b.id, a.id]
    assert ids(store.list_jobs(JobQuery(status=[RUNNING, FAILED]))) == [d.id, c.id]
    assert ids(store.list_jobs(JobQuery(owner="bob"))) == [c.id, b.id]
    assert ids(store.list_jobs(JobQuery(task="a", owner="bob", status=[RUNNING]))) == [c.id]
    assert ids(store.list_jobs(JobQuery(task="a", owner="bob", status=[QUEUED]))) == []


def test_list_jobs_created_after_and_before(store: JobStore) -> None:
    a = new(store)
    b = new(store)
    c = new(store)
    assert a.created_at <= b.created_at <= c.created_at
    if not a.created_at < b.created_at < c.created_at:  # pragma: no cover - clock too coarse
        pytest.skip("created_at values are not distinct on this clock")
    assert ids(store.list_jobs(JobQuery(created_after=b.created_at))) == [c.id, b.id]  # inclusive
    assert ids(store.list_jobs(JobQuery(created_before=b.created_at))) == [a.id]  # exclusive
    between = JobQuery(created_after=a.created_at, created_before=c.created_at)
    assert ids(store.list_jobs(between)) == [b.id, a.id]
    # The same instant expressed in another zone selects the same jobs.
    assert ids(store.list_jobs(JobQuery(created_after=b.created_at.astimezone(TOKYO)))) == [c.id, b.id]
    assert ids(store.list_jobs(JobQuery(created_after=utcnow() + timedelta(hours=1)))) == []


def test_list_jobs_search_in_params(store: JobStore) -> None:
    a = new(store, params={"sample": "Liver-01", "n": 12})
    b = new(store, params={"sample": "kidney-02"})
    assert ids(store.list_jobs(JobQuery(search="liver"))) == [a.id]  # case-insensitive
    assert ids(store.list_jobs(JobQuery(search="KIDNEY"))) == [b.id]
    assert ids(store.list_jobs(JobQuery(search="-0"))) == [b.id, a.id]
    assert ids(store.list_jobs(JobQuery(search="spleen"))) == []


def test_list_jobs_search_treats_like_wildcards_literally(store: JobStore) -> None:
    pct = new(store, params={"note": "50% done"})
    under = new(store, params={"note": "a_b"})
    plain = new(store, params={"note": "50 done, axb"})
    assert ids(store.list_jobs(JobQuery(search="50%"))) == [pct.id]
    assert ids(store.list_jobs(JobQuery(search="%"))) == [pct.id]
    assert ids(store.list_jobs(JobQuery(search="a_b"))) == [under.id]
    assert ids(store.list_jobs(JobQuery(search="_"))) == [under.id]
    assert ids(store.list_jobs(JobQuery(search="axb"))) == [plain.id]


def test_list_jobs_search_non_ascii_text(store: JobStore) -> None:
    """Searching for the text a user typed into a parameter finds the job, whatever the script and
    whichever way the job was stored (submitted, or queued by its schedule)."""
    tokyo = new(store, params={"city": "東京"})
    new(store, params={"city": "Osaka"})
    due = store.schedule_due("nightly", utcnow())
    nightly = store.fire_schedule(
        "nightly", due, due + timedelta(days=1), NewJob(task="t", params={"city": "東京"}, schedule="nightly")
    )
    assert nightly is not None
    assert ids(store.list_jobs(JobQuery(search="東京"))) == [nightly.id, tokyo.id]


def test_every_jobs_column_is_a_record_field_of_the_same_name() -> None:
    """The store maps a job row to JobRecord by column name (store/codec.py): a column added to
    tables.jobs needs a JobRecord field of that name, its migration, and nothing else in the store."""
    from dataclasses import fields

    from mieruka.store.codec import JOB_COLUMNS

    assert set(JOB_COLUMNS) <= {f.name for f in fields(JobRecord)}


def test_list_jobs_search_quotes_and_backslashes(store: JobStore) -> None:
    quoted = new(store, params={"q": 'say "hi"'})
    path = new(store, params={"path": "C:\\data"})
    assert ids(store.list_jobs(JobQuery(search='say "hi"'))) == [quoted.id]
    assert ids(store.list_jobs(JobQuery(search="C:\\data"))) == [path.id]


def test_list_jobs_search_escapes_each_character_like_and_json_give_a_meaning(store: JobStore) -> None:
    """A backslash, a quote, a LIKE wildcard after a backslash: each found as typed, nowhere else;
    the quotes of the JSON text itself are not a parameter's."""
    slash = new(store, params={"p": "a\\b"})
    quote = new(store, params={"q": 'x"y'})
    slash_pct = new(store, params={"r": "5\\%"})
    slash_under = new(store, params={"s": "\\_x"})
    new(store, params={"t": "5% _x ab"})
    assert ids(store.list_jobs(JobQuery(search="\\"))) == [slash_under.id, slash_pct.id, slash.id]
    assert ids(store.list_jobs(JobQuery(search="a\\b"))) == [slash.id]
    assert ids(store.list_jobs(JobQuery(search='"'))) == [quote.id]
    assert ids(store.list_jobs(JobQuery(search='x"y'))) == [quote.id]
    assert ids(store.list_jobs(JobQuery(search="\\%"))) == [slash_pct.id]
    assert ids(store.list_jobs(JobQuery(search="\\_"))) == [slash_under.id]
    assert ids(store.list_jobs(JobQuery(search="%_"))) == []


def test_list_jobs_search_folds_case_around_non_ascii_text(store: JobStore) -> None:
    """Latin letters match in either case, beside text of other scripts that has no case or is
    typed in its own case; text in another script is found as typed."""
    street = new(store, params={"where": "Straße-ABC"})
    school = new(store, params={"where": "ÉCOLE Nord"})
    kana = new(store, params={"where": "とうきょう Tokyo"})
    assert ids(store.list_jobs(JobQuery(search="straße-abc"))) == [street.id]
    assert ids(store.list_jobs(JobQuery(search="STRAßE"))) == [street.id]
    assert ids(store.list_jobs(JobQuery(search="ÉCOLE nORD"))) == [school.id]
    assert ids(store.list_jobs(JobQuery(search="うきょう tok"))) == [kana.id]
    assert ids(store.list_jobs(JobQuery(search="きょうと"))) == []


def test_list_jobs_search_reads_the_parameters_as_they_were_stored(store: JobStore) -> None:
    """The search reads the JSON text as written (keys in the job's order, the whole of a long
    value), not a copy of it reordered or cut short."""
    long = new(store, params={"text": "x" * 5000 + "THE END"})
    ordered = new(store, params={"zz": 1, "a": 2})
    assert ids(store.list_jobs(JobQuery(search="xthe END"))) == [long.id]
    assert ids(store.list_jobs(JobQuery(search="1, "))) == [ordered.id]
    assert ids(store.list_jobs(JobQuery(search="zz"))) == [ordered.id]  # keys are text too


def test_list_jobs_hidden_tasks_are_left_out(store: JobStore) -> None:
    a, b, c = new(store, task="a"), new(store, task="b"), new(store, task="c")
    assert ids(store.list_jobs(JobQuery(hidden_tasks=frozenset({"b"})))) == [c.id, a.id]
    assert ids(store.list_jobs(JobQuery(hidden_tasks=frozenset({"a", "c", "nope"})))) == [b.id]
    assert ids(store.list_jobs(JobQuery(task="b", hidden_tasks=frozenset({"b"})))) == []


def test_list_jobs_filters_combine_with_order_limit_and_cursor(store: JobStore) -> None:
    """Every filter at once selects the jobs that pass each one, newest first, `limit` at most,
    from the cursor on; a cursor past the integer ids is no cursor at all."""
    t0 = utcnow()
    wanted = []
    for n in range(6):
        wanted.append(new(store, task="a", owner="alice", params={"sample": f"Liver-{n}"}))
        new(store, task="a", owner="bob", params={"sample": f"Liver-{n}"})  # another owner
        new(store, task="b", owner="alice", params={"sample": f"Liver-{n}"})  # another task
        new(store, task="a", owner="alice", params={"sample": f"kidney-{n}"})  # another sample
    finish(store, wanted[0].id, FAILED)  # another state
    claim(store, wanted[1].id)
    everything = JobQuery(
        task="a",
        status=[QUEUED, RUNNING],
        owner="alice",
        created_after=t0 - timedelta(seconds=1),
        created_before=utcnow() + timedelta(seconds=1),
        search="LIVER",
        hidden_tasks=frozenset({"b", "c"}),
        limit=3,
    )
    newest = list(reversed(ids(wanted[1:])))
    assert ids(store.list_jobs(everything)) == newest[:3]
    assert ids(store.list_jobs(replace(everything, before_id=newest[2]))) == newest[3:]
    for past in (2**31, 2**63, 10**30):
        assert ids(store.list_jobs(replace(everything, before_id=past, limit=10))) == newest
    assert ids(store.list_jobs(replace(everything, before_id=2**31 - 1, limit=10))) == newest
    assert ids(store.list_jobs(replace(everything, before_id=newest[-1]))) == []
    assert ids(store.list_jobs(replace(everything, hidden_tasks=frozenset({"a"})))) == []
    assert ids(store.list_jobs(replace(everything, created_after=utcnow() + timedelta(hours=1)))) == []
    assert ids(store.list_jobs(replace(everything, created_before=t0 - timedelta(seconds=1)))) == []
    assert ids(store.list_jobs(replace(everything, status=[FAILED]))) == [wanted[0].id]
    assert len(store.list_jobs(JobQuery(limit=5))) == 5
    assert len(store.list_jobs(JobQuery(limit=1000))) == 24


# -- apply: claim ------------------------------------------------------------------------------
def test_claim_moves_queued_jobs_to_running_once(store: JobStore) -> None:
    a, b = new(store), new(store)
    now = utcnow()
    won = claim(store, a.id, b.id, engine="eng-A", worker="w7", now=now)
    assert sorted(ids(won)) == [a.id, b.id]
    for job in won:
        assert job.status is RUNNING
        assert job.attempts == 1
        assert job.engine_id == "eng-A" and job.worker == "w7"
        assert_utc(job.started_at)
        assert job.started_at == now
    stored = store.get_job(a.id)
    assert stored is not None and stored.status is RUNNING and stored.attempts == 1
    assert claim(store, a.id, engine="eng-B") == []
    stored = store.get_job(a.id)
    assert stored is not None and stored.engine_id == "eng-A" and stored.attempts == 1


def test_claim_skips_jobs_that_are_not_queued(store: JobStore) -> None:
    running, done, queued = new(store), new(store), new(store)
    claim(store, running.id)
    finish(store, done.id)
    assert ids(claim(store, running.id, done.id, queued.id, 999_999)) == [queued.id]
    assert stored_job(store, done.id).status is SUCCEEDED


def test_claim_after_requeue_increments_attempts(store: JobStore) -> None:
    job = new(store, max_attempts=3)
    claim(store, job.id)
    assert store.apply([Transition(job.id, QUEUED, frozenset({RUNNING}), {"error": "boom"})]).done == [True]
    again = claim(store, job.id, engine="e2")
    assert len(again) == 1 and again[0].attempts == 2 and again[0].engine_id == "e2"


def test_claim_skips_jobs_not_yet_due(store: JobStore) -> None:
    now = utcnow()
    later = new(store, run_after=now + timedelta(seconds=30))
    due = new(store, run_after=now - timedelta(seconds=1))
    assert ids(claim(store, later.id, due.id, now=now)) == [due.id]
    assert ids(claim(store, later.id, now=now + timedelta(seconds=31))) == [later.id]


def test_claim_with_a_task_limit_never_exceeds_it(store: JobStore) -> None:
    running = new(store, task="t")
    claim(store, running.id)
    waiting = [new(store, task="t") for _ in range(3)]
    other = new(store, task="u")
    limit = Claim(job_ids=[j.id for j in waiting], worker="w", engine_id="e", now=utcnow(), task_limit=("t", 2))
    assert ids(store.apply([], limit).claimed) == [waiting[0].id]  # one runs already: room for one more
    assert store.apply([], limit).claimed == []
    assert ids(store.apply([], Claim([other.id], "w", "e", utcnow(), ("u", 1))).claimed) == [other.id]


def test_claims_with_a_task_limit_from_many_threads_never_exceed_it(store: JobStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = [new(store, task="limited") for _ in range(12)]

    def take(job: JobRecord) -> int:
        return len(store.apply([], Claim([job.id], "w", "e", utcnow(), ("limited", 3))).claimed)

    with ThreadPoolExecutor(6) as pool:
        assert sum(pool.map(take, jobs)) == 3


def test_empty_apply_does_nothing(store: JobStore) -> None:
    applied = store.apply([])
    assert applied.done == [] and applied.claimed == []
    applied = store.apply([], Claim(job_ids=[], worker="w", engine_id="e", now=utcnow()))
    assert applied.done == [] and applied.claimed == []


# -- apply: transitions ------------------------------------------------------------------------
def test_transition_only_from_expected_states(store: JobStore) -> None:
    job = new(store)
    to_done = Transition(job.id, SUCCEEDED, frozenset({RUNNING}), {"result": {"ok": [1, 2]}})
    assert store.apply([to_done]).done == [False]  # still queued
    assert stored_job(store, job.id).status is QUEUED
    claim(store, job.id)
    finished_at = utcnow()
    to_done = Transition(
        job.id, SUCCEEDED, frozenset({RUNNING}), {"result": {"ok": [1, 2]}, "finished_at": finished_at, "progress": 1.0}
    )
    assert store.apply([to_done]).done == [True]
    stored = store.get_job(job.id)
    assert stored is not None
    assert stored.status is SUCCEEDED
    assert stored.result == {"ok": [1, 2]}
    assert stored.finished_at == finished_at
    assert_utc(stored.finished_at)
    assert stored.progress == 1.0
    assert store.apply([to_done]).done == [False]  # succeeded is not running


@pytest.mark.parametrize(
    "result",
    ["plain text", "42", "[1, 2]", '{"a": 1}', "null", 7, 2.5, True, [1, "a", None], {"nested": {"x": [1.5]}}, None],
)
def test_results_round_trip_exactly(store: JobStore, result: object) -> None:
    """A string result that looks like JSON stays a string: it is decoded once, not twice."""
    job = new(store, params={"s": "123", "t": "[1]"})
    claim(store, job.id)
    done = Transition(job.id, SUCCEEDED, frozenset({RUNNING}), {"result": result})
    assert store.apply([done]).done == [True]
    for record in (store.get_job(job.id), store.list_jobs(JobQuery())[0]):
        assert record is not None
        assert record.result == result and type(record.result) is type(result)
        assert record.params == {"s": "123", "t": "[1]"}


def test_transition_attempt_guard(store: JobStore) -> None:
    job = new(store)
    claim(store, job.id)  # attempt 1
    stale = Transition(job.id, FAILED, frozenset({RUNNING}), {"error": "late"}, attempt=2)
    assert store.apply([stale]).done == [False]
    assert stored_job(store, job.id).status is RUNNING
    current = Transition(job.id, FAILED, frozenset({RUNNING}), {"error": "boom", "traceback": "tb"}, attempt=1)
    assert store.apply([current]).done == [True]
    stored = store.get_job(job.id)
    assert stored is not None and stored.status is FAILED
    assert stored.error == "boom" and stored.traceback == "tb"


@pytest.mark.parametrize("result", [{"nested": {"x": [1.5]}}, "text", None])
def test_transition_read_back_returns_the_job_as_stored_after_it(store: JobStore, result: object) -> None:
    job = new(store, params={"x": 1, "name": "日本"}, owner="ann", priority=3)
    claim(store, job.id)
    t1 = utcnow()
    early = ArtifactInfo(name="b.txt", size=1, content_type="text/plain", created_at=t1)
    late = ArtifactInfo(name="a.csv", size=22, content_type="text/csv", created_at=t1 + timedelta(seconds=1))
    log = LogAppend(job.id, 1, [(t1, "stdout", "hello")])
    done = Transition(
        job.id, SUCCEEDED, frozenset({RUNNING}), {"finished_at": utcnow(), "result": result}, attempt=1, read_back=True
    )
    applied = store.apply([ArtifactAdded(job.id, late), ArtifactAdded(job.id, early), log, done])
    assert applied.done == [True, True, True, True]
    stored = store.get_job(job.id)
    assert stored is not None and applied.after == {3: stored}
    assert stored.artifacts == [early, late] and stored.log_lines == 1
    assert_utc(applied.after[3].finished_at)
    # one statement alone (no transaction around it), a job without artifacts, a transition refused
    other = new(store)
    claim(store, other.id)
    alone = store.apply([Transition(other.id, FAILED, frozenset({RUNNING}), {"error": "x"}, read_back=True)])
    assert alone.done == [True] and alone.after == {0: store.get_job(other.id)}
    assert alone.after[0].artifacts == []
    refused = store.apply([Transition(other.id, CANCELLED, frozenset({RUNNING}), read_back=True)])
    assert refused.done == [False] and refused.after == {}


def test_transition_of_unknown_job_is_not_done(store: JobStore) -> None:
    assert store.apply([Transition(424242, CANCELLED, frozenset({QUEUED}))]).done == [False]


def test_cancel_request_flag(store: JobStore) -> None:
    job = new(store)
    claim(store, job.id)
    assert store.apply([Transition(job.id, RUNNING, frozenset({RUNNING}), {"cancel_requested": True})]).done == [True]
    assert stored_job(store, job.id).cancel_requested is True


def test_the_running_jobs_whose_cancel_was_asked_for(store: JobStore) -> None:
    asked, running, queued = new(store), new(store), new(store)
    claim(store, asked.id)
    claim(store, running.id)
    assert store.cancels_requested() == []
    flag = {"cancel_requested": True}
    store.apply([Transition(j.id, s, frozenset({s}), flag) for j, s in ((asked, RUNNING), (queued, QUEUED))])
    assert store.cancels_requested() == [asked.id]  # a queued job's flag is not a running job's
    store.apply([Transition(asked.id, CANCELLED, frozenset({RUNNING}))])
    assert store.cancels_requested() == []


def test_apply_reports_each_change_and_claims_after_changes(store: JobStore) -> None:
    a, b = new(store), new(store)
    applied = store.apply(
        [Transition(a.id, CANCELLED, frozenset({QUEUED})), Transition(b.id, CANCELLED, frozenset({RUNNING}))],
        Claim(job_ids=[a.id, b.id], worker="w", engine_id="e", now=utcnow()),
    )
    assert applied.done == [True, False]
    assert ids(applied.claimed) == [b.id]  # a was cancelled by the changes before the claim


def test_apply_is_one_transaction(store: JobStore) -> None:
    a = new(store)
    good = Transition(a.id, CANCELLED, frozenset({QUEUED}))
    bad = Transition(a.id, CANCELLED, frozenset({QUEUED}), {"no_such_column": 1})
    with pytest.raises(ValueError):
        store.apply([good, bad])
    assert stored_job(store, a.id).status is QUEUED
    # and the store still works afterwards
    assert store.apply([good]).done == [True]


# -- apply: progress, logs, artifacts ----------------------------------------------------------
def test_progress_only_while_running(store: JobStore) -> None:
    job = new(store)
    assert store.apply([ProgressUpdate(job.id, 0.5, "half")]).done == [False]
    stored = store.get_job(job.id)
    assert stored is not None and stored.progress is None and stored.message is None
    claim(store, job.id)
    assert store.apply([ProgressUpdate(job.id, 0.25, "indexing")]).done == [True]
    stored = store.get_job(job.id)
    assert stored is not None and (stored.progress, stored.message) == (0.25, "indexing")
    # None leaves the other value as it was
    assert store.apply([ProgressUpdate(job.id, 0.5, None)]).done == [True]
    assert store.apply([ProgressUpdate(job.id, None, "aligning")]).done == [True]
    stored = store.get_job(job.id)
    assert stored is not None and (stored.progress, stored.message) == (0.5, "aligning")
    assert store.apply([Transition(job.id, SUCCEEDED, frozenset({RUNNING}))]).done == [True]
    assert store.apply([ProgressUpdate(job.id, 0.9, "late")]).done == [False]
    stored = store.get_job(job.id)
    assert stored is not None and (stored.progress, stored.message) == (0.5, "aligning")


def test_log_append_and_read_ranges(store: JobStore) -> None:
    job = new(store)
    other = new(store)
    t0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    lines = [(t0 + timedelta(seconds=i), "stdout" if i % 2 == 0 else "stderr", f"line {i + 1}") for i in range(3)]
    applied = store.apply([LogAppend(job.id, 1, lines), LogAppend(other.id, 1, [line("other")])])
    assert applied.done == [True, True]
    assert stored_job(store, job.id).log_lines == 3
    logs = store.read_logs(job.id)
    assert [(entry.seq, entry.stream, entry.text) for entry in logs] == [
        (1, "stdout", "line 1"),
        (2, "stderr", "line 2"),
        (3, "stdout", "line 3"),
    ]
    assert [entry.at for entry in logs] == [at for at, _, _ in lines]
    for entry in logs:
        assert_utc(entry.at)
    assert [entry.seq for entry in store.read_logs(job.id, after=1)] == [2, 3]
    assert [entry.seq for entry in store.read_logs(job.id, after=1, limit=1)] == [2]
    assert store.read_logs(job.id, after=3) == []
    assert store.apply([LogAppend(job.id, 4, [line("four"), line("five")])]).done == [True]
    assert stored_job(store, job.id).log_lines == 5
    assert [entry.text for entry in store.read_logs(job.id, after=3)] == ["four", "five"]
    assert [entry.text for entry in store.read_logs(other.id)] == ["other"]


def test_log_append_edge_cases(store: JobStore) -> None:
    job = new(store)
    assert store.apply([LogAppend(job.id, 1, [])]).done == [False]
    assert store.apply([LogAppend(987654, 1, [line("x")])]).done == [False]
    assert store.read_logs(987654) == []
    assert store.read_logs(job.id) == []


def test_artifacts_are_listed_and_replaced_by_name(store: JobStore) -> None:
    job = new(store)
    t1 = utcnow()
    report = ArtifactInfo(name="report.html", size=10, content_type="text/html", created_at=t1)
    assert store.apply([ArtifactAdded(job.id, report)]).done == [True]
    stored = store.get_job(job.id)
    assert stored is not None and stored.artifacts == [report]
    assert_utc(stored.artifacts[0].created_at)
    t2 = t1 + timedelta(seconds=1)
    bigger = ArtifactInfo(name="report.html", size=2000, content_type="text/html; charset=utf-8", created_at=t2)
    data = ArtifactInfo(name="data.csv", size=5, content_type="text/csv", created_at=t2)
    assert store.apply([ArtifactAdded(job.id, bigger), ArtifactAdded(job.id, data)]).done == [True, True]
    stored = store.get_job(job.id)
    assert stored is not None
    assert sorted(stored.artifacts, key=lambda a: a.name) == [data, bigger]
    assert new(store).artifacts == []


# -- due jobs ----------------------------------------------------------------------------------
def test_due_jobs_priority_then_oldest(store: JobStore) -> None:
    low1 = new(store, priority=0)
    high1 = new(store, priority=10)
    low2 = new(store, priority=0)
    high2 = new(store, priority=10)
    mid = new(store, priority=5)
    neg = new(store, priority=-1)
    due = store.due_jobs(utcnow(), limit=10)
    assert [j.id for j in due] == [high1.id, high2.id, mid.id, low1.id, low2.id, neg.id]
    assert [(j.priority, j.task) for j in due[:1]] == [(10, "t")]
    assert [j.id for j in store.due_jobs(utcnow(), limit=2)] == [high1.id, high2.id]


def test_due_jobs_excludes_future_and_non_queued(store: JobStore) -> None:
    now = utcnow()
    ready = new(store)
    past = new(store, run_after=now - timedelta(minutes=1))
    future = new(store, run_after=now + timedelta(minutes=5))
    running = new(store)
    claim(store, running.id)
    done = new(store)
    finish(store, done.id)
    assert [j.id for j in store.due_jobs(now, limit=10)] == [ready.id, past.id]
    later = now + timedelta(minutes=6)
    assert [j.id for j in store.due_jobs(later, limit=10)] == [ready.id, past.id, future.id]
    # run_after given in another zone is the same instant
    tokyo = new(store, run_after=(now + timedelta(minutes=5)).astimezone(TOKYO))
    assert tokyo.id not in [j.id for j in store.due_jobs(now, limit=10)]


def test_due_jobs_by_queue(store: JobStore) -> None:
    a = new(store, queue="default")
    b = new(store, queue="gpu")
    c = new(store, queue="io")
    now = utcnow()
    assert [j.id for j in store.due_jobs(now, 10, queues=["gpu"])] == [b.id]
    assert [j.id for j in store.due_jobs(now, 10, queues=["gpu", "default"])] == [a.id, b.id]
    assert [j.id for j in store.due_jobs(now, 10)] == [a.id, b.id, c.id]


def test_next_due_time(store: JobStore) -> None:
    assert store.next_due_time() is None
    new(store)  # no run_after: not waiting for a time
    assert store.next_due_time() is None
    now = utcnow()
    soon = now + timedelta(minutes=3)
    later = new(store, run_after=now + timedelta(minutes=10))
    first = new(store, run_after=soon)
    got = store.next_due_time()
    assert got == soon
    assert_utc(got)
    claim(store, first.id, now=soon)  # no longer queued
    assert store.next_due_time() == later.run_after


# -- engines and orphans -----------------------------------------------------------------------
def test_orphans_by_stale_heartbeat_dead_engine_or_missing_engine(store: JobStore) -> None:
    now = utcnow()
    store.heartbeat("eng-1", "host-a", 4321, now)
    job = new(store)
    claim(store, job.id, engine="eng-1", now=now)
    queued = new(store)
    seen: list[tuple[str, int]] = []

    def alive(host: str, pid: int) -> bool:
        seen.append((host, pid))
        return False

    assert store.orphaned_jobs(now + timedelta(seconds=5), 30, alive) == []
    assert seen and set(seen) == {("host-a", 4321)}
    stale = store.orphaned_jobs(now + timedelta(seconds=31), 30, alive)
    assert ids(stale) == [job.id]
    assert stale[0].status is RUNNING
    dead = store.orphaned_jobs(now + timedelta(seconds=5), 30, lambda host, pid: True)
    assert ids(dead) == [job.id]
    # a fresh heartbeat keeps the job
    store.heartbeat("eng-1", "host-a", 4321, now + timedelta(seconds=60))
    assert store.orphaned_jobs(now + timedelta(seconds=61), 30, alive) == []
    # an engine that left, leaves its running jobs behind
    store.remove_engine("eng-1")
    assert ids(store.orphaned_jobs(now + timedelta(seconds=61), 30, alive)) == [job.id]
    assert queued.id not in ids(store.orphaned_jobs(now + timedelta(days=1), 30, lambda h, p: True))


def test_an_orphaned_job_is_the_job_as_stored(store: JobStore) -> None:
    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    store.heartbeat("stale", "host-a", 7, now - timedelta(minutes=5))
    job = new(store, params={"name": "é", "n": [1, 2]}, queue="gpu", run_after=now - timedelta(minutes=1))
    claim(store, job.id, engine="stale", now=now)
    orphans = store.orphaned_jobs(now, 30, lambda host, pid: False)
    assert orphans == [stored_job(store, job.id)]
    assert orphans[0].engine_id == "stale" and orphans[0].params == {"name": "é", "n": [1, 2]}
    assert_utc(orphans[0].started_at)


def test_orphans_only_of_the_engine_that_stopped(store: JobStore) -> None:
    now = utcnow()
    store.heartbeat("e1", "h", 1, now)
    store.heartbeat("e2", "h", 2, now)
    a, b = new(store), new(store)
    claim(store, a.id, engine="e1")
    claim(store, b.id, engine="e2")
    store.heartbeat("e2", "h", 2, now + timedelta(seconds=100))
    assert ids(store.orphaned_jobs(now + timedelta(seconds=100), 30, lambda h, p: False)) == [a.id]
    assert ids(store.orphaned_jobs(now + timedelta(seconds=100), 30, lambda h, p: p == 2)) == [a.id, b.id]


# -- schedules ---------------------------------------------------------------------------------
def test_schedule_due_creates_then_returns_the_stored_time(store: JobStore) -> None:
    first = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    assert store.schedule_due("nightly", first) == first
    other = store.schedule_due("nightly", first + timedelta(days=3))
    assert other == first
    assert_utc(other)
    assert store.schedule_due("hourly", first + timedelta(hours=1)) == first + timedelta(hours=1)


def test_fire_schedule_once_per_due_time(store: JobStore) -> None:
    due = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    nxt = due + timedelta(days=1)
    store.schedule_due("nightly", due)
    job = NewJob(task="report", params={"day": "2030-01-01"}, max_attempts=2, priority=3)
    fired = store.fire_schedule("nightly", due, nxt, job)
    assert fired is not None
    assert fired.schedule == "nightly"
    assert fired.status is QUEUED
    assert (fired.task, fired.params) == ("report", {"day": "2030-01-01"})
    assert (fired.max_attempts, fired.priority) == (2, 3)
    assert_utc(fired.created_at)
    assert store.get_job(fired.id) == fired
    assert store.fire_schedule("nightly", due, nxt, job) is None  # another server got there first
    assert store.schedule_due("nightly", due) == nxt
    assert ids(store.list_jobs(JobQuery(task="report"))) == [fired.id]
    assert store.fire_schedule("unknown", due, nxt, job) is None
    assert len(store.list_jobs(JobQuery())) == 1


def test_fire_schedule_with_a_due_in_another_zone(store: JobStore) -> None:
    due = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
    store.schedule_due("tokyo", due)
    fired = store.fire_schedule("tokyo", due.astimezone(TOKYO), due + timedelta(days=1), NewJob("t", {}))
    assert fired is not None


def test_fire_schedule_without_a_job_only_moves_the_schedule(store: JobStore) -> None:
    due = datetime(2030, 1, 1, tzinfo=UTC)
    store.schedule_due("s", due)
    assert store.fire_schedule("s", due, due + timedelta(hours=1), None) is None
    assert store.schedule_due("s", due) == due + timedelta(hours=1)
    assert store.list_jobs(JobQuery()) == []


def test_a_new_schedule_is_stored_and_fired_once_by_two_servers_at_once(database_url: str) -> None:
    """Two servers (each its own connections) ask for a new schedule's due time at the same moment,
    each with a first time of its own: both get the one stored; both fire it: one job."""
    stores = [SqlJobStore(database_url) for _ in range(2)]
    stores[0].migrate()
    first = datetime(2030, 1, 1, tzinfo=UTC)
    try:
        with ThreadPoolExecutor(2) as pool:
            for round_ in range(12):
                name = f"nightly-{round_}"
                asked, fire = threading.Barrier(2), threading.Barrier(2)

                def serve(
                    n: int, name: str = name, asked: threading.Barrier = asked, fire: threading.Barrier = fire
                ) -> tuple[datetime, JobRecord | None]:
                    asked.wait(timeout=60)
                    due = stores[n].schedule_due(name, first + timedelta(minutes=n))
                    fire.wait(timeout=60)
                    job = NewJob(task="report", params={"server": n})
                    return due, stores[n].fire_schedule(name, due, due + timedelta(days=1), job)

                results = list(pool.map(serve, range(2)))
                dues = {due for due, _ in results}
                assert len(dues) == 1 and dues <= {first, first + timedelta(minutes=1)}, results
                fired = [job for _, job in results if job is not None]
                assert len(fired) == 1 and fired[0].schedule == name
                assert stores[1].schedule_due(name, first) == dues.pop() + timedelta(days=1)
        assert len(stores[0].list_jobs(JobQuery(task="report", limit=100))) == 12
    finally:
        for one in stores:
            one.close()


# -- retention ---------------------------------------------------------------------------------
def _with_logs_and_artifact(store: JobStore, job_id: int) -> None:
    assert store.apply(
        [
            LogAppend(job_id, 1, [line("hello")]),
            ArtifactAdded(job_id, ArtifactInfo("out.txt", 3, "text/plain", utcnow())),
        ]
    ).done == [True, True]


def test_prune_by_age_deletes_only_old_finished_jobs(store: JobStore) -> None:
    now = utcnow()
    old = [new(store, task="p", params={"i": i}) for i in range(3)]
    for job, status in zip(old, [SUCCEEDED, FAILED, CANCELLED], strict=True):
        _with_logs_and_artifact(store, job.id)
        finish(store, job.id, status, at=now - timedelta(days=10))
    recent = new(store, task="p")
    finish(store, recent.id, at=now)
    queued = new(store, task="p")
    running = new(store, task="p")
    claim(store, running.id)
    other_task = new(store, task="q")
    finish(store, other_task.id, at=now - timedelta(days=10))

    deleted = store.prune("p", older_than=now - timedelta(days=1), keep=None)
    assert deleted == Deleted(sorted(ids(old)), [])
    for job in old:
        assert store.get_job(job.id) is None
        assert store.read_logs(job.id) == []
    for job in (recent, queued, running, other_task):
        assert store.get_job(job.id) is not None
    assert store.prune("p", older_than=now - timedelta(days=1), keep=None) == Deleted()


def test_prune_by_count_keeps_the_newest_finished(store: JobStore) -> None:
    finished = [new(store, task="p", params={"i": i}) for i in range(4)]
    for job in finished:
        finish(store, job.id)
    _with_logs_and_artifact(store, finished[0].id)
    queued = new(store, task="p")
    deleted = store.prune("p", older_than=None, keep=2)
    assert deleted.job_ids == [finished[0].id, finished[1].id]
    remaining = ids(store.list_jobs(JobQuery(task="p")))
    assert remaining == [queued.id, finished[3].id, finished[2].id]
    assert store.read_logs(finished[0].id) == []
    assert store.prune("p", older_than=None, keep=2) == Deleted()
    assert store.prune("p", older_than=None, keep=None) == Deleted()


def _rows_of(store: JobStore, job_ids: list[int]) -> dict[str, int]:
    """How many rows each table holds for these jobs."""
    assert isinstance(store, SqlJobStore)
    marks = ", ".join("?" for _ in job_ids)
    return {
        table: store.db.rows(f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})", job_ids)[0][0]
        for table, column in (
            ("jobs", "id"),
            ("job_logs", "job_id"),
            ("job_steps", "job_id"),
            ("artifacts", "job_id"),
            ("job_uploads", "job_id"),
        )
    }


def test_prune_by_age_and_count_deletes_either_with_every_row_of_theirs(store: JobStore) -> None:
    """Old finished jobs and those beyond the newest `keep` go, in transactions of at most 500
    jobs, with their logs, steps, artifacts and upload records; unfinished jobs and other tasks'
    stay; an upload their last job took is returned, one still used by another job is not."""
    now = utcnow()
    shared, own = upload_id(), upload_id()
    many = [new(store, task="p", params={"i": i}) for i in range(620)]
    claim(store, *ids(many))
    store.apply([Transition(j.id, SUCCEEDED, frozenset({RUNNING}), {"finished_at": now}) for j in many])
    old = new(store, task="p", owner="o", uploads=(own, shared))
    kept_user = new(store, task="q", owner="o", uploads=(shared,))
    for job in (old, many[0], many[-1]):
        _with_logs_and_artifact(store, job.id)
        store.apply([StepsPlanned(job.id, [StepRecord(job.id, "s", 0, "shell")])])
    finish(store, old.id, at=now - timedelta(days=10))
    finish(store, kept_user.id, at=now - timedelta(days=10))
    running = new(store, task="p")
    claim(store, running.id)
    queued = new(store, task="p")
    before = _rows_of(store, [old.id, many[0].id, many[-1].id])
    assert before == {"jobs": 3, "job_logs": 3, "job_steps": 3, "artifacts": 3, "job_uploads": 2}

    deleted = store.prune("p", older_than=now - timedelta(days=1), keep=3)
    # kept: the three newest finished (old finished last, so it is one of them, but too old)
    assert deleted == Deleted(sorted([*ids(many[:-2]), old.id]), [own])
    assert _rows_of(store, deleted.job_ids) == dict.fromkeys(before, 0)
    assert ids(store.list_jobs(JobQuery(task="p"))) == [queued.id, running.id, many[-1].id, many[-2].id]
    assert _rows_of(store, [many[-1].id])["job_logs"] == 1
    assert store.get_job(kept_user.id) is not None
    assert store.delete_job(running.id) == Deleted() and store.delete_job(queued.id) == Deleted()
    assert store.delete_job(kept_user.id) == Deleted([kept_user.id], [shared])


def test_finished_span_counts_finished_jobs_up_to_a_bound_and_their_oldest_end(store: JobStore) -> None:
    assert store.finished_span(10) == (0, None)
    now = utcnow()
    new(store, task="p")  # queued: not counted
    running = new(store, task="q")
    claim(store, running.id)
    for i, days in enumerate((3, 1, 2)):
        job = new(store, task="pq"[i % 2], params={"i": i})
        finish(store, job.id, FAILED if i else SUCCEEDED, at=now - timedelta(days=days))
    count, oldest = store.finished_span(10)
    assert count == 3
    assert_utc(oldest)
    assert oldest is not None and abs(oldest - (now - timedelta(days=3))) < timedelta(seconds=1)
    assert store.finished_span(1)[0] == 2  # counted one beyond the bound, no further


def test_prune_removes_artifact_records(store: JobStore) -> None:
    job = new(store, task="p")
    _with_logs_and_artifact(store, job.id)
    finish(store, job.id)
    keep = new(store, task="p")
    _with_logs_and_artifact(store, keep.id)
    finish(store, keep.id)
    assert store.prune("p", older_than=None, keep=1).job_ids == [job.id]
    stored = store.get_job(keep.id)
    assert stored is not None and [a.name for a in stored.artifacts] == ["out.txt"]
    assert store.get_job(job.id) is None


def test_delete_job(store: JobStore) -> None:
    job = new(store)
    _with_logs_and_artifact(store, job.id)
    other = new(store)
    assert store.delete_job(job.id) == Deleted(), "an unfinished job must not be deleted"
    assert store.read_logs(job.id) != []
    finish(store, job.id)
    assert store.delete_job(job.id) == Deleted([job.id], [])
    assert store.get_job(job.id) is None
    assert store.read_logs(job.id) == []
    assert store.delete_job(job.id) == Deleted()
    assert store.get_job(other.id) is not None


def test_ids_are_never_reused_after_delete(store: JobStore) -> None:
    """A deleted job's id must not come back: clients, URLs, events and artifact folders
    (<home>/artifacts/<id>/, removed only after the row) refer to jobs by id."""
    first = new(store)
    newest = new(store)
    finish(store, newest.id)
    assert store.delete_job(newest.id).job_ids == [newest.id]
    after_delete = new(store)
    assert after_delete.id > newest.id
    assert first.id < after_delete.id


# -- uploads -----------------------------------------------------------------------------------
def upload_id() -> str:
    """A new upload id (PostgreSQL keeps the uploads table between tests: ids must not repeat)."""
    return uuid.uuid4().hex


def test_an_upload_is_its_first_owners_only(store: JobStore) -> None:
    mine, fresh = upload_id(), upload_id()
    job = new(store, owner="alice", uploads=(mine,))
    with pytest.raises(ForeignUploads) as refused:
        store.create_job(NewJob(task="t", params={}, owner="bob", uploads=(fresh, mine)))
    assert refused.value.upload_ids == [mine]
    for owner in (None, "admin"):  # the open mode's jobs, and an admin, are other owners too
        with pytest.raises(ForeignUploads):
            store.create_job(NewJob(task="t", params={}, owner=owner, uploads=(mine,), idempotency_key="k"))
    assert ids(store.list_jobs(JobQuery())) == [job.id], "a refused job is not stored"
    again = new(store, owner="alice", uploads=(mine, mine))  # a rerun with the same file
    assert new(store, owner="bob", uploads=(fresh,)).owner == "bob", "the refused job claimed nothing"
    finish(store, job.id)
    finish(store, again.id)
    assert store.delete_job(job.id).uploads == []
    assert store.delete_job(again.id).uploads == [mine]
    with pytest.raises(ForeignUploads):  # unused now, and still alice's
        store.create_job(NewJob(task="t", params={}, owner="bob", uploads=(mine,)))


def test_the_open_modes_uploads_are_its_jobs(store: JobStore) -> None:
    shared = upload_id()
    first, second = new(store, uploads=(shared,)), new(store, uploads=(shared,))
    with pytest.raises(ForeignUploads):
        store.create_job(NewJob(task="t", params={}, owner="alice", uploads=(shared,)))
    finish(store, first.id)
    finish(store, second.id)
    assert store.prune("t", older_than=None, keep=0) == Deleted([first.id, second.id], [shared])


def test_an_upload_is_unused_when_its_last_job_goes(store: JobStore) -> None:
    shared, own = upload_id(), upload_id()
    a = new(store, task="p", owner="alice", uploads=(shared, own))
    b = new(store, task="p", owner="alice", uploads=(shared,))
    c = new(store, task="p", owner="alice")
    for job in (a, b, c):
        finish(store, job.id)
    assert store.prune("p", older_than=None, keep=2) == Deleted([a.id], [own])
    assert store.delete_job(c.id) == Deleted([c.id], [])
    assert store.delete_job(b.id) == Deleted([b.id], [shared])
    assert store.delete_job(b.id) == Deleted(), "a job deleted twice frees its uploads once"


def test_refused_jobs_leave_the_store_usable(store: JobStore) -> None:
    """A refusal rolls back a transaction (PostgreSQL: psycopg then drops the connection's prepared
    statements, those of the one-statement path too); every later statement still works."""
    taken = upload_id()
    new(store, owner="alice", uploads=(taken,))
    for _ in range(3):
        for _ in range(8):  # enough of the same statements for psycopg to prepare them
            new(store, owner="bob", uploads=(upload_id(),))
        with pytest.raises(ForeignUploads):
            store.create_job(NewJob(task="t", params={}, owner="bob", uploads=(taken,)))
        for _ in range(3):
            job = new(store, owner="bob")
            finish(store, job.id)
            assert store.get_job(job.id) is not None


def test_jobs_with_uploads_are_never_started_ahead(store: JobStore) -> None:
    assert store.start_create_job(NewJob(task="t", params={}, uploads=(upload_id(),))) is None


def test_jobs_sharing_an_upload_deleted_at_once_free_it_once(database_url: str) -> None:
    """Two servers each delete one of two jobs that share an upload, at the same moment: exactly
    one of them finds the upload unused (neither while the other job exists, not neither)."""
    stores = [SqlJobStore(database_url) for _ in range(2)]
    stores[0].migrate()
    try:
        for _ in range(10):
            shared = upload_id()
            jobs = [new(stores[0], owner="alice", uploads=(shared,)) for _ in range(2)]
            for job in jobs:
                finish(stores[0], job.id)
            start = threading.Barrier(2)

            def delete(n: int, jobs: list[JobRecord] = jobs, start: threading.Barrier = start) -> Deleted:
                start.wait(timeout=60)
                return stores[n].delete_job(jobs[n].id)

            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(delete, range(2)))
            assert [r.job_ids for r in results] == [[jobs[0].id], [jobs[1].id]]
            assert sorted(upload for r in results for upload in r.uploads) == [shared]
    finally:
        for one in stores:
            one.close()


def test_count_by_status(store: JobStore) -> None:
    empty = store.count_by_status()
    assert empty == {s.value: 0 for s in JobStatus}
    a, b, c, d = new(store), new(store), new(store), new(store)
    claim(store, b.id)
    finish(store, c.id, FAILED)
    finish(store, d.id, FAILED)
    assert store.count_by_status() == {"queued": 1, "running": 1, "succeeded": 0, "failed": 2, "cancelled": 0}
    assert store.count_by_status(active_only=True) == {"queued": 1, "running": 1}
    store.apply([Transition(b.id, SUCCEEDED, frozenset({RUNNING}), {"finished_at": utcnow()})])
    assert store.count_by_status(active_only=True) == {"queued": 1, "running": 0}
    assert a.id


# -- datetimes ---------------------------------------------------------------------------------
def test_datetimes_round_trip_as_aware_utc(store: JobStore) -> None:
    local = datetime(2031, 7, 1, 18, 30, 15, 654321, tzinfo=TOKYO)  # 09:30:15.654321 UTC
    job = new(store, run_after=local)
    for record in (job, store.get_job(job.id), store.list_jobs(JobQuery())[0]):
        assert record is not None
        assert record.run_after == local
        assert_utc(record.run_after)
        assert record.run_after == datetime(2031, 7, 1, 9, 30, 15, 654321, tzinfo=UTC)
        assert_utc(record.created_at)
    started = datetime(2031, 7, 1, 20, 0, tzinfo=ZoneInfo("America/New_York"))
    won = claim(store, job.id, now=started)
    assert won[0].started_at == started
    assert_utc(won[0].started_at)
    listed = store.list_jobs(JobQuery())[0]
    assert listed.started_at == started
    assert_utc(listed.started_at)


def test_queue_stats(store: JobStore) -> None:
    from mieruka.store.base import NewJob

    assert store.queue_stats() == []
    first, _ = store.create_job(NewJob(task="t", params={}, queue="gpu"))
    store.create_job(NewJob(task="t", params={}, queue="gpu"))
    running, _ = store.create_job(NewJob(task="t", params={}, queue="default"))
    claim(store, running.id)
    done, _ = store.create_job(NewJob(task="t", params={}, queue="cpu"))
    finish(store, done.id)
    stats = {s.queue: s for s in store.queue_stats()}
    assert set(stats) == {"default", "gpu"}  # a queue with only finished jobs is not active
    assert (stats["gpu"].queued, stats["gpu"].running) == (2, 0)
    assert (stats["default"].queued, stats["default"].running) == (0, 1)
    assert stats["gpu"].oldest_queued_at == first.created_at
    assert stats["default"].oldest_queued_at is None


def test_queue_stats_count_each_active_queue_in_order(store: JobStore) -> None:
    """Per queue with queued or running jobs, by name: how many of each, and the oldest queued
    job's creation (the earliest time, whatever the ids; a running job's does not count)."""
    early = datetime(2020, 1, 1, tzinfo=TOKYO)
    running_b = new(store, queue="b")
    claim(store, running_b.id)
    new(store, queue="b")
    late_id = new(store, queue="b")
    store.apply([Transition(late_id.id, QUEUED, frozenset({QUEUED}), {"created_at": early})])
    claim(store, new(store, queue="a").id)
    only_c = new(store, queue="c")
    finish(store, new(store, queue="c").id)
    finish(store, new(store, queue="d").id, FAILED)
    stats = store.queue_stats()
    assert [(s.queue, s.queued, s.running) for s in stats] == [("a", 0, 1), ("b", 2, 1), ("c", 1, 0)]
    assert [s.oldest_queued_at for s in stats] == [None, early, only_c.created_at]
    more = [f"q-{n * 37 % 100:02}" for n in range(40)]  # distinct, created out of order
    for queue in more:
        new(store, queue=queue)
    assert [s.queue for s in store.queue_stats()] == ["a", "b", "c", *sorted(more)]
    assert_utc(stats[1].oldest_queued_at)


# -- monitoring ----------------------------------------------------------------------------------
def test_engines_report_what_they_are_and_the_jobs_they_run(store: JobStore) -> None:
    now = utcnow()
    store.heartbeat("e1", "host-a", 11, now - timedelta(seconds=5), {"kind": "celery", "queues": ["gpu"]})
    store.heartbeat("e2", "host-b", 22, now)
    store.heartbeat("e1", "host-a", 11, now)  # a beat without info keeps the info
    a, b, c = new(store), new(store), new(store)
    claim(store, a.id, b.id, engine="e1")
    claim(store, c.id, engine="e2")
    finish(store, new(store).id)  # runs nowhere now
    found = {e.id: e for e in store.engines()}
    assert set(found) == {"e1", "e2"}
    assert found["e1"].info == {"kind": "celery", "queues": ["gpu"]} and found["e2"].info == {}
    assert found["e1"].running == [a.id, b.id] and found["e2"].running == [c.id]
    assert found["e1"].host == "host-a" and found["e1"].pid == 11
    assert_utc(found["e1"].heartbeat_at)
    assert abs((found["e1"].heartbeat_at - now).total_seconds()) < 0.001
    store.remove_engine("e1")
    assert [e.id for e in store.engines()] == ["e2"]


def test_a_heartbeat_moves_the_time_and_replaces_the_info_it_is_given(store: JobStore) -> None:
    first = datetime(2030, 1, 1, 9, 0, 0, 123456, tzinfo=UTC)
    store.heartbeat("e1", "host-a", 11, first, {"kind": "server", "name": "é"})
    store.heartbeat("e2", "host-b", 22, first + timedelta(seconds=1))
    assert [e.id for e in store.engines()] == ["e2", "e1"]  # the most recent beat first
    later = first.astimezone(TOKYO) + timedelta(seconds=2)
    store.heartbeat("e1", "host-elsewhere", 99, later, {"kind": "celery", "queues": ["gpu"]})
    found = store.engines()
    assert [e.id for e in found] == ["e1", "e2"]
    e1 = found[0]
    assert (e1.host, e1.pid) == ("host-a", 11)  # the first beat's
    assert e1.heartbeat_at == later and e1.info == {"kind": "celery", "queues": ["gpu"]}
    assert_utc(e1.heartbeat_at)
    assert found[1].info == {} and found[1].running == [] and found[1].heartbeat_at == first + timedelta(seconds=1)
    store.remove_engine("e1")
    store.remove_engine("unknown")
    assert [e.id for e in store.engines()] == ["e2"]


def test_timeline_counts_finished_jobs_and_their_wait_and_run_times(store: JobStore) -> None:
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

    def job(created: int, started: int | None, finished: int, status: JobStatus) -> None:
        record = new(store)
        if started is not None:
            store.apply([], Claim([record.id], "w", "e", start + timedelta(seconds=started)))
            expect = frozenset({RUNNING})
        else:
            expect = frozenset({QUEUED})
        assert store.apply(
            [
                Transition(
                    record.id,
                    status,
                    expect,
                    {
                        "created_at": start + timedelta(seconds=created),
                        "finished_at": start + timedelta(seconds=finished),
                    },
                )
            ]
        ).done == [True]

    job(0, 2, 10, SUCCEEDED)  # minute 0: waited 2 s, ran 8 s
    job(0, 4, 20, FAILED)  # minute 0: waited 4 s, ran 16 s
    job(0, None, 30, CANCELLED)  # minute 0: cancelled before it started
    job(60, 61, 125, SUCCEEDED)  # minute 2
    job(-3600, -3599, -3590, SUCCEEDED)  # an hour earlier: not asked for
    buckets = store.timeline(start, 60)
    assert [b.start for b in buckets] == [start, start + timedelta(minutes=2)]
    first, second = buckets
    assert first.finished == {"succeeded": 1, "failed": 1, "cancelled": 1}
    assert first.wait_avg == pytest.approx(3.0, abs=0.01) and first.wait_max == pytest.approx(4.0, abs=0.01)
    assert first.run_avg == pytest.approx(12.0, abs=0.01) and first.run_max == pytest.approx(16.0, abs=0.01)
    assert second.finished == {"succeeded": 1} and second.run_avg == pytest.approx(64.0, abs=0.01)
    assert [b.start for b in store.timeline(start, 3600)] == [start]
    assert store.timeline(start + timedelta(hours=1)) == []


def test_timeline_buckets_align_to_their_size_and_count_from_since(store: JobStore) -> None:
    """Buckets start at multiples of their size since the epoch, whatever `since` is; a job that
    finished at `since` exactly is counted, one a moment before is not."""
    start = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)  # a multiple of 90 s since the epoch
    moment = timedelta(microseconds=1)

    def ended(created: float, started: float, finished: float, status: JobStatus = SUCCEEDED) -> None:
        record = new(store)
        store.apply([], Claim([record.id], "w", "e", start + timedelta(seconds=started)))
        fields = {"created_at": start + timedelta(seconds=created), "finished_at": start + timedelta(seconds=finished)}
        assert store.apply([Transition(record.id, status, frozenset({RUNNING}), fields)]).done == [True]

    since = start + timedelta(seconds=10)
    ended(0, 5, 10 - 1e-6)  # a moment before `since`
    ended(0, 4, 10)  # waited 4 s, ran 6 s
    ended(0, 1, 89.5, FAILED)  # waited 1 s, ran 88.5 s
    ended(85, 88, 90)
    ended(100, 150, 269.9)
    buckets = store.timeline(since.astimezone(TOKYO), 90)
    assert [b.start for b in buckets] == [start, start + timedelta(seconds=90), start + timedelta(seconds=180)]
    assert [b.finished for b in buckets] == [{"succeeded": 1, "failed": 1}, {"succeeded": 1}, {"succeeded": 1}]
    first = buckets[0]
    assert first.wait_avg == pytest.approx(2.5, abs=0.01) and first.wait_max == pytest.approx(4.0, abs=0.01)
    assert first.run_avg == pytest.approx(47.25, abs=0.01) and first.run_max == pytest.approx(88.5, abs=0.01)
    assert buckets[2].wait_avg == pytest.approx(50.0, abs=0.01) and buckets[2].run_max == pytest.approx(119.9, abs=0.01)
    assert_utc(first.start)
    assert [b.start for b in store.timeline(since, 0)] == [  # a bucket of one second at least
        start + timedelta(seconds=s) for s in (10, 89, 90, 269)
    ]
    assert sum(b.finished.get("succeeded", 0) for b in store.timeline(since - moment, 3600)) == 4
    assert store.timeline(start + timedelta(seconds=270)) == []


def test_read_logs_of_a_step_page_by_position(store: JobStore) -> None:
    job = new(store)
    claim(store, job.id)
    lines = [line(f"a{n}") for n in range(5)]
    store.apply([LogAppend(job.id, 1, lines[:2], step="a"), LogAppend(job.id, 3, [line("b")], step="b")])
    store.apply([LogAppend(job.id, 4, lines[2:], step="a")])
    assert [(entry.seq, entry.text) for entry in store.read_logs(job.id, step="a", limit=3)] == [
        (1, "a0"),
        (2, "a1"),
        (4, "a2"),
    ]
    assert [entry.seq for entry in store.read_logs(job.id, after=2, limit=2, step="a")] == [4, 5]
    assert [entry.step for entry in store.read_logs(job.id, after=2, limit=2)] == ["b", "a"]
    assert store.read_logs(job.id, after=6, step="a") == []


# -- pipeline steps ------------------------------------------------------------------------------
def test_steps_planned_saved_and_listed_in_order(store: JobStore) -> None:
    job = new(store)
    assert store.list_steps(job.id) == []
    plan = [
        StepRecord(job.id, "b", 1000, "shell", depends_on=["a"], description="sort x", allow_failure=True),
        StepRecord(job.id, "a", 0, "python"),
    ]
    assert store.apply([StepsPlanned(job.id, plan)]).done == [True]
    assert [s.name for s in store.list_steps(job.id)] == ["a", "b"]
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=TOKYO)
    done = StepRecord(
        job.id,
        "a",
        0,
        "python",
        status=StepStatus.SUCCEEDED,
        started_at=started,
        finished_at=started + timedelta(seconds=2),
        progress=1.0,
        message="ok",
        output={"n": [1, "二"]},
        artifacts=["r.html"],
        reused=True,
    )
    store.apply([StepSaved(done)])
    a, b = store.list_steps(job.id)
    assert a == done and a.started_at is not None and a.started_at.tzinfo is not None and a.duration == 2.0
    assert b.depends_on == ["a"] and b.allow_failure and b.description == "sort x" and b.output is None
    # a rule execution found while running is inserted; a new plan replaces everything
    store.apply([StepSaved(StepRecord(job.id, "rule[x=1]", 1001, "rule", parent="b"))])
    assert [s.name for s in store.list_steps(job.id)] == ["a", "b", "rule[x=1]"]
    store.apply([StepsPlanned(job.id, [StepRecord(job.id, "c", 0, "python")])])
    assert [s.name for s in store.list_steps(job.id)] == ["c"]


@pytest.mark.parametrize("output", [5, 2.5, "123", "[1]", "text", [1, "二"], {"a": None}, True, None])
def test_steps_come_back_as_saved_in_position_then_name_order(store: JobStore, output: object) -> None:
    """Each JSON value of a step as it was saved (a string that looks like JSON stays a string),
    its times in UTC, its flags as booleans; steps at one position in name order."""
    job = new(store)
    at = datetime(2030, 1, 2, 3, 4, 5, 600000, tzinfo=TOKYO)
    saved = StepRecord(
        job.id,
        "m",
        1,
        "shell",
        status=StepStatus.FAILED,
        depends_on=["z", "a"],
        started_at=at,
        finished_at=at + timedelta(seconds=1),
        progress=0.5,
        message="half",
        output=output,
        error="boom",
        artifacts=["b.txt", "a.txt"],
        reused=True,
        allow_failure=True,
    )
    plan = [StepRecord(job.id, "z", 1, "python"), saved, StepRecord(job.id, "b", 1, "rule", parent="m")]
    store.apply([StepsPlanned(job.id, [*plan, StepRecord(job.id, "first", 0, "python")])])
    steps = store.list_steps(job.id)
    assert [s.name for s in steps] == ["first", "b", "m", "z"]
    assert steps[2] == saved and type(steps[2].output) is type(output)
    assert_utc(steps[2].started_at)
    assert steps[0].allow_failure is False and steps[0].reused is False and steps[0].output is None
    assert steps[0].depends_on == [] and steps[0].artifacts == [] and steps[1].parent == "m"


def test_steps_closed_settles_only_open_steps(store: JobStore) -> None:
    job = new(store)
    other = new(store)
    now = utcnow()
    store.apply(
        [
            StepsPlanned(
                job.id,
                [
                    StepRecord(
                        job.id, "done", 0, "python", status=StepStatus.SUCCEEDED, started_at=now, finished_at=now
                    ),
                    StepRecord(job.id, "run", 1, "shell", status=StepStatus.RUNNING, started_at=now),
                    StepRecord(job.id, "wait", 2, "shell"),
                ],
            ),
            StepsPlanned(other.id, [StepRecord(other.id, "run", 0, "shell", status=StepStatus.RUNNING)]),
        ]
    )
    store.apply([StepsClosed(job.id, StepStatus.CANCELLED)])
    steps = {s.name: s for s in store.list_steps(job.id)}
    assert steps["done"].status is StepStatus.SUCCEEDED
    assert steps["run"].status is StepStatus.CANCELLED and steps["run"].finished_at is not None
    assert steps["wait"].status is StepStatus.CANCELLED and steps["wait"].finished_at is None
    assert store.list_steps(other.id)[0].status is StepStatus.RUNNING


def test_step_logs_are_part_of_the_job_log_and_readable_per_step(store: JobStore) -> None:
    job = new(store)
    claim(store, job.id)
    at = utcnow()
    store.apply(
        [
            LogAppend(job.id, 1, [(at, "stdout", "job line")]),
            LogAppend(job.id, 2, [(at, "stdout", "a1"), (at, "stderr", "a2")], step="a"),
            LogAppend(job.id, 4, [(at, "stdout", "b1")], step="b"),
        ]
    )
    assert [(line.seq, line.step) for line in store.read_logs(job.id)] == [(1, None), (2, "a"), (3, "a"), (4, "b")]
    assert [line.text for line in store.read_logs(job.id, step="a")] == ["a1", "a2"]
    assert [line.text for line in store.read_logs(job.id, after=2, step="a")] == ["a2"]
    assert store.read_logs(job.id, step="zzz") == []


def test_deleting_a_job_deletes_its_steps(store: JobStore) -> None:
    job = new(store)
    store.apply([StepsPlanned(job.id, [StepRecord(job.id, "a", 0, "python")])])
    finish(store, job.id)
    assert store.delete_job(job.id).job_ids == [job.id]
    assert store.list_steps(job.id) == []
